"""POST /password/forgot and /password/reset, with the mail read from the sink."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.conftest import (
    ISSUER,
    REDIS_URL,
    MailSink,
    Services,
    mail_sent,
    mailing_services,
    new_user,
    rejected_within_a_second,
    start_services,
)
from tests.e2e.processes import free_port
from tests.support.mail import (
    RESET_SUBJECT,
    html_of,
    load_sink,
    messages,
    messages_to,
    newest_link,
    reset_link,
)

pytestmark = pytest.mark.anyio

NEW = "velvet-orbit-plum-harbour-42"


def _bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _account(s: Services) -> dict[str, str]:
    body = new_user()
    assert (await s.auth.post("/users", json=body)).status_code == 201
    return body


async def _login(s: Services, email: str, password: str) -> Any:
    return await s.auth.post("/login", json={"email": email, "password": password})


async def _reset_token(s: Services, sink: MailSink, email: str) -> str:
    r = await s.auth.post("/password/forgot", json={"email": email})
    assert r.status_code == 202, r.text
    await mail_sent(s)
    return newest_link(sink.directory, email, RESET_SUBJECT)[1]


async def test_forgot_answers_alike_and_mails_only_an_existing_account(
    mailing: Services, mail_sink: MailSink
) -> None:
    body = await _account(mailing)
    known = await mailing.auth.post("/password/forgot", json={"email": body["email"]})
    unknown = await mailing.auth.post("/password/forgot", json={"email": "nobody@example.com"})
    garbage = await mailing.auth.post("/password/forgot", json={"email": "not an email"})
    assert known.status_code == unknown.status_code == garbage.status_code == 202
    assert known.json() == unknown.json() == garbage.json()
    assert known.headers["content-type"] == unknown.headers["content-type"]
    await mail_sent(mailing)
    # Registration mailed a verification link too; the reset mails are these.
    stored = [m for m in messages(mail_sink.directory) if m["Subject"] == RESET_SUBJECT]
    assert [m["To"] for m in stored] == [body["email"]]
    link, token = reset_link(stored[0])
    assert link == f"{ISSUER}/?reset_token={token}"
    assert link in html_of(stored[0])
    assert stored[0]["Subject"] == "Reset your password"


async def test_reset_sets_the_password_revokes_every_session_and_works_once(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body = await _account(s)
    session = (await _login(s, body["email"], body["password"])).json()
    token = await _reset_token(s, mail_sink, body["email"])
    r = await s.auth.post("/password/reset", json={"token": token, "new_password": NEW})
    assert r.status_code == 204, r.text
    assert await rejected_within_a_second(s.user, "/users/me", _bearer(session))
    refresh = await s.auth.post("/token/refresh", json={"refresh_token": session["refresh_token"]})
    assert refresh.status_code == 401
    assert (await _login(s, body["email"], NEW)).status_code == 200
    assert (await _login(s, body["email"], body["password"])).status_code == 401
    again = await s.auth.post(
        "/password/reset", json={"token": token, "new_password": "another-fine-passphrase-7"}
    )
    assert again.status_code == 400
    assert again.json()["type"].endswith("invalid-token")
    assert (await _login(s, body["email"], NEW)).status_code == 200


async def test_unknown_and_expired_tokens_are_400(mailing: Services, mail_sink: MailSink) -> None:
    s = mailing
    unknown = await s.auth.post("/password/reset", json={"token": "A" * 43, "new_password": NEW})
    assert unknown.status_code == 400
    body = await _account(s)
    token = await _reset_token(s, mail_sink, body["email"])
    # Stored only as its SHA-256 digest: expire that key as 30 minutes would.
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        prefix = s.auth_settings.redis_prefix
        # The token's first 16 characters are its Cluster hash tag
        # (auth_service/stores/keys.py).
        digest = hashlib.sha256(token.encode()).hexdigest()
        key = f"{prefix}ott:reset:t:{{{token[:16]}}}:{digest}"
        assert 1700 < await client.ttl(key) <= 1800
        assert token.encode() not in b"".join(
            [k for k in await client.keys(f"{prefix}ott:*")]
            + [await client.get(k) or b"" for k in await client.keys(f"{prefix}ott:*")]
        )
        await client.pexpire(key, 1)
        await asyncio.sleep(0.01)
    finally:
        await client.aclose()
    expired = await s.auth.post("/password/reset", json={"token": token, "new_password": NEW})
    assert expired.status_code == 400
    assert expired.json() == unknown.json()
    assert (await _login(s, body["email"], body["password"])).status_code == 200


async def test_a_refused_password_leaves_the_link_working(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body = await _account(s)
    token = await _reset_token(s, mail_sink, body["email"])
    weak = await s.auth.post("/password/reset", json={"token": token, "new_password": "short"})
    assert weak.status_code == 422
    assert {e["field"] for e in weak.json()["errors"]} == {"new_password"}
    ok = await s.auth.post("/password/reset", json={"token": token, "new_password": NEW})
    assert ok.status_code == 204


async def test_only_the_newest_link_works(mailing: Services, mail_sink: MailSink) -> None:
    s = mailing
    body = await _account(s)
    first = await _reset_token(s, mail_sink, body["email"])
    second = await _reset_token(s, mail_sink, body["email"])
    assert first != second
    r = await s.auth.post("/password/reset", json={"token": first, "new_password": NEW})
    assert r.status_code == 400
    r = await s.auth.post("/password/reset", json={"token": second, "new_password": NEW})
    assert r.status_code == 204


async def test_a_password_change_voids_an_earlier_link(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body = await _account(s)
    token = await _reset_token(s, mail_sink, body["email"])
    session = (await _login(s, body["email"], body["password"])).json()
    changed = await s.auth.post(
        "/password/change",
        json={"current_password": body["password"], "new_password": NEW},
        headers=_bearer(session),
    )
    assert changed.status_code == 204
    r = await s.auth.post(
        "/password/reset", json={"token": token, "new_password": "another-fine-passphrase-7"}
    )
    assert r.status_code == 400


async def test_of_two_concurrent_resets_with_one_token_one_wins(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body = await _account(s)
    token = await _reset_token(s, mail_sink, body["email"])
    results = await asyncio.gather(
        *(
            s.auth.post("/password/reset", json={"token": token, "new_password": f"{NEW}-{i}"})
            for i in range(4)
        )
    )
    assert sorted(r.status_code for r in results) == [204, 400, 400, 400]


@pytest.mark.parametrize(
    "payload",
    [
        {"token": "short", "new_password": NEW},
        {"token": "bad token with spaces and more", "new_password": NEW},
        {"token": "A" * 129, "new_password": NEW},
        {"token": "A" * 43},
        {"email": "a@example.com"},
    ],
)
async def test_malformed_reset_bodies_are_422(mailing: Services, payload: dict[str, str]) -> None:
    r = await mailing.auth.post("/password/reset", json=payload)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


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
        forgot_email_limit=2,
        forgot_ip_limit=4,
    ):
        yield s


async def test_forgot_is_limited_per_email_and_per_ip(
    limited: Services, mail_sink: MailSink
) -> None:
    body = await _account(limited)
    statuses = [
        (await limited.auth.post("/password/forgot", json={"email": e})).status_code
        for e in (body["email"], body["email"], body["email"], "x@example.com", "y@example.com")
    ]
    # Per email: 2 go through, the third is refused; per IP: the fifth (4 allowed).
    assert statuses == [202, 202, 429, 202, 429]
    await mail_sent(limited)
    assert len(messages_to(mail_sink.directory, body["email"], RESET_SUBJECT)) == 2


async def test_without_smtp_url_forgot_is_503_for_every_email(services: Services) -> None:
    body = await _account(services)
    known = await services.auth.post("/password/forgot", json={"email": body["email"]})
    unknown = await services.auth.post("/password/forgot", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 503
    assert known.json() == unknown.json()
    assert known.json()["type"].endswith("mail-unavailable")


class _HeldSink:
    """An SMTP server that accepts a message only when the test lets it."""

    def __init__(self, directory: Path) -> None:
        self.release = threading.Event()
        self._inner = load_sink().MailDir(directory, announce=lambda _line: None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 10)
        result: str = await self._inner.handle_DATA(server, session, envelope)
        return result


async def test_the_answer_does_not_wait_for_the_mail(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    """Mail goes out off the request path: a slow mail server cannot make the
    answer for an existing account slower than for an unknown one."""
    from aiosmtpd.controller import Controller

    held = _HeldSink(tmp_path / "mail")
    controller = Controller(held, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        async for s in start_services(
            tmp_path=tmp_path,
            redis_prefix=redis_prefix,
            urls=sqlite_urls,
            auth={"smtp_url": f"smtp://127.0.0.1:{controller.port}"},
        ):
            body = await _account(s)
            r = await asyncio.wait_for(
                s.auth.post("/password/forgot", json={"email": body["email"]}), 5
            )
            assert r.status_code == 202
            assert messages(tmp_path / "mail") == []  # answered; the mail is still held
            held.release.set()
            await mail_sent(s)
            assert len(messages_to(tmp_path / "mail", body["email"], RESET_SUBJECT)) == 1
    finally:
        held.release.set()
        controller.stop()
