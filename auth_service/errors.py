"""Domain errors of the auth service. The edge (api/) maps them to HTTP."""

from __future__ import annotations


class AuthError(Exception):
    """Base class: a request the auth service refuses for a domain reason."""


class EmailTaken(AuthError):
    pass


class WeakPassword(AuthError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("password rejected by policy")
        self.problems = problems


class InvalidCredentials(AuthError):
    """Unknown email or wrong password; deliberately indistinguishable."""


class RefreshTokenInvalid(AuthError):
    """Unknown, expired, or belonging to a revoked session."""


class RefreshTokenReused(AuthError):
    """A rotated token came back: the session was revoked (RFC 9700 §4.14.2)."""

    def __init__(self, sid: str, user_id: str) -> None:
        super().__init__("refresh token reuse detected")
        self.sid = sid
        self.user_id = user_id


class SessionNotFound(AuthError):
    pass


class RateLimited(AuthError):
    def __init__(self, retry_after: int, scope: str) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after
        self.scope = scope


class UpstreamUnavailable(AuthError):
    """A dependency (user service, Redis, DB) could not serve the request."""

    def __init__(self, dependency: str) -> None:
        super().__init__(f"{dependency} unavailable")
        self.dependency = dependency
