"""The auth service's client for the user service's internal API."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import httpx

from auth_service.errors import UpstreamUnavailable

_log = logging.getLogger(__name__)


class UserServiceClient:
    def __init__(self, *, http: httpx.AsyncClient, token: Callable[[], str]) -> None:
        self._http = http
        self._token = token

    async def upsert_profile(
        self,
        *,
        user_id: str,
        name: str,
        email: str,
        date_of_birth: date,
        job_title: str,
        created_at: datetime,
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
        }
        try:
            resp = await self._http.post(
                "/internal/profiles",
                json=body,
                headers={"Authorization": f"Bearer {self._token()}"},
            )
        except httpx.HTTPError as exc:
            _log.warning("user service unreachable: %s", type(exc).__name__)
            raise UpstreamUnavailable("user-service") from exc
        if resp.status_code not in (200, 201):
            _log.warning("user service refused profile upsert: HTTP %s", resp.status_code)
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
