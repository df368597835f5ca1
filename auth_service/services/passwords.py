"""Password hashing: argon2id, run off the event loop, with a bound on concurrent hashes.

Design: docs/ARCHITECTURE.md "Accounts and passwords". Parameters: OWASP Password Storage
Cheat Sheet, whose five argon2id configurations (m=46 MiB t=1, 19 MiB t=2, 12 MiB t=3,
9 MiB t=4, 7 MiB t=5; p=1) "provide an equal level of defense"; anything at or above
one of them is accepted, and the default is 12 MiB, t=3. Unicode handling:
NIST SP 800-63B-4 §3.1.1.2 (800-63B-3 §5.1.1.2) says to normalise with NFKC or
NFKD before hashing, so that the same password typed on two keyboards (composed
"é" vs "e" + combining accent) verifies.

The password never appears in a log record or an exception message here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import sys
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import anyio
import anyio.lowlevel
import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION, Type

__all__ = [
    "DEFAULT_THREAD_NICENESS",
    "OWASP_CONFIGURATIONS",
    "Argon2Params",
    "PasswordHasher",
    "meets_owasp",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# (memory_cost_kib, time_cost) of OWASP's argon2id configurations, p=1: equal
# defence, trading memory for passes (their memory x time is ~constant, and
# so is an attacker's cost per guess on a GPU or ASIC).
OWASP_CONFIGURATIONS: tuple[tuple[int, int], ...] = (
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
)
# The default: 12 MiB, t=3. Each concurrent hash holds its memory (and the
# hashing thread keeps the block for the next one), so 7 MiB less than the
# 19 MiB row on every auth replica, for the same defence and about the same
# time per hash (bench/README.md, "Changes measured on PostgreSQL", P10).
DEFAULT_MEMORY_COST_KIB = 12_288
DEFAULT_TIME_COST = 3
_HASH_LEN = 32  # bytes; argon2-cffi's default
_SALT_LEN = 16  # bytes; argon2-cffi's default, RFC 9106 §3.1 recommends 16
# How much nicer than the process the hashing threads run (Linux; 0 = as nice).
DEFAULT_THREAD_NICENESS = 10


@dataclass(frozen=True, slots=True)
class Argon2Params:
    """argon2id cost parameters. The defaults are OWASP's m=12 MiB, t=3, p=1."""

    time_cost: int = DEFAULT_TIME_COST
    memory_cost_kib: int = DEFAULT_MEMORY_COST_KIB
    parallelism: int = 1

    def __post_init__(self) -> None:
        for name in ("time_cost", "memory_cost_kib", "parallelism"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Argon2Params.{name}: expected a positive int, got {value!r}")
        # Argon2 itself requires at least 8 KiB per lane (RFC 9106 §3.1).
        if self.memory_cost_kib < 8 * self.parallelism:
            raise ValueError(
                "Argon2Params.memory_cost_kib: expected >= 8 * parallelism "
                f"({8 * self.parallelism}), got {self.memory_cost_kib}"
            )


def meets_owasp(params: Argon2Params) -> bool:
    """At or above one of OWASP's argon2id configurations, on both memory and passes."""
    return any(
        params.memory_cost_kib >= memory and params.time_cost >= passes
        for memory, passes in OWASP_CONFIGURATIONS
    )


class PasswordHasher:
    """Hash and verify passwords with argon2id, off the event loop.

    The argon2 work runs in a dedicated pool of ``max_concurrent_hashes``
    threads (argon2-cffi releases the GIL), entered through an
    ``anyio.CapacityLimiter`` of the same size. One hash at 12 MiB blocks for
    tens of milliseconds and holds 12 MiB. Without a bound, a login flood would
    run anyio's default 40 threads at once, and more threads do not finish
    hashes faster than there are cores. With it, extra requests wait in a
    queue (rate limiting belongs to the API layer).

    Why a pool of its own rather than anyio's shared worker threads:

    - memory: glibc gives each thread that allocates its own malloc arena and
      keeps a freed block (12 MiB) there for reuse. Hashes spread over anyio's
      40 threads left up to 40 such blocks resident; a fixed set of threads
      keeps at most ``max_concurrent_hashes * memory_cost``;
    - priority: on Linux the hashing threads run ``thread_niceness`` steps
      nicer than the process, so the event loop (token refreshes, profile
      reads) and other latency-sensitive work on the host win the CPU while
      logins saturate it. The argon2 cost itself is unchanged: a hash takes
      the same work, it only yields the CPU first. Unknown-email and
      wrong-password verifications share the pool, so they still cost the
      same time.

    Args:
        params: argon2id cost. Defaults to ``Argon2Params()`` (the OWASP minimum).
        max_concurrent_hashes: how many hashes or verifications may run at once
            (and the number of hashing threads). Defaults to ``os.cpu_count() or 1``.
        allow_weak_for_tests: accept parameters below the OWASP minimum. A test
            suite may want hashes that take microseconds. Production never does:
            the cost parameters are what slows down an offline attack on a leaked
            hash table, so the settings layer must never set this.
        thread_niceness: nice increment of the hashing threads (0-19, Linux
            only; elsewhere, or where the kernel refuses, they run as the
            process does).

    Raises:
        ValueError: parameters below every OWASP configuration (`meets_owasp`)
            without ``allow_weak_for_tests``,
            ``max_concurrent_hashes < 1``, or ``thread_niceness`` outside 0-19.
    """

    def __init__(
        self,
        params: Argon2Params | None = None,
        *,
        max_concurrent_hashes: int | None = None,
        allow_weak_for_tests: bool = False,
        thread_niceness: int = DEFAULT_THREAD_NICENESS,
    ) -> None:
        params = params if params is not None else Argon2Params()
        if not allow_weak_for_tests and not meets_owasp(params):
            rows = ", ".join(f"m={m} t={t}" for m, t in OWASP_CONFIGURATIONS)
            raise ValueError(
                "argon2id parameters below every OWASP configuration: expected "
                f"memory_cost_kib and time_cost at or above one of ({rows}), got "
                f"memory_cost_kib={params.memory_cost_kib} and time_cost={params.time_cost} "
                "(allow_weak_for_tests=True is for test suites only)"
            )
        limit = max_concurrent_hashes if max_concurrent_hashes is not None else os.cpu_count() or 1
        if limit < 1:
            raise ValueError(f"max_concurrent_hashes: expected >= 1, got {limit}")
        if not 0 <= thread_niceness <= 19:
            raise ValueError(f"thread_niceness: expected 0-19, got {thread_niceness}")

        self._params = params
        self._max_concurrent_hashes = limit
        self._limiter = anyio.CapacityLimiter(limit)
        # Threads start lazily (at most `limit`) and exit when the hasher is
        # closed or garbage-collected.
        self._executor = ThreadPoolExecutor(
            max_workers=limit,
            thread_name_prefix="argon2",
            initializer=_lower_thread_priority,
            initargs=(thread_niceness,),
        )
        self._argon2 = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost_kib,
            parallelism=params.parallelism,
            hash_len=_HASH_LEN,
            salt_len=_SALT_LEN,
            type=Type.ID,
        )
        self._dummy_hash = _make_dummy_hash(params)

    @property
    def params(self) -> Argon2Params:
        return self._params

    @property
    def max_concurrent_hashes(self) -> int:
        return self._max_concurrent_hashes

    async def hash(self, password: str) -> str:
        """Hash a password (NFKC-normalised first) with argon2id and a random salt.

        Returns:
            The PHC-format string, e.g. ``$argon2id$v=19$m=12288,t=3,p=1$<salt>$<hash>``.

        Raises:
            ValueError: the password is not valid Unicode text (a lone surrogate).
            argon2.exceptions.HashingError: argon2 failed, e.g. out of memory.
        """
        secret = _encode(password)
        return await self._run(self._hash_sync, secret)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Check a password against a stored hash. Never raises for bad input.

        Args:
            stored_hash: the user's hash, or ``None`` when no account has the
                email. For ``None``, a dummy hash with the current parameters is
                verified instead. That costs the same as a wrong password and
                gives the same answer, so response time does not reveal whether
                an account exists (docs/ARCHITECTURE.md: "Unknown email and wrong password
                cost the same time and return the same answer").
            password: the candidate, as the client sent it.

        Returns:
            True only if the password matches. A corrupt or unsupported stored
            hash gives False, and a warning is logged (without the hash or the
            password).
        """
        try:
            secret = _encode(password)
        except ValueError:
            secret = None
        if stored_hash is None or secret is None:
            await self._run(self._verify_sync, self._dummy_hash, secret or b"")
            return False
        return await self._run(self._verify_sync, stored_hash, secret)

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether a hash was made with other parameters (or type) than this hasher's.

        Call it after a successful ``verify`` and store a fresh ``hash`` of the
        password when it returns True (docs/ARCHITECTURE.md: rehash on login). It is cheap,
        because it only parses the string. A hash that cannot be parsed counts
        as needing a rehash.
        """
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        """Let the hashing threads exit once the queued work is done (service shutdown)."""
        self._executor.shutdown(wait=False)

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        """Run `fn(*args)` in a hashing thread, at most `max_concurrent_hashes` at once.

        Callers queue, first come first served, on the limiter. The wait for the
        thread is shielded from cancellation (as `anyio.to_thread.run_sync`
        does): a token of the limiter stands for a hash really running, even
        when the client that asked for it went away.
        """
        async with self._limiter:
            future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
            with anyio.CancelScope(shield=True):
                result = await future
        # A cancellation that arrived meanwhile surfaces now, not at the
        # caller's next await.
        await anyio.lowlevel.checkpoint_if_cancelled()
        return result

    # The two functions below run in the hashing threads. They are methods so that
    # tests can wrap them (for example to count how many run at once).

    def _hash_sync(self, secret: bytes) -> str:
        return self._argon2.hash(secret)

    def _verify_sync(self, stored_hash: str, secret: bytes) -> bool:
        try:
            return self._argon2.verify(stored_hash, secret)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError, UnicodeEncodeError):
            # A corrupt row fails before argon2 does any work. Spend the cost of a
            # real verification anyway, so that timing does not single out
            # accounts with a broken hash.
            _log.warning("stored password hash is corrupt or unsupported; verification failed")
            with contextlib.suppress(VerificationError):
                self._argon2.verify(self._dummy_hash, secret)
            return False


def _lower_thread_priority(niceness: int) -> None:
    """Initializer of each hashing thread: make it `niceness` steps nicer.

    Linux only: there `setpriority(PRIO_PROCESS, tid)` applies to one thread.
    Elsewhere the same call would renice the whole process (event loop
    included), so it is skipped. An unprivileged thread may always raise its
    own nice value; a refusal (seccomp, a sandbox) only loses the priority
    hint, never a hash, so it is logged and ignored.
    """
    if niceness == 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
    except OSError as exc:
        _log.warning("could not lower the priority of a hashing thread: %s", exc)


def _encode(password: str) -> bytes:
    """NFKC-normalise and UTF-8-encode. The message never includes the password."""
    try:
        return unicodedata.normalize("NFKC", password).encode("utf-8")
    except UnicodeEncodeError:
        # `from None`: the chained exception would carry the whole password in `.object`.
        raise ValueError("password is not valid Unicode text (lone surrogate)") from None


def _make_dummy_hash(params: Argon2Params) -> str:
    """A well-formed argon2id hash with these parameters that no password matches.

    Salt and digest are random bytes rather than the output of hashing a random
    secret. argon2 verification recomputes the digest from the candidate and
    compares it in constant time, so verifying this string costs exactly as much
    as verifying a real hash with the same parameters. Nothing matches it
    (probability 2**-256), and building it needs no argon2 work at start-up.
    """

    def b64(raw: bytes) -> str:
        # PHC string format: standard base64 alphabet, no padding.
        return base64.b64encode(raw).decode("ascii").rstrip("=")

    return (
        f"$argon2id$v={ARGON2_VERSION}"
        f"$m={params.memory_cost_kib},t={params.time_cost},p={params.parallelism}"
        f"${b64(secrets.token_bytes(_SALT_LEN))}${b64(secrets.token_bytes(_HASH_LEN))}"
    )
