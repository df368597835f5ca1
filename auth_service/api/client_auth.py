"""Client authentication at the OAuth endpoints (RFC 6749 §2.3.1).

`client_secret_basic` (HTTP Basic, each part form-urlencoded) and
`client_secret_post` (`client_id` + `client_secret` in the form); a public
client sends its `client_id` alone. Exactly one method per request (§2.3).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote_plus

from fastapi import Request

from auth_service.api.oauth_forms import OAuthError
from auth_service.models.client import OAuthClient
from auth_service.services.oauth.errors import InvalidClient, OAuthProtocolError
from auth_service.services.oauth.registry import ClientRegistry

_MAX = 256


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    secret: str | None
    # Which method was used: a failed Basic login is answered with a Basic
    # challenge (RFC 6749 §5.2).
    basic: bool


def presented_credentials(request: Request, fields: dict[str, str]) -> ClientCredentials | None:
    """The client credentials the request carries, or None when it names no client.

    Raises:
        OAuthProtocolError: `invalid_request` (two methods at once, a
            malformed Basic header), `invalid_client` (a Basic header whose
            id disagrees with the form's `client_id`).
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        if "client_secret" in fields:
            raise OAuthProtocolError("invalid_request", "Use one client authentication method.")
        try:
            raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthProtocolError("invalid_request", "Malformed Basic credentials.") from None
        cid, sep, secret = raw.partition(":")
        if not sep or not cid or len(raw) > 2 * _MAX:
            raise OAuthProtocolError("invalid_request", "Malformed Basic credentials.")
        client_id, client_secret = unquote_plus(cid), unquote_plus(secret)
        if fields.get("client_id", client_id) != client_id:
            raise InvalidClient
        return ClientCredentials(client_id, client_secret, basic=True)
    client_id = fields.get("client_id", "")
    if not client_id:
        return None
    return ClientCredentials(client_id, fields.get("client_secret"), basic=False)


async def authenticate_client(
    request: Request, fields: dict[str, str], registry: ClientRegistry
) -> OAuthClient:
    """The registered client that authenticated this request.

    Raises:
        OAuthProtocolError, InvalidClient: see `presented_credentials` and
            `ClientRegistry.authenticate`.
    """
    presented = presented_credentials(request, fields)
    if presented is None:
        raise InvalidClient("Client authentication is required.")
    try:
        return await registry.authenticate(presented.client_id, presented.secret)
    except InvalidClient as exc:
        exc.basic = presented.basic
        raise


def oauth_problem(exc: OAuthProtocolError) -> OAuthError:
    """The RFC 6749 §5.2 answer to a protocol error: 401 for `invalid_client`
    (with a Basic challenge when Basic was tried), 400 for the rest."""
    if isinstance(exc, InvalidClient):
        headers = {"WWW-Authenticate": 'Basic realm="auth-service"'} if exc.basic else None
        return OAuthError(401, exc.error, exc.description, headers)
    return OAuthError(400, exc.error, exc.description)
