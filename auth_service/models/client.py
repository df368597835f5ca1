"""Registered OAuth 2.0 clients: the other applications that sign in through the platform."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from auth_service.models.identity import utcnow


class OAuthClient(SQLModel, table=True):
    """One registered client (RFC 6749 §2), made by an operator with
    `python -m auth_service.clients create`.

    Lists are space-separated, as RFC 6749 §3.3 writes scopes: none of the
    values (URIs, grant names, scope tokens) may hold a space.
    """

    __tablename__ = "oauth_clients"

    client_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=128)
    # SHA-256 (hex) of a 256-bit random secret; NULL for a public client
    # (RFC 6749 §2.1), which proves nothing but PKCE. docs/ASVS.md, "OAuth clients".
    secret_hash: str | None = Field(default=None, max_length=64)
    redirect_uris: str = Field(default="", sa_type=sa.Text)
    grant_types: str = Field(default="", max_length=128)
    scopes: str = Field(default="", max_length=1024)
    # `aud` of the client's client_credentials tokens.
    audience: str | None = Field(default=None, max_length=256)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def is_public(self) -> bool:
        return self.secret_hash is None

    @property
    def redirect_uri_list(self) -> tuple[str, ...]:
        return tuple(self.redirect_uris.split())

    @property
    def grant_type_set(self) -> frozenset[str]:
        return frozenset(self.grant_types.split())

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())
