"""TOTP flows over HTTP for the API tests: a pinned clock, enrolment, MFA login.

The service's clock is pinned by injection (`ctx.totp.clock`), so codes are
computed with pyotp for an exact time step and no test depends on where in a
30-second window it happens to run.
"""

from __future__ import annotations

import time
from typing import Any

import pyotp

from tests.conftest import Services
from tests.support.passkey_flows import bearer, password_account

STEP = 30


class Clock:
    """A settable clock, at the start of a time step (no boundary in the middle of a test)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // STEP * STEP)

    def __call__(self) -> float:
        return self.now

    def advance(self, steps: int = 1) -> None:
        self.now += steps * STEP


def pin_clock(s: Services) -> Clock:
    clock = Clock()
    s.auth_app.state.ctx.totp.clock = clock
    return clock


def code(secret: str, clock: Clock, offset: int = 0) -> str:
    """The code of the step `offset` steps from the clock's."""
    return pyotp.TOTP(secret).at(clock.now + offset * STEP)


async def enrol_totp(
    s: Services, tokens: dict[str, Any], clock: Clock
) -> tuple[str, dict[str, Any]]:
    """POST /totp/enrol + /totp/confirm; returns (secret, the confirm body)."""
    r = await s.auth.post("/totp/enrol", headers=bearer(tokens))
    assert r.status_code == 200, r.text
    secret: str = r.json()["secret"]
    c = await s.auth.post(
        "/totp/confirm", json={"code": code(secret, clock)}, headers=bearer(tokens)
    )
    assert c.status_code == 201, c.text
    confirmed: dict[str, Any] = c.json()
    return secret, confirmed


async def start_login(s: Services, account: dict[str, str]) -> dict[str, Any]:
    r = await s.auth.post(
        "/login", json={"email": account["email"], "password": account["password"]}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["mfa_required"] is True, body
    return body


async def totp_login(s: Services, account: dict[str, str], totp_code: str) -> Any:
    """Password, then the code: the /login/mfa response."""
    pending = await start_login(s, account)
    return await s.auth.post(
        "/login/mfa", json={"mfa_token": pending["mfa_token"], "totp": totp_code}
    )


async def totp_account(
    s: Services, clock: Clock
) -> tuple[dict[str, str], str, dict[str, Any], list[str]]:
    """An account with TOTP on, a fresh password+TOTP login (the clock one step
    on), and its recovery codes."""
    account, tokens = await password_account(s)
    secret, confirmed = await enrol_totp(s, tokens, clock)
    clock.advance()
    r = await totp_login(s, account, code(secret, clock))
    assert r.status_code == 200, r.text
    return account, secret, r.json(), confirmed["recovery_codes"]
