"""Request and response bodies of the page's authorization steps (api/authorize.py)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# The id `GET /authorize` hands the page: secrets.token_urlsafe(32).
RequestId = Annotated[str, Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


class AuthorizeStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: RequestId


class PendingAuthorization(BaseModel):
    client_name: str
    scope: str


class AuthorizeRedirect(BaseModel):
    # Where the page sends the browser: the client's redirect URI with the
    # code (or the error) and the state.
    redirect_to: str
