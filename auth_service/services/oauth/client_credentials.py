"""The client_credentials grant (RFC 6749 §4.4): a client's tokens for itself."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.models.client import OAuthClient
from auth_service.services.oauth.errors import OAuthProtocolError
from auth_service.services.oauth.scopes import granted_scope
from auth_service.services.service import service
from auth_service.services.tokens import TokenIssuer


@dataclass(frozen=True)
class ClientGrant:
    access_token: str
    expires_in: int
    scope: str


@service
class ClientCredentialsGrant:
    issuer: TokenIssuer

    def issue(self, client: OAuthClient, *, scope: str | None) -> ClientGrant:
        """An access token for an authenticated confidential client.

        `sub = client_id`, `aud` = the client's registered audience, the
        requested scope (a subset of the registered one), no refresh token
        (RFC 6749 §4.4.3: the client simply asks again).

        Raises:
            OAuthProtocolError: `unauthorized_client` (grant not registered,
                or a public client), `invalid_scope`.
        """
        if (
            "client_credentials" not in client.grant_type_set
            or client.is_public
            or not client.audience
        ):
            raise OAuthProtocolError(
                "unauthorized_client", "This client may not use the client_credentials grant."
            )
        granted = granted_scope(scope, client.scopes.split())
        token = self.issuer.client_token(
            client_id=client.client_id, audience=client.audience, scope=granted
        )
        return ClientGrant(token.token, token.expires_in, granted)
