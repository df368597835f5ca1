"""Sending over SMTP with aiosmtplib, configured by one URL (`SMTP_URL`).

    smtp://[user:password@]host[:port]    STARTTLS (RFC 3207), port 587 by default
    smtps://[user:password@]host[:port]   implicit TLS (RFC 8314), port 465 by default

In production `smtp://` *requires* STARTTLS: a server that does not offer it
gets no mail, rather than the reset link in clear text. Outside production
STARTTLS is used when the server offers it, so the development sink (plain
SMTP on loopback, deploy/local/mail_sink.py) works. The URL may carry a
password: it is never logged (`SmtpConfig.redacted`).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

__all__ = ["SmtpConfig", "SmtpSender"]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    implicit_tls: bool
    require_starttls: bool
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 10.0

    @classmethod
    def from_url(cls, url: str, *, production: bool, timeout_seconds: float = 10.0) -> SmtpConfig:
        """Parse `SMTP_URL`.

        Raises:
            ValueError: not an smtp:// or smtps:// URL with a host. The
                message never contains the password.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ValueError("SMTP_URL is not a valid URL") from exc
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(
                f"SMTP_URL: expected smtp://host[:port] or smtps://host[:port], "
                f"got scheme {parts.scheme!r}"
            )
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 587),
            implicit_tls=implicit,
            require_starttls=production and not implicit,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout_seconds=timeout_seconds,
        )

    @property
    def redacted(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


class SmtpSender:
    """Sends one message per connection (mail is rare: resets, verifications)."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    @property
    def config(self) -> SmtpConfig:
        return self._config

    async def send(self, message: EmailMessage) -> None:
        """Deliver `message` to the SMTP server.

        Raises:
            aiosmtplib.SMTPException, OSError: the server refused or could not
                be reached; the caller logs and counts it.
        """
        c = self._config
        await aiosmtplib.send(
            message,
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password,
            use_tls=c.implicit_tls,
            # True: STARTTLS or fail. None: STARTTLS when the server offers it.
            start_tls=None if c.implicit_tls else (True if c.require_starttls else None),
            timeout=c.timeout_seconds,
        )
