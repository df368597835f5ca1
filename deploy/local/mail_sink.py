"""A development mail sink: an SMTP server that keeps every message as a file.

`make run` (cluster.py) starts it on a loopback port and points the auth
service's SMTP_URL at it. Each message becomes one `.eml` file under the
mail directory (`.data/mail/` by default), named so that `ls` lists them in
arrival order, and one line is printed per message:

    mail to ada@example.com: Reset your password

Open a file with any mail client, or read the link out of it:

    grep -ho 'http[^ ]*reset_token=[A-Za-z0-9_-]*' .data/mail/*.eml | tail -1

For development and tests only: it accepts anything from anyone, without
TLS or authentication. Standalone:

    python deploy/local/mail_sink.py [--host 127.0.0.1] [--port 1025] [--dir .data/mail]

Needs aiosmtpd (a development dependency; the service images do not have it).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

_sequence = itertools.count(1)
_lock = threading.Lock()


class MailDir:
    """The aiosmtpd handler: one `.eml` file per accepted message."""

    def __init__(self, directory: Path, *, announce: Any = print) -> None:
        self.directory = directory
        self._announce = announce
        directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        with _lock:
            name = f"{time.time_ns()}-{next(_sequence):06d}.eml"
        # Written under a temporary name, then renamed: a reader polling the
        # directory never sees half a message.
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, self.directory / name)
        subject = message_from_bytes(content, policy=policy.default).get("Subject", "")
        for rcpt in envelope.rcpt_tos:
            self._announce(f"mail to {rcpt}: {subject}")
        return "250 Message accepted for delivery"


def start_sink(directory: Path, *, host: str = "127.0.0.1", port: int = 0) -> Controller:
    """Start the sink in a thread of its own; `port=0` picks a free port.

    The caller stops it with `.stop()`; the listening port is `.port` after
    start (aiosmtpd reports the bound one).
    """
    handler = MailDir(directory, announce=lambda line: print(line, flush=True))
    controller = Controller(handler, hostname=host, port=port or _free_port(host))
    controller.start()
    return controller


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path(".data/mail"))
    args = parser.parse_args(argv)
    controller = start_sink(args.dir, host=args.host, port=args.port)
    print(f"mail sink on {args.host}:{controller.port}, messages in {args.dir}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
