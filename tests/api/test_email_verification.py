"""POST /email/verify and /email/verify/resend, with the mail read from the sink;
REQUIRE_VERIFIED_EMAIL both ways."""

from __future__ import annotations

import asyncio
import hashlib
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
    start_services,
)
from tests.support.audit import AuditCapture
from tests.support.mail import (
    VERIFY_SUBJECT,
    html_of,
    messages_to,
    newest_link,
    text_of,
    verify_link,
)
from tests.support.passkey_flows import enrol
from tests.support.soft_authenticator import SoftAuthenticator

pytestmark = pytest.mark.anyio

PROFILE_FIELDS = {"id", "name", "email", "date_of_birth", "job_title", "created_at"}


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _register(s: Services) -> tuple[dict[str, str], dict[str, Any]]:
    body = new_user()
    r = await s.auth.post("/users", json=body)
    assert r.status_code == 201, r.text
    return body, r.json()


async def _login(s: Services, body: dict[str, str]) -> Any:
    return await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})


async def _verify_token(s: Services, sink: MailSink, email: str) -> str:
    await mail_sent(s)
    return newest_link(sink.directory, email, VERIFY_SUBJECT)[1]


async def _me(s: Services, tokens: dict[str, Any]) -> dict[str, Any]:
    r = await s.user.get("/users/me", headers=_bearer(tokens))
    assert r.status_code == 200, r.text
    me: dict[str, Any] = r.json()
    return me


async def test_registration_mails_a_link_that_verifies_the_profile(
    mailing: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = mailing
    body, created = await _register(s)
    # The registration answer keeps its contract: no new field.
    assert set(created) == PROFILE_FIELDS
    await mail_sent(s)
    [mail] = messages_to(mail_sink.directory, body["email"])
    assert mail["Subject"] == VERIFY_SUBJECT
    link, token = verify_link(mail)
    assert link == f"{ISSUER}/?verify_token={token}"
    assert link in html_of(mail)
    tokens = (await _login(s, body)).json()
    assert (await _me(s, tokens))["email_verified"] is False
    by_id = await s.user.get(f"/users/{created['id']}", headers=_bearer(tokens))
    assert by_id.json()["email_verified"] is False

    r = await s.auth.post("/email/verify", json={"token": token})
    assert r.status_code == 204, r.text
    assert r.headers["cache-control"] == "no-store"
    assert (await _me(s, tokens))["email_verified"] is True
    by_id = await s.user.get(f"/users/{created['id']}", headers=_bearer(tokens))
    assert by_id.json()["email_verified"] is True
    [event] = audit.named("email.verify")
    assert (event["outcome"], event["user_id"], event["purpose"]) == (
        "success",
        created["id"],
        "address",
    )

    again = await s.auth.post("/email/verify", json={"token": token})
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["type"].endswith("invalid-token")
    assert audit.named("email.verify")[-1]["reason"] == "invalid_token"


async def test_unknown_and_expired_tokens_are_400_and_tokens_are_stored_hashed(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    unknown = await s.auth.post("/email/verify", json={"token": "A" * 43})
    assert unknown.status_code == 400
    body, _ = await _register(s)
    token = await _verify_token(s, mail_sink, body["email"])
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        prefix = s.auth_settings.redis_prefix
        digest = hashlib.sha256(token.encode()).hexdigest()
        key = f"{prefix}ott:verify:t:{{{token[:16]}}}:{digest}"
        # EMAIL_VERIFY_TTL_SECONDS: a day by default.
        assert 86300 < await client.ttl(key) <= 86400
        stored = await client.keys(f"{prefix}ott:*")
        assert token.encode() not in b"".join(stored + [await client.get(k) or b"" for k in stored])
        await client.pexpire(key, 1)
        await asyncio.sleep(0.01)
    finally:
        await client.aclose()
    expired = await s.auth.post("/email/verify", json={"token": token})
    assert expired.status_code == 400
    assert expired.json() == unknown.json()
    tokens = (await _login(s, body)).json()
    assert (await _me(s, tokens))["email_verified"] is False


async def test_of_concurrent_uses_of_one_token_one_wins(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body, _ = await _register(s)
    token = await _verify_token(s, mail_sink, body["email"])
    results = await asyncio.gather(
        *(s.auth.post("/email/verify", json={"token": token}) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [204, 400, 400, 400]


@pytest.mark.parametrize(
    "payload",
    [{"token": "short"}, {"token": "bad token with spaces in it"}, {"token": "A" * 129}, {}],
)
async def test_malformed_verify_bodies_are_422(mailing: Services, payload: dict[str, str]) -> None:
    r = await mailing.auth.post("/email/verify", json=payload)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_resend_mails_a_new_link_and_retires_the_old(
    mailing: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = mailing
    body, created = await _register(s)
    first = await _verify_token(s, mail_sink, body["email"])
    tokens = (await _login(s, body)).json()
    r = await s.auth.post("/email/verify/resend", headers=_bearer(tokens))
    assert r.status_code == 202, r.text
    assert "detail" in r.json()
    second = await _verify_token(s, mail_sink, body["email"])
    assert second != first
    assert len(messages_to(mail_sink.directory, body["email"], VERIFY_SUBJECT)) == 2
    assert (await s.auth.post("/email/verify", json={"token": first})).status_code == 400
    assert (await s.auth.post("/email/verify", json={"token": second})).status_code == 204
    [event] = audit.named("email.verify_resend")
    assert (event["outcome"], event["user_id"]) == ("success", created["id"])
    # Verified now: nothing left to verify.
    done = await s.auth.post("/email/verify/resend", headers=_bearer(tokens))
    assert done.status_code == 409
    assert done.json()["type"].endswith("email-already-verified")


async def test_resend_needs_a_bearer_token(mailing: Services) -> None:
    r = await mailing.auth.post("/email/verify/resend")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"


async def test_without_smtp_url_registration_works_and_resend_is_503(services: Services) -> None:
    body, _ = await _register(services)
    tokens = (await _login(services, body)).json()
    r = await services.auth.post("/email/verify/resend", headers=_bearer(tokens))
    assert r.status_code == 503
    assert r.json()["type"].endswith("mail-unavailable")


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
        verify_resend_account_limit=2,
        verify_resend_ip_limit=3,
    ):
        yield s


async def test_resend_is_limited_per_account_and_per_ip(
    limited: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = limited
    body, _ = await _register(s)
    tokens = (await _login(s, body)).json()
    statuses = [
        (await s.auth.post("/email/verify/resend", headers=_bearer(tokens))).status_code
        for _ in range(3)
    ]
    assert statuses == [202, 202, 429]
    refused = await s.auth.post("/email/verify/resend", headers=_bearer(tokens))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    limits = [e["reason"] for e in audit.named("rate_limited")]
    assert limits == ["verify-resend-account", "verify-resend-ip"]
    # Another account from the same IP: the per-IP budget (3) is spent too.
    other, _ = await _register(s)
    other_tokens = (await _login(s, other)).json()
    r = await s.auth.post("/email/verify/resend", headers=_bearer(other_tokens))
    assert r.status_code == 429
    await mail_sent(s)
    # The registration's mail plus the two resends that went through.
    assert len(messages_to(mail_sink.directory, body["email"], VERIFY_SUBJECT)) == 3


# --- REQUIRE_VERIFIED_EMAIL ---------------------------------------------------------


@pytest.fixture
async def strict(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], mail_sink: MailSink
) -> AsyncIterator[Services]:
    async for s in mailing_services(
        tmp_path, redis_prefix, sqlite_urls, mail_sink, require_verified_email=True
    ):
        yield s


async def test_off_by_default_an_unverified_account_logs_in(mailing: Services) -> None:
    assert mailing.auth_settings.require_verified_email is False
    body, _ = await _register(mailing)
    r = await _login(mailing, body)
    assert r.status_code == 200, r.text
    assert "access_token" in r.json()


async def test_on_an_unverified_login_is_403_after_the_password_check(
    strict: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = strict
    body, created = await _register(s)
    await mail_sent(s)
    wrong = await s.auth.post("/login", json={"email": body["email"], "password": "x" * 16})
    unknown = await s.auth.post("/login", json={"email": "nobody@example.com", "password": "x"})
    # Without the password the answer is the usual 401: nothing says the account waits.
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()

    refused = await _login(s, body)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith(":email-not-verified")
    assert "access_token" not in problem
    event = audit.named("login")[-1]
    assert (event["outcome"], event["reason"], event["user_id"]) == (
        "failure",
        "email_not_verified",
        created["id"],
    )
    # The refusal mails a fresh link (someone who cannot log in cannot ask
    # with a bearer token); only the newest works.
    await mail_sent(s)
    mails = messages_to(mail_sink.directory, body["email"], VERIFY_SUBJECT)
    assert len(mails) == 2
    old, new = verify_link(mails[0])[1], verify_link(mails[1])[1]
    assert (await s.auth.post("/email/verify", json={"token": old})).status_code == 400
    # The OAuth password grant refuses too, in RFC 6749's shape.
    grant = await s.auth.post(
        "/token",
        data={"grant_type": "password", "username": body["email"], "password": body["password"]},
    )
    assert grant.status_code == 400
    assert grant.json()["error"] == "invalid_grant"
    assert "access_token" not in grant.json()
    # ... and mails the next link, which retires `new`.
    newest = await _verify_token(s, mail_sink, body["email"])
    assert newest != new
    assert (await s.auth.post("/email/verify", json={"token": newest})).status_code == 204
    ok = await _login(s, body)
    assert ok.status_code == 200, ok.text
    assert (await _me(s, ok.json()))["email_verified"] is True


async def test_on_a_passkey_login_of_an_unverified_account_is_refused(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], mail_sink: MailSink
) -> None:
    """An operator turns the setting on while unverified accounts have passkeys."""
    authn = SoftAuthenticator()
    async for s in mailing_services(tmp_path, redis_prefix, sqlite_urls, mail_sink):
        body, _ = await _register(s)
        tokens = (await _login(s, body)).json()
        await enrol(s, tokens, authn)
        token = await _verify_token(s, mail_sink, body["email"])
    async for s in mailing_services(
        tmp_path, redis_prefix, sqlite_urls, mail_sink, require_verified_email=True
    ):
        options = (await s.auth.post("/webauthn/login/options")).json()
        r = await s.auth.post("/webauthn/login/verify", json={"credential": authn.get(options)})
        assert r.status_code == 403, r.text
        assert r.json()["type"].endswith(":email-not-verified")
        # Password + passkey: refused before the second step.
        login = await _login(s, body)
        assert login.status_code == 403
        assert "mfa_token" not in login.json()
        # An older link (from before the refusals) no longer works; the newest does.
        assert (await s.auth.post("/email/verify", json={"token": token})).status_code == 400
        newest = await _verify_token(s, mail_sink, body["email"])
        assert (await s.auth.post("/email/verify", json={"token": newest})).status_code == 204
        options = (await s.auth.post("/webauthn/login/options")).json()
        r = await s.auth.post("/webauthn/login/verify", json={"credential": authn.get(options)})
        assert r.status_code == 200, r.text


async def test_verification_mail_holds_no_other_secret(
    mailing: Services, mail_sink: MailSink
) -> None:
    body, _ = await _register(mailing)
    await mail_sent(mailing)
    [mail] = messages_to(mail_sink.directory, body["email"])
    assert body["password"] not in mail.as_string()
    assert "verify_token=" in text_of(mail)


async def test_the_profile_upsert_carries_email_verified(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str]
) -> None:
    """/internal/profiles stores what the auth service says, and the email
    update route is service-token only."""
    async for s in start_services(tmp_path=tmp_path, redis_prefix=redis_prefix, urls=sqlite_urls):
        body, created = await _register(s)
        tokens = (await _login(s, body)).json()
        user_token = _bearer(tokens)
        r = await s.user.patch(
            f"/internal/profiles/{created['id']}/email",
            json={"email_verified": True},
            headers=user_token,
        )
        assert r.status_code == 403  # a user token is no service token
        assert (await _me(s, tokens))["email_verified"] is False
        service = {"Authorization": f"Bearer {s.auth_app.state.ctx.issuer.service_token()}"}
        r = await s.user.patch(
            f"/internal/profiles/{created['id']}/email",
            json={"email_verified": True},
            headers=service,
        )
        assert r.status_code == 200, r.text
        assert r.json()["email_verified"] is True
        missing = await s.user.patch(
            "/internal/profiles/0b7c1a9e-3c38-4f57-9a43-6f1d1c1e2f10/email",
            json={"email_verified": True},
            headers=service,
        )
        assert missing.status_code == 404
        bad = await s.user.patch(
            f"/internal/profiles/{created['id']}/email",
            json={"email": "not an email"},
            headers=service,
        )
        assert bad.status_code == 422


async def test_a_user_service_outage_is_503_and_keeps_the_link(
    tmp_path: Path, redis_prefix: str, sqlite_urls: dict[str, str], mail_sink: MailSink
) -> None:
    """The profile is written before the token is spent: with the user service
    down the answer is 503 and the same link works once it is back."""
    import httpx
    from asgi_lifespan import LifespanManager

    from auth_service.main import create_app as create_auth
    from tests.conftest import auth_settings
    from tests.e2e.processes import free_port

    async for s in mailing_services(tmp_path, redis_prefix, sqlite_urls, mail_sink):
        body, _ = await _register(s)
        token = await _verify_token(s, mail_sink, body["email"])
        # A second auth instance on the same database and Redis, whose user
        # service address answers nothing (a closed port): a real outage.
        cut_off = auth_settings(
            database_url=sqlite_urls["auth"],
            redis_url=REDIS_URL,
            redis_prefix=redis_prefix,
            key_dir=tmp_path / "keys",
            user_service_url=f"http://127.0.0.1:{free_port()}",
            user_service_timeout_seconds=1.0,
        )
        app = create_auth(cut_off)
        async with (
            LifespanManager(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://a") as down,
        ):
            r = await down.post("/email/verify", json={"token": token})
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
        assert (await s.auth.post("/email/verify", json={"token": token})).status_code == 204
        tokens = (await _login(s, body)).json()
        assert (await _me(s, tokens))["email_verified"] is True
