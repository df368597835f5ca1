"""Audit events as the services emit them, captured in the test process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared.audit.events import AUDIT_LOGGER
from shared.audit.sink import audit_record


class AuditCapture(logging.Handler):
    """Every audit event emitted in this process, in order."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        event = audit_record(record)
        if event is not None:
            self.events.append(dict(event))

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def clear(self) -> None:
        self.events.clear()


@pytest.fixture
def audit() -> Iterator[AuditCapture]:
    """Audit events as the services emit them (the `audit` logger does not
    propagate to the root logger, so caplog would not see them)."""
    handler = AuditCapture()
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
