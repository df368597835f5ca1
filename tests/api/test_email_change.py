"""POST /email/change, completed by POST /email/verify with the link mailed to
the new address; the mail read from the sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    ISSUER,
    MailSink,
    Services,
    mail_sent,
    mailing_services,
    new_user,
    rejected_within_a_second,
)
from tests.support.audit import AuditCapture
from tests.support.mail import (
    CHANGE_SUBJECT,
    CHANGED_SUBJECT,
    RESET_SUBJECT,
    VERIFY_SUBJECT,
    messages_to,
    newest_link,
    text_of,
    verify_link,
)

pytestmark = pytest.mark.anyio


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _new_address() -> str:
    return new_user()["email"].replace("user-", "moved-")


async def _account(s: Services) -> tuple[dict[str, str], str, dict[str, Any]]:
    body = new_user()
    r = await s.auth.post("/users", json=body)
    assert r.status_code == 201, r.text
    return body, r.json()["id"], await _login(s, body["email"], body["password"])


async def _login(s: Services, email: str, password: str) -> dict[str, Any]:
    r = await s.auth.post("/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


async def _change(s: Services, tokens: dict[str, Any], new_email: str, password: str) -> Any:
    return await s.auth.post(
        "/email/change",
        json={"new_email": new_email, "password": password},
        headers=_bearer(tokens),
    )


async def _change_token(s: Services, sink: MailSink, address: str) -> str:
    await mail_sent(s)
    return newest_link(sink.directory, address, CHANGE_SUBJECT)[1]


async def _me(s: Services, tokens: dict[str, Any]) -> dict[str, Any]:
    r = await s.user.get("/users/me", headers=_bearer(tokens))
    assert r.status_code == 200, r.text
    me: dict[str, Any] = r.json()
    return me


async def test_the_email_changes_only_when_the_new_address_link_is_used(
    mailing: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = mailing
    body, uid, tokens = await _account(s)
    other_session = await _login(s, body["email"], body["password"])
    new = _new_address()
    r = await _change(s, tokens, new, body["password"])
    assert r.status_code == 202, r.text
    assert r.headers["cache-control"] == "no-store"
    await mail_sent(s)
    link, token = verify_link(messages_to(mail_sink.directory, new, CHANGE_SUBJECT)[-1])
    assert link == f"{ISSUER}/?verify_token={token}"
    # Nothing moved yet: the old address still logs in, the profile is unchanged.
    assert (await _me(s, tokens))["email"] == body["email"]
    await _login(s, body["email"], body["password"])
    refused = await s.auth.post("/login", json={"email": new, "password": body["password"]})
    assert refused.status_code == 401

    done = await s.auth.post("/email/verify", json={"token": token})
    assert done.status_code == 204, done.text
    me = await _me(s, tokens)  # the session that asked stays
    assert (me["email"], me["email_verified"]) == (new, True)
    await _login(s, new, body["password"])
    old = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert old.status_code == 401
    # Every other session ends, as after a password change.
    assert await rejected_within_a_second(s.user, "/users/me", _bearer(other_session))
    # The old address hears of it, with no link and no secret.
    await mail_sent(s)
    [notice] = messages_to(mail_sink.directory, body["email"], CHANGED_SUBJECT)
    raw = notice.as_string()
    assert new in text_of(notice)
    assert "token" not in raw
    assert "http" not in text_of(notice)
    assert body["password"] not in raw
    again = await s.auth.post("/email/verify", json={"token": token})
    assert again.status_code == 400

    [requested] = audit.named("email.change")
    assert (requested["outcome"], requested["user_id"]) == ("success", uid)
    [completed] = [e for e in audit.named("email.verify") if e["outcome"] == "success"]
    assert (completed["outcome"], completed["purpose"], completed["user_id"]) == (
        "success",
        "email_change",
        uid,
    )
    assert completed["sessions_revoked"] >= 2
    assert token not in repr(audit.events)
    assert new not in repr(audit.events)


async def test_links_mailed_to_the_old_address_stop_working(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body, _, tokens = await _account(s)
    await mail_sent(s)
    verify_old = verify_link(messages_to(mail_sink.directory, body["email"], VERIFY_SUBJECT)[-1])
    assert (await s.auth.post("/password/forgot", json={"email": body["email"]})).status_code == 202
    await mail_sent(s)
    reset_mail = messages_to(mail_sink.directory, body["email"], RESET_SUBJECT)[-1]
    reset_token = text_of(reset_mail).split("reset_token=")[1].split()[0]
    new = _new_address()
    assert (await _change(s, tokens, new, body["password"])).status_code == 202
    token = await _change_token(s, mail_sink, new)
    assert (await s.auth.post("/email/verify", json={"token": token})).status_code == 204
    # The old address's verification link proves nothing about the new one.
    stale = await s.auth.post("/email/verify", json={"token": verify_old[1]})
    assert stale.status_code == 400
    reset = await s.auth.post(
        "/password/reset",
        json={"token": reset_token, "new_password": "velvet-orbit-plum-harbour-42"},
    )
    assert reset.status_code == 400


async def test_wrong_password_is_401_and_changes_nothing(
    mailing: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = mailing
    _, uid, tokens = await _account(s)
    new = _new_address()
    r = await _change(s, tokens, new, "not-the-password-at-all")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    await mail_sent(s)
    assert messages_to(mail_sink.directory, new) == []
    event = audit.named("email.change")[-1]
    assert (event["outcome"], event["reason"], event["user_id"]) == (
        "failure",
        "invalid_credentials",
        uid,
    )


async def test_taken_is_409_case_insensitively(mailing: Services, mail_sink: MailSink) -> None:
    s = mailing
    body, _, tokens = await _account(s)
    other, _, _ = await _account(s)
    r = await _change(s, tokens, other["email"].upper(), body["password"])
    assert r.status_code == 409
    assert r.json()["type"].endswith("email-taken")
    await mail_sent(s)
    assert messages_to(mail_sink.directory, other["email"].upper()) == []


async def test_taken_is_checked_again_when_the_link_is_used(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body, _, tokens = await _account(s)
    new = _new_address()
    assert (await _change(s, tokens, new, body["password"])).status_code == 202
    token = await _change_token(s, mail_sink, new)
    # Someone registers the address before the link is used.
    taken = new_user(email=new)
    assert (await s.auth.post("/users", json=taken)).status_code == 201
    r = await s.auth.post("/email/verify", json={"token": token})
    assert r.status_code == 409
    assert r.json()["type"].endswith("email-taken")
    assert (await _me(s, tokens))["email"] == body["email"]
    await _login(s, body["email"], body["password"])
    # The link is used up either way.
    assert (await s.auth.post("/email/verify", json={"token": token})).status_code == 400


@pytest.mark.parametrize(
    "payload",
    [
        {"new_email": "not an email", "password": "x"},
        {"new_email": "a@example.com"},
        {"password": "x"},
        {"new_email": "a@example.com", "password": "x", "extra": 1},
        {"new_email": "a" * 250 + "@example.com", "password": "x"},
    ],
)
async def test_invalid_bodies_are_422(mailing: Services, payload: dict[str, Any]) -> None:
    s = mailing
    _, _, tokens = await _account(s)
    r = await s.auth.post("/email/change", json=payload, headers=_bearer(tokens))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_the_same_address_is_422(mailing: Services) -> None:
    s = mailing
    body, _, tokens = await _account(s)
    r = await _change(s, tokens, body["email"].upper(), body["password"])
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["new_email"]


async def test_change_needs_a_bearer_token(mailing: Services) -> None:
    r = await mailing.auth.post(
        "/email/change", json={"new_email": "a@example.com", "password": "x"}
    )
    assert r.status_code == 401


async def test_a_newer_request_retires_the_older_link(
    mailing: Services, mail_sink: MailSink
) -> None:
    s = mailing
    body, _, tokens = await _account(s)
    first, second = _new_address(), _new_address()
    assert (await _change(s, tokens, first, body["password"])).status_code == 202
    first_token = await _change_token(s, mail_sink, first)
    assert (await _change(s, tokens, second, body["password"])).status_code == 202
    second_token = await _change_token(s, mail_sink, second)
    assert (await s.auth.post("/email/verify", json={"token": first_token})).status_code == 400
    assert (await s.auth.post("/email/verify", json={"token": second_token})).status_code == 204
    assert (await _me(s, tokens))["email"] == second


async def test_of_concurrent_uses_one_wins(mailing: Services, mail_sink: MailSink) -> None:
    s = mailing
    body, _, tokens = await _account(s)
    new = _new_address()
    assert (await _change(s, tokens, new, body["password"])).status_code == 202
    token = await _change_token(s, mail_sink, new)
    results = await asyncio.gather(
        *(s.auth.post("/email/verify", json={"token": token}) for _ in range(4))
    )
    assert sorted(r.status_code for r in results) == [204, 400, 400, 400]
    assert (await _me(s, tokens))["email"] == new


async def test_without_smtp_url_change_is_503(services: Services) -> None:
    body = new_user()
    assert (await services.auth.post("/users", json=body)).status_code == 201
    tokens = await _login(services, body["email"], body["password"])
    r = await _change(services, tokens, _new_address(), body["password"])
    assert r.status_code == 503


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
        email_change_account_limit=3,
        login_account_network_limit=4,
    ):
        yield s


async def test_wrong_passwords_count_toward_the_login_limits(
    limited: Services, audit: AuditCapture
) -> None:
    s = limited
    body, _, tokens = await _account(s)  # one right password: the counters restart
    statuses = [
        (await _change(s, tokens, _new_address(), "wrong-password-guess")).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 401]
    # Three guesses here plus one at the login form spend the (account,
    # network) budget of 4: the fifth attempt anywhere is refused.
    wrong = await s.auth.post("/login", json={"email": body["email"], "password": "guess-four"})
    assert wrong.status_code == 401
    login = await s.auth.post("/login", json={"email": body["email"], "password": body["password"]})
    assert login.status_code == 429
    assert "login-account-net" in [e["reason"] for e in audit.named("rate_limited")]


async def test_change_is_limited_per_account(
    limited: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = limited
    body, _, tokens = await _account(s)
    statuses = [
        (await _change(s, tokens, _new_address(), body["password"])).status_code for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    event = audit.named("rate_limited")[-1]
    assert (event["reason"], event["action"]) == ("email-change-account", "email_change")


@pytest.fixture
async def mailing_any_db(
    tmp_path: Path, redis_prefix: str, db_urls: dict[str, str], mail_sink: MailSink
) -> AsyncIterator[Services]:
    """Both services once on SQLite and once on PostgreSQL, mail to the sink."""
    async for s in mailing_services(tmp_path, redis_prefix, db_urls, mail_sink):
        yield s


async def test_verify_then_change_on_either_database(
    mailing_any_db: Services, mail_sink: MailSink
) -> None:
    s = mailing_any_db
    body, _, tokens = await _account(s)
    await mail_sent(s)
    verify = verify_link(messages_to(mail_sink.directory, body["email"], VERIFY_SUBJECT)[-1])[1]
    assert (await s.auth.post("/email/verify", json={"token": verify})).status_code == 204
    assert (await _me(s, tokens))["email_verified"] is True
    new = _new_address()
    assert (await _change(s, tokens, new, body["password"])).status_code == 202
    token = await _change_token(s, mail_sink, new)
    assert (await s.auth.post("/email/verify", json={"token": token})).status_code == 204
    me = await _me(s, tokens)
    assert (me["email"], me["email_verified"]) == (new, True)
    await _login(s, new.upper(), body["password"])  # unique and found in any letter case
