"""Outgoing mail: messages (messages.py), SMTP transport (smtp.py), and the
outbox that sends them off the request path (outbox.py).

Reset links, verification links, email change notices: every mail the platform sends is
built here and goes through one `Outbox`, so they share the transport, the
failure handling and the counters.
"""

from auth_service.mail.messages import (
    MailContent,
    build_message,
    email_change_mail,
    email_changed_mail,
    password_reset_mail,
    verification_mail,
)
from auth_service.mail.outbox import Outbox
from auth_service.mail.smtp import SmtpConfig, SmtpSender

__all__ = [
    "MailContent",
    "Outbox",
    "SmtpConfig",
    "SmtpSender",
    "build_message",
    "email_change_mail",
    "email_changed_mail",
    "password_reset_mail",
    "verification_mail",
]
