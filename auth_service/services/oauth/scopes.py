"""Scope requests (RFC 6749 §3.3): what a client asks for, within what it may have."""

from __future__ import annotations

from collections.abc import Iterable

from auth_service.services.oauth.errors import OAuthProtocolError


def granted_scope(requested: str | None, allowed: Iterable[str]) -> str:
    """The scope to grant: the request, if it stays within `allowed`.

    No request means everything the client is registered for (RFC 6749 §3.3
    lets the server apply a default). Order follows the registration, so the
    same grant always reads the same.

    Raises:
        OAuthProtocolError: `invalid_scope`, a scope the client may not have.
    """
    allowed_list = list(dict.fromkeys(allowed))
    if requested is None or not requested.strip():
        return " ".join(allowed_list)
    # Only %x20 delimits scope tokens (RFC 6749 §3.3).
    wanted = {token for token in requested.split(" ") if token}
    extra = wanted - set(allowed_list)
    if extra:
        raise OAuthProtocolError(
            "invalid_scope", "The requested scope exceeds what this client is registered for."
        )
    return " ".join(s for s in allowed_list if s in wanted)
