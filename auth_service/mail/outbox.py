"""The outbox: mail is composed and sent by a background worker, never on
the request path.

Why: a request that waited for SMTP would take as long as the mail server
does, and a forgot-password request for an existing account (which mails)
would then be measurably slower than one for an unknown email (which does
not): the timing would say which emails have accounts. The request only
enqueues a job (`submit`, no I/O); the worker runs it, sends what it returns,
and records the outcome as a `mail.sent` audit event (counted as
`idp_mail_total`). A failure is logged without the message (it holds the
one-time link) and never reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Protocol

from shared.audit.events import audit_event

__all__ = ["MailJob", "Outbox"]

_log = logging.getLogger(__name__)

# A job builds the message (minting a token on the way, say) or returns None
# when there is nothing to send after all; `submit`'s `kind` names it in logs
# and audit events.
MailJob = Callable[[], Awaitable[EmailMessage | None]]


class _Sender(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class Outbox:
    """A bounded queue and one worker task (started and stopped by the lifespan).

    Args:
        sender: delivers one message (`SmtpSender`).
        service: the `service` field of the audit events it emits.
        max_pending: jobs waiting at most; past that a job is dropped (and
            counted) rather than letting a flood of requests grow memory.
    """

    def __init__(self, sender: _Sender, *, service: str, max_pending: int = 1000) -> None:
        self._sender = sender
        self._service = service
        self._queue: asyncio.Queue[tuple[str, str | None, MailJob]] = asyncio.Queue(max_pending)
        self._worker: asyncio.Task[None] | None = None

    def submit(self, kind: str, job: MailJob, *, user_id: str | None = None) -> None:
        """Queue a job; returns at once, whatever the job will do."""
        try:
            self._queue.put_nowait((kind, user_id, job))
        except asyncio.QueueFull:
            self._record(kind, user_id, "failure", "queue_full")

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="mail-outbox")

    async def drain(self) -> None:
        """Wait until every queued job has run (tests, and a graceful stop)."""
        await self._queue.join()

    async def stop(self, *, grace_seconds: float = 5.0) -> None:
        """Send what is queued (for up to `grace_seconds`), then stop the worker."""
        if self._worker is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), grace_seconds)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def _run(self) -> None:
        while True:
            kind, user_id, job = await self._queue.get()
            try:
                await self._deliver(kind, user_id, job)
            finally:
                self._queue.task_done()

    async def _deliver(self, kind: str, user_id: str | None, job: MailJob) -> None:
        try:
            message = await job()
            if message is None:
                return
            await self._sender.send(message)
        except Exception as exc:
            # The exception type only: its text may quote the message or the
            # server's reply to it, and the message holds the one-time link.
            _log.warning("mail %s not sent: %s", kind, type(exc).__name__)
            self._record(kind, user_id, "failure", "send_failed")
            return
        self._record(kind, user_id, "success", None)

    def _record(self, kind: str, user_id: str | None, outcome: str, reason: str | None) -> None:
        audit_event(
            "mail.sent",
            outcome=outcome,
            service=self._service,
            user_id=user_id,
            reason=reason,
            kind=kind,
        )
