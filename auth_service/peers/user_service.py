"""The auth service's client for the user service's internal API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import httpx

from auth_service.errors import UpstreamUnavailable

_log = logging.getLogger(__name__)

# One scope per kind of call: the user service checks each route's own.
PROFILES_WRITE = "profiles:write"
PROFILES_READ = "profiles:read"
PROFILES_DELETE = "profiles:delete"


class UserServiceClient:
    """Calls to the user service's `/internal/` routes with a service token.

    Args:
        http: the client, with the user service's base URL.
        token: mints (or reuses) a service token for a scope.
    """

    def __init__(self, *, http: httpx.AsyncClient, token: Callable[[str], str]) -> None:
        self._http = http
        self._token = token

    def _auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token(scope)}"}

    async def upsert_profile(
        self,
        *,
        user_id: str,
        name: str,
        email: str,
        date_of_birth: date,
        job_title: str,
        created_at: datetime,
        email_verified: bool = False,
    ) -> dict[str, Any]:
        """Create or update the profile (idempotent on `user_id`).

        Raises:
            UpstreamUnavailable: the user service is down, slow or refused.
        """
        body = {
            "id": user_id,
            "name": name,
            "email": email,
            "date_of_birth": date_of_birth.isoformat(),
            "job_title": job_title,
            "created_at": created_at.isoformat(),
            "email_verified": email_verified,
        }
        return await self._send("POST", "/internal/profiles", body, (200, 201), "upsert")

    async def update_email(
        self, *, user_id: str, email: str | None = None, email_verified: bool | None = None
    ) -> dict[str, Any]:
        """Mirror the account's email facts into its profile (idempotent).

        Raises:
            UpstreamUnavailable: the user service is down, slow or refused.
        """
        body: dict[str, Any] = {"email_verified": email_verified}
        if email is not None:
            body["email"] = email
        return await self._send(
            "PATCH", f"/internal/profiles/{user_id}/email", body, (200,), "email update"
        )

    async def _send(
        self, method: str, path: str, body: dict[str, Any], ok: tuple[int, ...], what: str
    ) -> dict[str, Any]:
        try:
            resp = await self._http.request(
                method, path, json=body, headers=self._auth(PROFILES_WRITE)
            )
        except httpx.HTTPError as exc:
            _log.warning("user service unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("user-service") from exc
        if resp.status_code not in ok:
            _log.warning("user service refused profile %s: HTTP %s", what, resp.status_code)
            raise UpstreamUnavailable("user-service")
        data: dict[str, Any] = resp.json()
        return data

    async def delete_profile(self, user_id: str) -> None:
        """Erase the profile; done as well when there was none (idempotent).

        Raises:
            UpstreamUnavailable: the user service is down, slow or refused.
        """
        try:
            resp = await self._http.delete(
                f"/internal/profiles/{user_id}", headers=self._auth(PROFILES_DELETE)
            )
        except httpx.HTTPError as exc:
            _log.warning("user service unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("user-service") from exc
        if resp.status_code != 204:
            _log.warning("user service refused profile deletion: HTTP %s", resp.status_code)
            raise UpstreamUnavailable("user-service")

    async def export(self, user_id: str) -> dict[str, Any]:
        """What the user service holds about `user_id`: `{profile, audit_events, ...}`.

        Raises:
            UpstreamUnavailable: the user service is down, slow or refused.
        """
        try:
            resp = await self._http.get(
                f"/internal/exports/{user_id}", headers=self._auth(PROFILES_READ)
            )
        except httpx.HTTPError as exc:
            _log.warning("user service unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("user-service") from exc
        if resp.status_code != 200:
            _log.warning("user service refused the export: HTTP %s", resp.status_code)
            raise UpstreamUnavailable("user-service")
        data: dict[str, Any] = resp.json()
        return data

    async def profile_as(self, bearer: str) -> dict[str, Any] | None:
        """The profile `GET /users/me` shows to the holder of `bearer` (a user's
        access token), so the user service applies its own rules; None when it
        refuses the token.

        Raises:
            UpstreamUnavailable: the user service is down or failing.
        """
        try:
            resp = await self._http.get("/users/me", headers={"Authorization": f"Bearer {bearer}"})
        except httpx.HTTPError as exc:
            _log.warning("user service unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("user-service") from exc
        if resp.status_code in (401, 403, 404):
            return None
        if resp.status_code != 200:
            _log.warning("user service refused a profile read: HTTP %s", resp.status_code)
            raise UpstreamUnavailable("user-service")
        data: dict[str, Any] = resp.json()
        return data
