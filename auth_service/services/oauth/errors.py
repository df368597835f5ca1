"""The OAuth protocol's own errors (RFC 6749 §4.1.2.1 and §5.2, RFC 7662, OIDC Core §3.1.2.6).

Raised by the OAuth services with the registered error code; the edge picks
the HTTP shape (a JSON body, a redirect back to the client, or a problem page).
"""

from __future__ import annotations

from auth_service.errors import AuthError


class OAuthProtocolError(AuthError):
    """An RFC 6749 error: `error` is the registered code, `description` safe to show.

    Descriptions never echo a secret, a code or a token.
    """

    def __init__(self, error: str, description: str, *, reason: str | None = None) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        # The audit trail's label: finer than `error` where that helps
        # (`code_reused` is an `invalid_grant` to the client).
        self.reason = reason or error


class RedirectedError(OAuthProtocolError):
    """An authorization request error reported to the client at its
    (already validated) redirect URI, with the request's `state`
    (RFC 6749 §4.1.2.1)."""

    def __init__(
        self, error: str, description: str, *, redirect_uri: str, state: str | None
    ) -> None:
        super().__init__(error, description)
        self.redirect_uri = redirect_uri
        self.state = state


class CodeReused(OAuthProtocolError):
    """An authorization code came back a second time: what it issued is
    revoked (RFC 6749 §4.1.2, RFC 9700 §4.5)."""

    def __init__(self, *, sid: str | None, user_id: str | None) -> None:
        super().__init__(
            "invalid_grant", "The authorization code is not valid.", reason="code_reused"
        )
        self.sid = sid
        self.user_id = user_id


class InvalidClient(OAuthProtocolError):
    """Client authentication failed (RFC 6749 §5.2): 401 at the token endpoint."""

    def __init__(self, description: str = "Client authentication failed.") -> None:
        super().__init__("invalid_client", description)
        # Set by the edge: HTTP Basic was tried, so the 401 carries its challenge.
        self.basic = False


class InvalidRedirect(AuthError):
    """Unknown client or a redirect URI not registered for it (RFC 6749 §4.1.2.1):
    never redirected to, answered with an error page instead."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description
