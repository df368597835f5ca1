"""Keep the auth service's heap small: fewer malloc arenas, and start-up's garbage returned.

Arenas: each argon2 verify allocates its whole memory cost (19 MiB) in one
block, in a hashing thread. glibc gives threads arenas of their own (up to
8 per core) and keeps a freed block in its arena for reuse, so every hashing
thread that ever ran pins one such block: ~19 MiB of RSS a thread, for good
(issue 6, target 7: the auth service peaked at 193 MB). Capping the arenas at
two (`mallopt(M_ARENA_MAX)`, the same as MALLOC_ARENA_MAX=2) lets the
hashing threads share; measured on this machine: 71 -> 52 MB after 60
verifies in two threads, at the same hashes per second (bench/README.md).
Almost all of Python's allocations are made under the GIL, so the shared
arena's lock is not contended. An operator's own MALLOC_ARENA_MAX wins.

Start-up (imports, `upgrade head`, loading the password block-list) builds
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
import os
import sys

__all__ = ["limit_malloc_arenas", "release_free_heap"]

_M_ARENA_MAX = -8  # glibc malloc.h
MALLOC_ARENAS = 2

_log = logging.getLogger(__name__)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas; call before the hashing threads start.

    Returns:
        True when the cap was set; False on other C libraries, or when
        MALLOC_ARENA_MAX is in the environment (the operator's choice stands).
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # musl and others
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


def release_free_heap() -> bool:
    """Collect garbage, then return free heap pages to the OS (glibc only).

    Returns:
        True when `malloc_trim` ran, False where it does not exist.
    """
    gc.collect()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:  # not glibc: no malloc_trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    _log.debug("returned free heap pages to the OS")
    return True
