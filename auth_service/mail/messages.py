"""The mails the platform sends: plain text plus an HTML alternative.

A mail carries no secret other than its one-time link, and the link points
at the page (`{ISSUER}/?reset_token=...`), which finishes the step with the
API: the token never travels in a request the mail client makes on its own
(link scanners that follow every URL only load the page, they cannot spend
the token).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlencode

__all__ = [
    "MailContent",
    "build_message",
    "email_change_mail",
    "email_changed_mail",
    "page_link",
    "password_reset_mail",
    "verification_mail",
]


@dataclass(frozen=True)
class MailContent:
    subject: str
    text: str
    html: str


def page_link(issuer: str, **params: str) -> str:
    """A link to the page at `GET /` with the given query parameters."""
    return f"{issuer.rstrip('/')}/?{urlencode(params)}"


def password_reset_mail(*, link: str, ttl_minutes: int) -> MailContent:
    """The mail with a password reset link (valid `ttl_minutes`, once)."""
    text = (
        "Someone asked to reset the password of your account.\n\n"
        f"To choose a new password, open this link within {ttl_minutes} minutes:\n\n"
        f"{link}\n\n"
        "The link works once. Every session of the account is signed out after the reset.\n"
        "If you did not ask for this, ignore this mail: your password stays as it is.\n"
    )
    safe = html.escape(link, quote=True)
    body = (
        "<!doctype html><html><body>"
        "<p>Someone asked to reset the password of your account.</p>"
        f"<p>To choose a new password, open this link within {ttl_minutes} minutes:</p>"
        f'<p><a href="{safe}">Reset your password</a></p>'
        f"<p>Or copy it into your browser: {safe}</p>"
        "<p>The link works once. Every session of the account is signed out after the"
        " reset.<br>If you did not ask for this, ignore this mail: your password stays as"
        " it is.</p></body></html>"
    )
    return MailContent(subject="Reset your password", text=text, html=body)


def _link_mail(subject: str, intro: str, action: str, link: str, outro: str) -> MailContent:
    """A mail whose point is one link: the text, and the same as HTML."""
    text = f"{intro}\n\n{link}\n\n{outro}\n"
    safe = html.escape(link, quote=True)
    body = (
        "<!doctype html><html><body>"
        f"<p>{html.escape(intro)}</p>"
        f'<p><a href="{safe}">{html.escape(action)}</a></p>'
        f"<p>Or copy it into your browser: {safe}</p>"
        f"<p>{html.escape(outro)}</p></body></html>"
    )
    return MailContent(subject=subject, text=text, html=body)


def verification_mail(*, link: str, ttl_hours: int) -> MailContent:
    """The mail that proves the account's address is read by its owner."""
    return _link_mail(
        "Verify your email address",
        f"To confirm that this address belongs to your account, open this link "
        f"within {ttl_hours} hours:",
        "Verify your email address",
        link,
        "The link works once. If you did not create an account, ignore this mail.",
    )


def email_change_mail(*, link: str, ttl_hours: int) -> MailContent:
    """Sent to the *new* address of an email change: the change waits for this link."""
    return _link_mail(
        "Confirm your new email address",
        "Someone asked to use this address for their account. To confirm the "
        f"change, open this link within {ttl_hours} hours:",
        "Confirm the new address",
        link,
        "The link works once. Until it is used the account keeps its current "
        "address. If you did not ask for this, ignore this mail.",
    )


def email_changed_mail(*, new_address: str) -> MailContent:
    """Sent to the *old* address once a change completed: no link, no secret.

    It names the new address so that an owner who did not make the change
    knows what happened (and can tell support); it carries nothing that
    would let the reader act on the account.
    """
    text = (
        "The email address of your account was changed.\n\n"
        f"From now on, mail for the account goes to {new_address}.\n"
        "Other sessions of the account were signed out.\n\n"
        "If you did not make this change, contact support: someone who knows "
        "your password may have done it.\n"
    )
    body = (
        "<!doctype html><html><body>"
        "<p>The email address of your account was changed.</p>"
        f"<p>From now on, mail for the account goes to {html.escape(new_address)}.<br>"
        "Other sessions of the account were signed out.</p>"
        "<p>If you did not make this change, contact support: someone who knows "
        "your password may have done it.</p></body></html>"
    )
    return MailContent(subject="Your email address was changed", text=text, html=body)


def build_message(*, sender: str, to: str, content: MailContent) -> EmailMessage:
    """A MIME message: text/plain first, text/html as the alternative (RFC 2046 §5.1.4)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = content.subject
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    # RFC 3834: an automatic mail; auto-responders should not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    # 7bit when the text is ASCII (it is, with an ASCII issuer): quoted-printable
    # would wrap the link and turn its "=" into "=3D", so the one-time link in
    # a stored .eml could no longer be copied or grepped as it is.
    msg.set_content(content.text, cte=_cte(content.text))
    msg.add_alternative(content.html, subtype="html", cte=_cte(content.html))
    return msg


def _cte(text: str) -> str:
    longest = max((len(line) for line in text.splitlines()), default=0)
    # RFC 5322 §2.1.1: lines of at most 998 characters.
    return "7bit" if text.isascii() and longest <= 998 else "quoted-printable"
