"""shared.runtime.heap: free heap pages go back to the OS, start-up objects are frozen (issue 6)."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from shared.runtime.heap import settle_after_startup, thaw


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_free_heap_pages_are_returned_and_live_objects_kept() -> None:
    # 40 MB of 4 KB blocks: below glibc's mmap threshold, so they live on the
    # heap; keeping the last one alive stops free() from trimming the top.
    blocks = [bytearray(4096) for _ in range(10_000)]
    keep = blocks[-1]
    keep[:5] = b"alive"
    del blocks
    before = _rss_bytes()
    try:
        assert settle_after_startup() is True
        after = _rss_bytes()
    finally:
        thaw()
    assert before - after > 20 * 1024 * 1024
    assert keep[:5] == b"alive"


def test_no_malloc_trim_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    try:
        assert settle_after_startup() is False
    finally:
        thaw()


def test_startup_objects_are_frozen_until_thawed() -> None:
    settle_after_startup()
    try:
        assert gc.get_freeze_count() > 1000  # everything alive now, this module included
        before = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() == before  # full collections no longer walk them
    finally:
        thaw()
    assert gc.get_freeze_count() == 0
