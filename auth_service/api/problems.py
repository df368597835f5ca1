"""The auth service's one map from domain errors to HTTP problems (RFC 9457).

Services raise the domain errors of `auth_service/errors.py`; only this edge
chooses between 401, 403, 409 and 503. One table, so a route cannot answer
the same refusal differently from its neighbour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from auth_service.errors import (
    CeremonyFailed,
    CredentialExists,
    CredentialNotFound,
    EmailNotVerified,
    EmailTaken,
    InvalidCredentials,
    LastCredential,
    PasskeyRequired,
    RateLimited,
    ReauthenticationRequired,
    RefreshTokenInvalid,
    RefreshTokenReused,
    StepUpRequired,
    UpstreamUnavailable,
    WeakPassword,
)
from shared.http.problems import Problem
from shared.http.unavailable import DEPENDENCY_ERRORS

__all__ = [
    "UNAVAILABLE",
    "ProblemOptions",
    "reauthentication_problem",
    "step_up_problem",
    "to_problem",
]

# A dependency of this service could not serve the request: 503, retry.
UNAVAILABLE: tuple[type[Exception], ...] = (UpstreamUnavailable, *DEPENDENCY_ERRORS)


@dataclass(frozen=True, slots=True)
class ProblemOptions:
    """What a route knows that the error does not.

    Attributes:
        ceremony_status: 401 where a failed ceremony is a failed login, 400
            where it is a bad enrolment request.
        max_age: the step-up window the 403 challenge names.
        reauth_age: the recent-login window of the first passkey's 403.
    """

    ceremony_status: int = 400
    max_age: int = 0
    reauth_age: int = 0


def _insufficient_authentication(detail: str, slug: str, challenge: str, max_age: int) -> Problem:
    # 403, not RFC 9470's 401: the token is valid, the authentication behind
    # it is too weak or too old for this action (docs/ARCHITECTURE.md). The
    # challenge still tells a client what to do (RFC 6750 §3 allows it on 403).
    return Problem(
        403,
        "Forbidden",
        detail,
        slug=slug,
        headers={
            "WWW-Authenticate": 'Bearer realm="auth-service", '
            'error="insufficient_user_authentication", '
            f'error_description="{challenge}", '
            f'max_age="{max_age}"'
        },
        extra={"max_age": max_age},
    )


def step_up_problem(max_age: int) -> Problem:
    """403 with an RFC 9470 style challenge: a recent second factor is needed."""
    return _insufficient_authentication(
        "This action needs a recent second factor: sign in again with a passkey "
        f"(or a recovery code) within the last {max_age} seconds.",
        "step-up-required",
        "A recent second factor is required",
        max_age,
    )


def reauthentication_problem(max_age: int) -> Problem:
    """403 for the first passkey after a login that is not recent.

    The password in the request body (or a fresh login) answers it.
    """
    return _insufficient_authentication(
        "Adding your first passkey turns on two-step login: confirm your password "
        f"(send `password`), or log in again; a login counts for {max_age} seconds.",
        "reauthentication-required",
        "A recent login or the password is required",
        max_age,
    )


def _ceremony_failed(exc: CeremonyFailed, opts: ProblemOptions) -> Problem:
    # One body whatever the failed check: telling a client *which* check
    # failed would help whoever is forging responses. The reason goes to the
    # audit trail instead.
    if exc.reason == "mfa_token_unknown":
        return Problem(
            401,
            "Unauthorized",
            "The MFA token is unknown, expired or already used; log in again.",
            slug="mfa-token-invalid",
        )
    status = opts.ceremony_status
    return Problem(
        status,
        "Unauthorized" if status == 401 else "Bad Request",
        "The passkey response or recovery code could not be verified.",
        slug="webauthn-failed",
    )


def _fixed(status: int, title: str | None, detail: str, slug: str) -> Callable[..., Problem]:
    return lambda _exc, _opts: Problem(status, title, detail, slug=slug)


_Mapper = Callable[[Any, ProblemOptions], Problem]

# Domain error type -> its problem, first match wins.
_PROBLEMS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], _Mapper], ...] = (
    (
        RateLimited,
        lambda exc, _: Problem(
            429,
            "Too Many Requests",
            "Too many attempts; retry later.",
            slug="rate-limited",
            headers={"Retry-After": str(exc.retry_after)},
        ),
    ),
    (
        InvalidCredentials,
        _fixed(401, "Unauthorized", "Invalid email or password.", "invalid-credentials"),
    ),
    # 403, not 401: the password (or passkey) was right, and only its holder
    # learns that the account exists and waits for its address to be verified.
    (
        EmailNotVerified,
        _fixed(
            403,
            "Forbidden",
            "The account's email address is not verified yet. A new verification link "
            "has been mailed to it (unless one was sent very recently); open it, then "
            "log in again.",
            "email-not-verified",
        ),
    ),
    (
        EmailTaken,
        _fixed(409, "Conflict", "An account with this email already exists.", "email-taken"),
    ),
    (
        WeakPassword,
        lambda exc, _: Problem(
            422,
            "Invalid request",
            "The password does not meet the policy.",
            slug="validation",
            errors=[{"field": "password", "message": m} for m in exc.problems],
        ),
    ),
    # Same answer for both: the client cannot tell (or care) which.
    (
        (RefreshTokenReused, RefreshTokenInvalid),
        _fixed(401, "Unauthorized", "The refresh token is not valid.", "invalid-grant"),
    ),
    (CeremonyFailed, _ceremony_failed),
    (StepUpRequired, lambda _, opts: step_up_problem(opts.max_age)),
    (ReauthenticationRequired, lambda _, opts: reauthentication_problem(opts.reauth_age)),
    (CredentialNotFound, _fixed(404, None, "No such passkey.", "passkey-not-found")),
    (
        LastCredential,
        _fixed(
            409,
            "Conflict",
            "This is the account's last passkey. Removing it turns two-step login "
            "off and deletes the recovery codes; repeat with ?confirm_last=true to proceed.",
            "last-passkey",
        ),
    ),
    (
        CredentialExists,
        _fixed(
            409,
            "Conflict",
            "This authenticator is registered already, or the account has the "
            "maximum number of passkeys.",
            "passkey-exists",
        ),
    ),
    (
        PasskeyRequired,
        _fixed(
            409,
            "Conflict",
            "Recovery codes need a passkey on the account; add one first.",
            "passkey-required",
        ),
    ),
    (
        UNAVAILABLE,
        lambda _, __: Problem(
            503,
            "Service Unavailable",
            "A dependency is unavailable; nothing was changed. Retry shortly.",
            slug="unavailable",
            headers={"Retry-After": "2"},
        ),
    ),
)


_DEFAULTS = ProblemOptions()


def to_problem(exc: Exception, opts: ProblemOptions = _DEFAULTS) -> Problem:
    """The problem that answers `exc`.

    Raises:
        Exception: `exc` itself when it is no known domain or dependency error
            (the app's last-resort handler answers it with a bare 500).
    """
    for types, mapper in _PROBLEMS:
        if isinstance(exc, types):
            return mapper(exc, opts)
    raise exc
