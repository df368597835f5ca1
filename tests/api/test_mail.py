"""Mail: the SMTP sender against the development sink, the outbox, SMTP_URL."""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from auth_service.config import AuthSettings
from auth_service.mail import (
    Outbox,
    SmtpConfig,
    SmtpSender,
    build_message,
    password_reset_mail,
)
from shared.audit.events import AUDIT_LOGGER
from tests.e2e.processes import free_port
from tests.support.mail import html_of, load_sink, messages, reset_link, text_of

pytestmark = pytest.mark.anyio

LINK = "http://localhost:8000/?reset_token=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def _reset_message(to: str = "ada@example.com") -> EmailMessage:
    return build_message(
        sender="Identity Platform <no-reply@example.com>",
        to=to,
        content=password_reset_mail(link=LINK, ttl_minutes=30),
    )


async def test_the_sink_stores_one_eml_per_message_and_announces_it(tmp_path: Path) -> None:
    lines: list[str] = []
    sink = load_sink()
    from aiosmtpd.controller import Controller

    handler = sink.MailDir(tmp_path / "mail", announce=lines.append)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        sender = SmtpSender(
            SmtpConfig.from_url(f"smtp://127.0.0.1:{controller.port}", production=False)
        )
        await sender.send(_reset_message())
        await sender.send(_reset_message("bob@example.com"))
    finally:
        controller.stop()
    stored = messages(tmp_path / "mail")
    assert [m["To"] for m in stored] == ["ada@example.com", "bob@example.com"]
    assert lines == [
        "mail to ada@example.com: Reset your password",
        "mail to bob@example.com: Reset your password",
    ]
    first = stored[0]
    # Plain text plus HTML, the link in both, nothing else secret.
    assert reset_link(first)[0] == LINK
    assert LINK in text_of(first)
    assert f'href="{LINK}"' in html_of(first)
    assert first["Auto-Submitted"] == "auto-generated"
    # The link stands in the file as it is (no quoted-printable wrapping):
    # docs/OPERATIONS.md tells developers to grep it out of .data/mail/.
    raw = sorted((tmp_path / "mail").glob("*.eml"))[0].read_bytes()
    assert LINK.encode() in raw


def test_smtp_url_forms_and_starttls_in_production() -> None:
    dev = SmtpConfig.from_url("smtp://127.0.0.1:1025", production=False)
    assert (dev.host, dev.port, dev.implicit_tls, dev.require_starttls) == (
        "127.0.0.1",
        1025,
        False,
        False,
    )
    prod = SmtpConfig.from_url("smtp://mailer:s3cr%40t@mail.example.com", production=True)
    assert (prod.port, prod.require_starttls, prod.username, prod.password) == (
        587,
        True,
        "mailer",
        "s3cr@t",
    )
    assert "s3cr" not in prod.redacted
    tls = SmtpConfig.from_url("smtps://mail.example.com", production=True)
    assert (tls.port, tls.implicit_tls, tls.require_starttls) == (465, True, False)


@pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "smtp://h:99999"])
def test_a_bad_smtp_url_stops_the_start(url: str) -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        AuthSettings(env="test", smtp_url=url)


async def test_production_refuses_to_send_without_starttls(tmp_path: Path) -> None:
    """The sink offers no STARTTLS: in production the reset link is not sent in clear."""
    controller = load_sink().start_sink(tmp_path / "mail")
    try:
        config = SmtpConfig.from_url(f"smtp://127.0.0.1:{controller.port}", production=True)
        with pytest.raises(aiosmtplib.SMTPException, match=r"(?i)starttls"):
            await SmtpSender(config).send(_reset_message())
    finally:
        controller.stop()
    assert messages(tmp_path / "mail") == []


class _Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_unreachable_server_is_logged_and_counted_without_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = _Events()
    logging.getLogger(AUDIT_LOGGER).addHandler(events)
    closed = free_port()  # nothing listens there
    outbox = Outbox(
        SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{closed}", production=False)),
        service="auth-service",
    )
    outbox.start()
    try:

        async def job() -> EmailMessage:
            return _reset_message()

        with caplog.at_level(logging.INFO):
            outbox.submit("password_reset", job, user_id="u-1")
            await asyncio.wait_for(outbox.drain(), 15)
    finally:
        await outbox.stop()
        logging.getLogger(AUDIT_LOGGER).removeHandler(events)
    audits = [r.audit for r in events.records if hasattr(r, "audit")]  # type: ignore[attr-defined]
    assert [(a["event"], a["outcome"], a["reason"]) for a in audits] == [
        ("mail.sent", "failure", "send_failed")
    ]
    assert "reset_token" not in caplog.text
    assert any("not sent" in r.getMessage() for r in caplog.records)
