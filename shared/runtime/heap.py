"""The heap after start-up: garbage collected, long-lived objects frozen, free pages returned.

Freezing (`gc.freeze`): start-up leaves ~1M long-lived objects (FastAPI,
pydantic, SQLAlchemy and OpenTelemetry modules, schemas, routes) that every
full collection walks again. Under load the span queue, audit records and
responses promote enough objects to trigger those collections every few
seconds; each was a pause of tens of milliseconds on the event loop: the
user service's p99 with tracing on fell from ~80 ms to ~15 ms once they were
frozen (bench/README.md, target 6). Frozen objects are still freed by
reference counting; only cycles among them wait for `thaw` at shutdown
(tests build many apps in one process).

Returning pages: start-up (imports, `upgrade head`, loading the password block-list) builds
and drops many temporary objects. glibc keeps the freed pages of its heap
mapped, so they stay in the process's RSS for its whole life (about 4-5 MB
of the auth service's, issue 6 target 7). `malloc_trim(0)` returns the free
pages; nothing live is touched, the allocator simply maps pages again when
it needs them. Other C libraries (musl, macOS) have no such call: nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

__all__ = ["settle_after_startup", "thaw"]

_log = logging.getLogger(__name__)


def settle_after_startup() -> bool:
    """Call at the end of a service's start-up: collect, freeze what is left, trim.

    Returns:
        True when `malloc_trim` ran, False where it does not exist.
    """
    gc.collect()
    gc.freeze()
    return _trim()


def thaw() -> None:
    """Undo `settle_after_startup`'s freeze (at shutdown): frozen cycles become collectable."""
    gc.unfreeze()


def _trim() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others: no malloc_trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    _log.debug("returned free heap pages to the OS")
    return True
