"""Password change and reset on the audit trail and in Prometheus."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MailSink, Services, mail_sent
from tests.observability.conftest import AuditCapture, account, bearer
from tests.support.mail import RESET_SUBJECT, messages_to, reset_link

pytestmark = pytest.mark.anyio

NEW = "velvet-orbit-plum-harbour-42"


async def _counter(s: Services, name: str, **labels: str) -> float:
    """The sum of the matching samples; fails when there is none (no series yet)."""
    text = (await s.auth.get("/metrics")).text
    want = set(labels.items())
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and want <= set(sample.labels.items())
    ]
    assert values, f"no {name} series with {labels}"
    return sum(values)


async def test_lifecycle_counters_exist_from_start(mailing: Services) -> None:
    for event in (
        "password.change",
        "password.forgot",
        "password.reset",
        "email.verify",
        "email.verify_resend",
        "email.change",
        "mail.sent",
    ):
        assert await _counter(mailing, "idp_audit_events_total", event=event) == 0
    assert await _counter(mailing, "idp_mail_total", result="failure") == 0
    for limit in ("forgot-email", "verify-resend-account", "email-change-account"):
        assert await _counter(mailing, "idp_rate_limited_total", limit=limit) == 0
    assert await _counter(mailing, "idp_logins_total", result="email_not_verified") == 0


async def test_change_forgot_reset_and_mail_are_audited_and_counted(
    mailing: Services, mail_sink: MailSink, audit: AuditCapture
) -> None:
    s = mailing
    uid, body, tokens = await account(s)
    await mail_sent(s)  # the registration's verification mail, before the capture
    audit.clear()
    wrong = await s.auth.post(
        "/password/change",
        json={"current_password": "not-the-password", "new_password": NEW},
        headers=bearer(tokens),
    )
    assert wrong.status_code == 401
    ok = await s.auth.post(
        "/password/change",
        json={"current_password": body["password"], "new_password": NEW},
        headers=bearer(tokens),
    )
    assert ok.status_code == 204
    changes = audit.named("password.change")
    assert [(e["outcome"], e["reason"]) for e in changes] == [
        ("failure", "invalid_credentials"),
        ("success", None),
    ]
    assert changes[1]["user_id"] == uid
    assert changes[1]["sessions_revoked"] == 0  # this login was the only session

    await s.auth.post("/password/forgot", json={"email": "nobody@example.com"})
    await s.auth.post("/password/forgot", json={"email": body["email"]})
    await mail_sent(s)
    forgot = audit.named("password.forgot")
    assert [(e["outcome"], e["user_id"], e["account_found"]) for e in forgot] == [
        ("success", None, False),
        ("success", uid, True),
    ]
    assert [(e["outcome"], e["kind"], e["user_id"]) for e in audit.named("mail.sent")] == [
        ("success", "password_reset", uid)
    ]
    token = reset_link(messages_to(mail_sink.directory, body["email"], RESET_SUBJECT)[-1])[1]
    assert (
        await s.auth.post("/password/reset", json={"token": "B" * 43, "new_password": NEW})
    ).status_code == 400
    assert (
        await s.auth.post(
            "/password/reset", json={"token": token, "new_password": "another-fine-passphrase-7"}
        )
    ).status_code == 204
    resets = audit.named("password.reset")
    assert [(e["outcome"], e["reason"], e["user_id"]) for e in resets] == [
        ("failure", "invalid_token", None),
        ("success", None, uid),
    ]
    # No event carries the token or a password.
    flat = repr(audit.events)
    assert token not in flat
    assert NEW not in flat
    assert body["password"] not in flat

    assert await _counter(s, "idp_audit_events_total", event="password.change") == 2
    assert (
        await _counter(s, "idp_audit_events_total", event="password.reset", outcome="success") == 1
    )
    assert await _counter(s, "idp_audit_events_total", event="password.forgot") == 2
    # The reset mail and the registration's verification mail.
    assert await _counter(s, "idp_mail_total", result="success") == 2
