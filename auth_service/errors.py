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

    reason = "invalid_refresh_token"


class RefreshSessionIdle(RefreshTokenInvalid):
    """Not used within the idle timeout: the session has ended (ASVS 7.3.1)."""

    reason = "session_idle"


class RefreshTokenWrongClient(RefreshTokenInvalid):
    """Issued to another client than the one presenting it (RFC 6749 §6)."""

    reason = "wrong_client"


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


class InvalidOneTimeToken(AuthError):
    """A reset (or verification) token that is unknown, used or expired."""


class EmailNotVerified(AuthError):
    """The password (or passkey) was right, but REQUIRE_VERIFIED_EMAIL is on
    and the account's address is not verified yet."""

    def __init__(self, user_id: str) -> None:
        super().__init__("email not verified")
        self.user_id = user_id


class EmailAlreadyVerified(AuthError):
    """A verification mail was asked for an address that is verified already."""


class SameEmail(AuthError):
    """An email change to the address the account already has."""


class MailUnavailable(AuthError):
    """No mail transport is configured (SMTP_URL empty): nothing can be mailed."""


# --- second factor (WebAuthn passkeys, recovery codes) ---------------------


class SecondFactorRequired(AuthError):
    """The password was right, but the account has a passkey: no tokens yet.

    An exception, not a return value, so that a caller which forgets the
    second factor fails closed instead of issuing password-only tokens.
    """

    def __init__(self, user_id: str) -> None:
        super().__init__("second factor required")
        self.user_id = user_id


class CeremonyFailed(AuthError):
    """A WebAuthn ceremony, an MFA step or a recovery code did not verify.

    `reason` names the failed check for the audit trail only; clients get one
    generic answer so the API is no oracle for forging assertions.
    """

    def __init__(self, reason: str, *, user_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user_id = user_id


class StepUpRequired(AuthError):
    """The action needs a second factor more recent than the token's."""


class ReauthenticationRequired(AuthError):
    """The action needs a recent login or the password again (first passkey)."""


class CredentialNotFound(AuthError):
    """No such passkey, or not the caller's (indistinguishable on purpose)."""


class CredentialExists(AuthError):
    """The authenticator's credential id is registered already (L3 §7.1 step 26)."""


class LastCredential(AuthError):
    """Removing the account's last passkey needs an explicit confirmation."""


class PasskeyRequired(AuthError):
    """Recovery codes back up a passkey; without one there is nothing to recover."""
