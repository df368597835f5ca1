"""The development mail sink (deploy/local/mail_sink.py) for tests, and
helpers that read what it stored: the same .eml files a developer reads."""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest

SINK_PATH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "mail_sink.py"
RESET_LINK = re.compile(r"(\S+/\?reset_token=([A-Za-z0-9_-]+))")
VERIFY_LINK = re.compile(r"(\S+/\?verify_token=([A-Za-z0-9_-]+))")
RESET_SUBJECT = "Reset your password"
VERIFY_SUBJECT = "Verify your email address"
CHANGE_SUBJECT = "Confirm your new email address"
CHANGED_SUBJECT = "Your email address was changed"


def load_sink() -> ModuleType:
    """Import deploy/local/mail_sink.py (deploy/ is not a package)."""
    name = "_tooling_mail_sink"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SINK_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def messages(mail_dir: Path) -> list[EmailMessage]:
    """Every stored message, oldest first."""
    return [
        cast(EmailMessage, message_from_bytes(p.read_bytes(), policy=policy.default))
        for p in sorted(mail_dir.glob("*.eml"))
    ]


def messages_to(mail_dir: Path, address: str, subject: str | None = None) -> list[EmailMessage]:
    """The messages to `address`, oldest first; only those with `subject` if given
    (registration mails a verification link too, so a test that counts reset
    mails names their subject)."""
    return [
        m
        for m in messages(mail_dir)
        if m["To"] == address and (subject is None or m["Subject"] == subject)
    ]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return cast(EmailMessage, part).get_content()


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return cast(EmailMessage, part).get_content()


def reset_link(message: EmailMessage) -> tuple[str, str]:
    """(the link, its token) from a reset mail's text part."""
    found = RESET_LINK.search(text_of(message))
    assert found, "no reset link in the mail"
    return found.group(1), found.group(2)


def verify_link(message: EmailMessage) -> tuple[str, str]:
    """(the link, its token) from a verification or email-change mail's text part."""
    found = VERIFY_LINK.search(text_of(message))
    assert found, "no verification link in the mail"
    return found.group(1), found.group(2)


# Which link each kind of mail carries.
_LINK_OF = {RESET_SUBJECT: reset_link, VERIFY_SUBJECT: verify_link, CHANGE_SUBJECT: verify_link}


def newest_link(mail_dir: Path, address: str, subject: str) -> tuple[str, str]:
    """(the link, its token) of the newest mail with `subject` to `address`;
    fails when there is none (in-process tests: drain the outbox first)."""
    found = messages_to(mail_dir, address, subject)
    assert found, f"no {subject!r} mail to {address}"
    return _LINK_OF[subject](found[-1])


def wait_for_link(
    mail_dir: Path, address: str, subject: str, *, count: int = 1, timeout: float = 15.0
) -> tuple[str, str]:
    """`newest_link` once the sink holds `count` such mails: a cluster's sink
    (another process) writes them when the outbox gets to it."""
    deadline = time.monotonic() + timeout
    while True:
        found = messages_to(mail_dir, address, subject) if mail_dir.exists() else []
        if len(found) >= count:
            return _LINK_OF[subject](found[-1])
        if time.monotonic() > deadline:
            pytest.fail(f"no {subject!r} mail to {address} in {mail_dir}")
        time.sleep(0.1)
