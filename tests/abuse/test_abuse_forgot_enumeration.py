"""Account enumeration through forgot-password: the answer, the limits and
the timing must not tell a known email from an unknown one.

The timing test is built like the login one (test_abuse_enumeration.py):
interleaved samples, medians, a generous ratio. The mail server here takes
200 ms per message, as a remote relay might: were the mail sent on the
request path, every answer for the known email would be that much slower.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MailSink, Services, mail_sent, mailing_services, new_user
from tests.e2e.processes import free_port
from tests.support.mail import RESET_SUBJECT, load_sink, messages_to

pytestmark = pytest.mark.anyio

SAMPLES = 15  # per side
MAX_MEDIAN_RATIO = 2.5
RELAY_DELAY_SECONDS = 0.2


class _SlowRelay:
    def __init__(self, directory: Path) -> None:
        self._inner = load_sink().MailDir(directory, announce=lambda _line: None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(RELAY_DELAY_SECONDS)
        result: str = await self._inner.handle_DATA(server, session, envelope)
        return result


@pytest.fixture
def slow_relay(tmp_path: Path) -> Iterator[MailSink]:
    from aiosmtpd.controller import Controller

    directory = tmp_path / "mail"
    controller = Controller(_SlowRelay(directory), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield MailSink(f"smtp://127.0.0.1:{controller.port}", directory)
    finally:
        controller.stop()


@pytest.fixture
async def slow_mail(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], slow_relay: MailSink
) -> AsyncIterator[Services]:
    async for s in mailing_services(tmp_path, redis_prefix, sqlite_urls, slow_relay):
        yield s


async def test_forgot_timing_does_not_reveal_whether_an_email_exists(
    slow_mail: Services, slow_relay: MailSink
) -> None:
    body = new_user()
    assert (await slow_mail.auth.post("/users", json=body)).status_code == 201
    known = {"email": body["email"]}
    unknown = {"email": f"ghost-{body['email']}"}

    async def timed(payload: dict[str, str]) -> float:
        t0 = time.perf_counter()
        r = await slow_mail.auth.post("/password/forgot", json=payload)
        elapsed = time.perf_counter() - t0
        assert r.status_code == 202
        return elapsed

    await timed(known)  # warm-up
    await timed(unknown)
    known_times: list[float] = []
    unknown_times: list[float] = []
    for _ in range(SAMPLES):
        known_times.append(await timed(known))
        unknown_times.append(await timed(unknown))
    k, u = statistics.median(known_times), statistics.median(unknown_times)
    ratio = max(k, u) / min(k, u)
    assert ratio < MAX_MEDIAN_RATIO, (
        f"median known {k * 1000:.1f} ms vs unknown {u * 1000:.1f} ms (x{ratio:.2f})"
    )
    await mail_sent(slow_mail)
    # The mails did go out (later): the known email got every one.
    assert len(messages_to(slow_relay.directory, body["email"], RESET_SUBJECT)) == SAMPLES + 1


@pytest.fixture
async def limited(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], mail_sink: MailSink
) -> AsyncIterator[Services]:
    async for s in mailing_services(
        tmp_path,
        redis_prefix,
        sqlite_urls,
        mail_sink,
        rate_limit_enabled=True,
        forgot_ip_limit=10_000,
        forgot_email_limit=3,
    ):
        yield s


async def test_forgot_limits_treat_unknown_emails_like_known_ones(limited: Services) -> None:
    body = new_user()
    assert (await limited.auth.post("/users", json=body)).status_code == 201

    async def run(email: str) -> list[tuple[int, object]]:
        out = []
        for _ in range(5):
            r = await limited.auth.post("/password/forgot", json={"email": email})
            out.append((r.status_code, r.json().get("detail")))
        return out

    assert await run(body["email"]) == await run("ghost@example.com")
    assert [status for status, _ in await run("other-ghost@example.com")] == [
        202,
        202,
        202,
        429,
        429,
    ]
