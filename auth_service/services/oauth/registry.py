"""The client registry: registering clients, and authenticating them (RFC 6749 §2).

Secrets are 256 random bits, shown once, stored as SHA-256. A slow password
hash (argon2) buys nothing for a secret nobody chose: 2^256 guesses stay out
of reach at any hash speed, while an argon2 verify per client_credentials
call would hand anyone who can reach /token a cheap way to burn our CPU.
The stored hash is compared in constant time (docs/ASVS.md, "OAuth clients").
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from auth_service.models.client import OAuthClient
from auth_service.services.oauth.errors import InvalidClient

GRANT_TYPES = ("authorization_code", "client_credentials", "refresh_token")
# What a user's token may carry for another application (OIDC Core §5.4).
USER_SCOPES = ("openid", "profile", "email")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")
_LOOPBACK = {"localhost"}
_AUDIENCE = re.compile(r"^[\x21-\x7e]{1,256}$")


class _Clients(Protocol):
    async def add(self, client: OAuthClient) -> None: ...
    async def get(self, client_id: str) -> OAuthClient | None: ...
    async def all(self) -> list[OAuthClient]: ...
    async def delete(self, client_id: str) -> bool: ...


class InvalidRegistration(ValueError):
    """The operator asked for a client the platform will not register."""


@dataclass(frozen=True)
class Registered:
    client: OAuthClient
    # Shown once to the operator; only its hash is kept.
    client_secret: str | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_redirect_uri(uri: str) -> str:
    """A redirect URI the platform will register (RFC 6749 §3.1.2, RFC 9700 §2.1).

    Absolute, no fragment, no user info; `https`, or `http` on a loopback
    host only (RFC 8252 §7.3, native apps and development). Matching at
    /authorize is exact string comparison, so what is registered is what
    must come back.

    Raises:
        InvalidRegistration: with what is wrong.
    """
    parts = urlsplit(uri)
    if " " in uri or not parts.scheme or not parts.hostname:
        raise InvalidRegistration(f"redirect URI must be absolute: {uri!r}")
    if parts.fragment or "#" in uri:
        raise InvalidRegistration("a redirect URI must not have a fragment (RFC 6749 §3.1.2)")
    if parts.username is not None or parts.password is not None:
        raise InvalidRegistration("a redirect URI must not carry user info")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return uri
    raise InvalidRegistration("a redirect URI must be https (http only for localhost/loopback)")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_scope(scope: str) -> str:
    if not _SCOPE_TOKEN.fullmatch(scope):
        raise InvalidRegistration(f"not a scope token (RFC 6749 §3.3): {scope!r}")
    return scope


class ClientRegistry:
    """Registers, lists, removes and authenticates OAuth clients.

    Args:
        clients: the client repository.
    """

    def __init__(self, *, clients: _Clients) -> None:
        self._clients = clients

    async def register(
        self,
        *,
        name: str,
        redirect_uris: list[str],
        grant_types: list[str],
        scopes: list[str],
        audience: str | None,
        public: bool,
    ) -> Registered:
        """Register a client; its secret (confidential clients) comes back once.

        Raises:
            InvalidRegistration: an unusable combination, with the reason.
        """
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidRegistration("name must be 1..128 characters")
        grants = list(dict.fromkeys(grant_types))
        unknown = [g for g in grants if g not in GRANT_TYPES]
        if not grants or unknown:
            raise InvalidRegistration(f"grants must be among {', '.join(GRANT_TYPES)}")
        uris = [check_redirect_uri(u) for u in dict.fromkeys(redirect_uris)]
        scope_list = [check_scope(s) for s in dict.fromkeys(scopes)]
        if "authorization_code" in grants:
            if not uris:
                raise InvalidRegistration("authorization_code needs at least one --redirect-uri")
            if not scope_list:
                scope_list = list(USER_SCOPES)
        elif uris:
            raise InvalidRegistration("redirect URIs are for the authorization_code grant only")
        if "refresh_token" in grants and "authorization_code" not in grants:
            raise InvalidRegistration("refresh_token comes with authorization_code only")
        if "client_credentials" in grants:
            if public:
                # RFC 6749 §4.4: only a client that can keep a secret may act for itself.
                raise InvalidRegistration("client_credentials needs a confidential client")
            if not audience:
                raise InvalidRegistration("client_credentials needs --audience")
        if audience is not None and not _AUDIENCE.fullmatch(audience):
            raise InvalidRegistration("audience must be one value of 1..256 characters, no spaces")
        secret = None if public else secrets.token_urlsafe(32)
        client = OAuthClient(
            # Generated, never chosen: a client can never take the name of the
            # platform's own clients (`idp-web`, `auth-service`).
            client_id=secrets.token_urlsafe(16),
            name=name,
            secret_hash=hash_secret(secret) if secret else None,
            redirect_uris=" ".join(uris),
            grant_types=" ".join(grants),
            scopes=" ".join(scope_list),
            audience=audience,
        )
        await self._clients.add(client)
        return Registered(client, secret)

    async def list(self) -> list[OAuthClient]:
        return await self._clients.all()

    async def remove(self, client_id: str) -> bool:
        return await self._clients.delete(client_id)

    async def get(self, client_id: str) -> OAuthClient | None:
        if not client_id or len(client_id) > 64:
            return None
        return await self._clients.get(client_id)

    async def authenticate(self, client_id: str, secret: str | None) -> OAuthClient:
        """The client whose credentials these are (RFC 6749 §2.3.1).

        A confidential client must present its secret; a public client
        presents none (and must not claim one). One answer for every failure,
        so the endpoint does not tell which client ids exist.

        Raises:
            InvalidClient: unknown client, missing or wrong secret.
        """
        client = await self.get(client_id)
        if client is None:
            # Same work as a real comparison: no timing hint about which ids exist.
            hmac.compare_digest(hash_secret(secret or ""), hash_secret("-"))
            raise InvalidClient
        if client.secret_hash is None:
            if secret:
                raise InvalidClient
            return client
        if secret is None or not hmac.compare_digest(hash_secret(secret), client.secret_hash):
            raise InvalidClient
        return client
