"""PasswordHasher: argon2id parameters, verification outcomes, and the off-loop, bounded runner."""

from __future__ import annotations

import base64
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

import anyio
import argon2
import pytest
from argon2.low_level import Type

from auth_service import config
from auth_service.services import passwords
from auth_service.services.passwords import Argon2Params, PasswordHasher, meets_owasp

PASSWORD = "Str0ngP@ssw0rd!!"
WEAK = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)


def _b64decode(part: str) -> bytes:
    return base64.b64decode(part + "=" * (-len(part) % 4))


@pytest.fixture
def hasher() -> PasswordHasher:
    # Real production parameters: these tests are about what production stores.
    return PasswordHasher()


@pytest.fixture
def fast() -> PasswordHasher:
    return PasswordHasher(WEAK, allow_weak_for_tests=True)


# --- hash format and parameters ---------------------------------------------------------


@pytest.mark.anyio
async def test_hash_is_argon2id_with_owasp_parameters(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash(PASSWORD)

    assert encoded.startswith("$argon2id$v=19$m=12288,t=3,p=1$")
    _, _, _, _, salt, digest = encoded.split("$")
    assert len(_b64decode(salt)) == 16
    assert len(_b64decode(digest)) == 32
    assert PASSWORD not in encoded


@pytest.mark.anyio
async def test_hash_is_salted(hasher: PasswordHasher) -> None:
    assert await hasher.hash(PASSWORD) != await hasher.hash(PASSWORD)


def test_default_params_are_an_owasp_configuration() -> None:
    # OWASP's m=12 MiB, t=3, p=1 row: the same defence as 19 MiB, t=2, in
    # 7 MiB less per concurrent hash.
    assert Argon2Params() == Argon2Params(time_cost=3, memory_cost_kib=12288, parallelism=1)
    with pytest.raises(AttributeError):
        Argon2Params().time_cost = 1  # type: ignore[misc]


# --- verify -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_verify_accepts_the_right_password(hasher: PasswordHasher) -> None:
    assert await hasher.verify(await hasher.hash(PASSWORD), PASSWORD) is True


@pytest.mark.anyio
async def test_verify_rejects_a_wrong_password(hasher: PasswordHasher) -> None:
    encoded = await hasher.hash(PASSWORD)
    assert await hasher.verify(encoded, PASSWORD + "x") is False
    assert await hasher.verify(encoded, PASSWORD.lower()) is False
    assert await hasher.verify(encoded, "") is False


@pytest.mark.anyio
async def test_verify_normalises_unicode_nfkc(hasher: PasswordHasher) -> None:
    composed = "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e"
    decomposed = "cafe\u0301 cre\u0300me bru\u0302le\u0301e"
    assert composed != decomposed

    assert await hasher.verify(await hasher.hash(composed), decomposed) is True


@pytest.mark.anyio
async def test_verify_unknown_account_does_the_same_work_and_answers_false(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No enumeration by timing: an unknown email (stored_hash=None) must run one
    # full argon2 verification with the production parameters, just as a wrong
    # password does, and give the same answer.
    seen: list[str] = []
    real = hasher._verify_sync

    def spy(stored_hash: str, secret: bytes) -> bool:
        seen.append(stored_hash)
        return real(stored_hash, secret)

    monkeypatch.setattr(hasher, "_verify_sync", spy)
    known = await hasher.hash(PASSWORD)

    wrong = await hasher.verify(known, "not the password at all")
    unknown = await hasher.verify(None, "not the password at all")
    unknown_with_real_password = await hasher.verify(None, PASSWORD)

    assert wrong is unknown is unknown_with_real_password is False
    assert len(seen) == 3
    dummy = seen[1]
    assert seen[2] == dummy  # precomputed once, not per call
    assert dummy != known
    assert dummy.startswith("$argon2id$v=19$m=12288,t=3,p=1$")
    assert not hasher.needs_rehash(dummy)  # same type, params, salt and hash length


@pytest.mark.parametrize(
    "corrupt",
    [
        "",
        "garbage",
        "$argon2id$v=19$m=19456,t=2,p=1$AAAA$BBBB",
        "$argon2id$v=19$m=19456,t=2,p=1$!!!!!!!!$@@@@@@@@",
        "$argon2id$v=19$m=zz,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "\u00e9$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA",  # not ASCII
    ],
)
@pytest.mark.anyio
async def test_verify_corrupt_hash_returns_false_without_raising(
    fast: PasswordHasher, corrupt: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert await fast.verify(corrupt, PASSWORD) is False
    assert PASSWORD not in caplog.text


@pytest.mark.anyio
async def test_verify_truncated_hash_returns_false(fast: PasswordHasher) -> None:
    encoded = await fast.hash(PASSWORD)
    assert await fast.verify(encoded[:-5], PASSWORD) is False


@pytest.mark.anyio
async def test_lone_surrogate_password_is_refused_without_echo(fast: PasswordHasher) -> None:
    bad = "secret-\ud800-passphrase"
    with pytest.raises(ValueError, match="not valid Unicode") as info:
        await fast.hash(bad)
    assert bad not in str(info.value)
    # The UnicodeEncodeError (whose .object is the password) is not chained.
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True

    assert await fast.verify(await fast.hash("secret--passphrase"), bad) is False
    assert await fast.verify(None, bad) is False


# --- needs_rehash -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_needs_rehash_false_for_own_hash(hasher: PasswordHasher) -> None:
    assert hasher.needs_rehash(await hasher.hash(PASSWORD)) is False


@pytest.mark.anyio
async def test_needs_rehash_when_parameters_change(
    hasher: PasswordHasher, fast: PasswordHasher
) -> None:
    old = await fast.hash(PASSWORD)
    assert hasher.needs_rehash(old) is True
    # The old hash still verifies under its own parameters, so login can upgrade it.
    assert await hasher.verify(old, PASSWORD) is True

    stronger = PasswordHasher(Argon2Params(time_cost=4))
    assert stronger.needs_rehash(await hasher.hash(PASSWORD)) is True
    # A hash made at the former default (19 MiB, t=2) is upgraded at the
    # next login too: every stored hash converges on the configured row.
    former = PasswordHasher(Argon2Params(time_cost=2, memory_cost_kib=19456))
    assert hasher.needs_rehash(await former.hash(PASSWORD)) is True


def test_needs_rehash_when_type_is_not_argon2id(hasher: PasswordHasher) -> None:
    argon2i = argon2.PasswordHasher(
        time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.I
    ).hash(PASSWORD)
    assert hasher.needs_rehash(argon2i) is True


@pytest.mark.parametrize("corrupt", ["", "garbage", "$argon2id$v=19$m=zz,t=2,p=1$AAAA$BBBB"])
def test_needs_rehash_true_for_unparseable_hash(hasher: PasswordHasher, corrupt: str) -> None:
    assert hasher.needs_rehash(corrupt) is True


# --- parameter floor ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("memory", "passes"),
    [
        (47103, 1),
        (19455, 2),
        (12287, 3),
        (9215, 4),
        (7167, 5),
        (7168, 4),  # each row's memory needs that row's passes
        (8, 100),
    ],
)
def test_refuses_parameters_below_every_owasp_configuration(memory: int, passes: int) -> None:
    with pytest.raises(ValueError, match="below every OWASP configuration"):
        PasswordHasher(Argon2Params(time_cost=passes, memory_cost_kib=memory))


@pytest.mark.parametrize(
    ("memory", "passes"), [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5), (8192, 9)]
)
def test_accepts_each_owasp_configuration_and_above(memory: int, passes: int) -> None:
    params = Argon2Params(time_cost=passes, memory_cost_kib=memory)
    assert meets_owasp(params)
    assert PasswordHasher(params).params == params


def test_weak_parameters_only_with_explicit_test_flag() -> None:
    weak = PasswordHasher(WEAK, allow_weak_for_tests=True)
    assert weak.params == WEAK


def test_stronger_parameters_are_accepted() -> None:
    params = Argon2Params(time_cost=3, memory_cost_kib=65536, parallelism=2)
    assert PasswordHasher(params).params == params


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_cost": 0},
        {"memory_cost_kib": -1},
        {"parallelism": 0},
        {"time_cost": True},
        {"memory_cost_kib": 8, "parallelism": 2},  # argon2 needs 8 KiB per lane
    ],
)
def test_params_must_be_valid(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="Argon2Params"):
        Argon2Params(**kwargs)


def test_max_concurrent_hashes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrent_hashes"):
        PasswordHasher(max_concurrent_hashes=0)


def test_default_concurrency_is_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert PasswordHasher().max_concurrent_hashes == 3
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert PasswordHasher().max_concurrent_hashes == 1
    assert PasswordHasher(max_concurrent_hashes=5).max_concurrent_hashes == 5


# --- off the event loop, bounded ------------------------------------------------------------


@pytest.mark.anyio
async def test_hashing_does_not_block_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # A ticker task counts event-loop turns while 4 real argon2id hashes run.
    # Each hash, in its worker, does the argon2 work and then waits for the
    # ticker to advance 3 more ticks. The wait is bounded (5 s) so that a broken
    # implementation fails instead of hanging. If the work ran on the event loop
    # thread, the ticker could not advance during it and every hash would record
    # an advance of 0. The assertions count ticks, not time.
    hasher = PasswordHasher(max_concurrent_hashes=4)
    loop_thread = threading.get_ident()
    ticks = 0
    advances: list[int] = []
    worker_threads: set[int] = set()
    real = hasher._hash_sync

    def observed(secret: bytes) -> str:
        start = ticks
        result = real(secret)  # the real 19 MiB argon2id hash
        deadline = time.monotonic() + 5
        while ticks < start + 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        advances.append(ticks - start)
        worker_threads.add(threading.get_ident())
        return result

    monkeypatch.setattr(hasher, "_hash_sync", observed)
    results: list[str] = []

    async def hash_one() -> None:
        results.append(await hasher.hash(PASSWORD))

    async def ticker(done: anyio.Event) -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.sleep(0.001)

    done = anyio.Event()
    async with anyio.create_task_group() as outer:
        outer.start_soon(ticker, done)
        async with anyio.create_task_group() as hashes:
            for _ in range(4):
                hashes.start_soon(hash_one)
        done.set()

    assert len(results) == 4
    assert all(r.startswith("$argon2id$v=19$m=12288,t=3,p=1$") for r in results)
    assert len(advances) == 4
    assert min(advances) >= 3, advances
    assert ticks >= 3
    assert loop_thread not in worker_threads


def _concurrency_probe(
    real: Callable[..., object], state: dict[str, int], lock: threading.Lock
) -> Callable[..., object]:
    def probe(*args: object) -> object:
        with lock:
            state["active"] += 1
            state["max"] = max(state["max"], state["active"])
        try:
            # Long enough for more threads to pile in if the bound were broken.
            time.sleep(0.02)
            return real(*args)
        finally:
            with lock:
                state["active"] -= 1

    return probe


@pytest.mark.anyio
async def test_concurrent_hashes_respect_the_capacity_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hasher = PasswordHasher(WEAK, max_concurrent_hashes=2, allow_weak_for_tests=True)
    state = {"active": 0, "max": 0}
    lock = threading.Lock()
    monkeypatch.setattr(hasher, "_hash_sync", _concurrency_probe(hasher._hash_sync, state, lock))
    monkeypatch.setattr(
        hasher, "_verify_sync", _concurrency_probe(hasher._verify_sync, state, lock)
    )
    # Two workers must be able to meet: proves the bound is 2, not 1.
    barrier = threading.Barrier(2, timeout=5)
    inner_hash = hasher._hash_sync

    def meet_then_hash(secret: bytes) -> object:
        barrier.wait()
        return inner_hash(secret)

    monkeypatch.setattr(hasher, "_hash_sync", meet_then_hash)
    encoded = await PasswordHasher(WEAK, allow_weak_for_tests=True).hash(PASSWORD)

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(hasher.hash, PASSWORD)
        for _ in range(4):
            tg.start_soon(hasher.verify, encoded, PASSWORD)
        for _ in range(2):
            tg.start_soon(hasher.verify, None, PASSWORD)

    assert state["max"] == 2
    assert state["active"] == 0


# --- the dedicated hashing threads: bounded, reused, nicer than the event loop -------------


def _thread_probe(
    real: Callable[..., object], seen: list[tuple[int, str, int]]
) -> Callable[..., object]:
    def probe(*args: object) -> object:
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid) if sys.platform.startswith("linux") else 0
        seen.append((threading.get_ident(), threading.current_thread().name, nice))
        time.sleep(0.005)  # overlap: every thread of the pool gets used
        return real(*args)

    return probe


@pytest.mark.anyio
async def test_hashes_run_on_a_fixed_set_of_dedicated_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fixed set of threads bounds glibc's per-thread malloc arenas: each
    # keeps one freed 19 MiB block, so the threads ever used bound the memory.
    hasher = PasswordHasher(WEAK, max_concurrent_hashes=2, allow_weak_for_tests=True)
    encoded = await hasher.hash(PASSWORD)
    seen: list[tuple[int, str, int]] = []
    monkeypatch.setattr(hasher, "_hash_sync", _thread_probe(hasher._hash_sync, seen))
    monkeypatch.setattr(hasher, "_verify_sync", _thread_probe(hasher._verify_sync, seen))

    for _ in range(3):  # three waves: later ones must reuse the same threads
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(hasher.hash, PASSWORD)
                tg.start_soon(hasher.verify, encoded, PASSWORD)
                tg.start_soon(hasher.verify, None, PASSWORD)

    assert len(seen) == 36
    threads = {ident for ident, _, _ in seen}
    assert len(threads) == 2
    assert threading.get_ident() not in threads
    assert all(name.startswith("argon2") for _, name, _ in seen)
    hasher.close()


@pytest.mark.anyio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
@pytest.mark.parametrize("niceness", [0, 10, 19])
async def test_hashing_threads_are_nicer_than_the_process(
    monkeypatch: pytest.MonkeyPatch, niceness: int
) -> None:
    process_nice = os.getpriority(os.PRIO_PROCESS, 0)
    hasher = PasswordHasher(
        WEAK, max_concurrent_hashes=2, allow_weak_for_tests=True, thread_niceness=niceness
    )
    seen: list[tuple[int, str, int]] = []
    monkeypatch.setattr(hasher, "_hash_sync", _thread_probe(hasher._hash_sync, seen))
    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(hasher.hash, PASSWORD)

    assert {nice for _, _, nice in seen} == {min(19, process_nice + niceness)}
    # The event loop's thread keeps the process's priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == process_nice
    hasher.close()


def test_lowering_priority_is_skipped_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    # Elsewhere PRIO_PROCESS would renice the whole process, event loop included.
    calls: list[tuple[int, ...]] = []
    monkeypatch.setattr(passwords.sys, "platform", "darwin")
    monkeypatch.setattr(passwords.os, "setpriority", lambda *a: calls.append(a))
    passwords._lower_thread_priority(10)
    assert calls == []


def test_a_refused_priority_change_only_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: int) -> None:
        raise PermissionError("not allowed")

    monkeypatch.setattr(passwords.sys, "platform", "linux")
    monkeypatch.setattr(passwords.os, "setpriority", refuse)
    with caplog.at_level(logging.WARNING, logger="auth_service.services.passwords"):
        passwords._lower_thread_priority(10)
    assert "priority" in caplog.text


@pytest.mark.parametrize("niceness", [-1, 20])
def test_thread_niceness_must_be_in_range(niceness: int) -> None:
    with pytest.raises(ValueError, match="thread_niceness"):
        PasswordHasher(thread_niceness=niceness)


@pytest.mark.anyio
async def test_a_cancelled_hash_keeps_its_slot_until_the_thread_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As with anyio.to_thread.run_sync: cancelling the caller does not free
    # the slot while its hash still runs, so the bound counts running hashes.
    hasher = PasswordHasher(WEAK, max_concurrent_hashes=1, allow_weak_for_tests=True)
    started, release = threading.Event(), threading.Event()
    real = hasher._hash_sync

    def blocking(secret: bytes) -> str:
        started.set()
        release.wait(5)
        return real(secret)

    monkeypatch.setattr(hasher, "_hash_sync", blocking)
    finished: list[str] = []

    async def hash_then_note() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await hasher.hash(PASSWORD)
        finished.append("cancelled" if scope.cancelled_caught else "done")

    scopes: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(hash_then_note)
        await anyio.to_thread.run_sync(started.wait, 5)
        scopes[0].cancel()
        await anyio.sleep(0.05)
        assert finished == []  # the caller waits for its thread
        assert hasher._limiter.borrowed_tokens == 1  # still running: still counted
        release.set()
    assert finished == ["cancelled"]
    assert hasher._limiter.borrowed_tokens == 0


@pytest.mark.anyio
async def test_close_lets_the_hashing_threads_exit() -> None:
    hasher = PasswordHasher(WEAK, max_concurrent_hashes=2, allow_weak_for_tests=True)
    await hasher.hash(PASSWORD)
    pool = [t for t in threading.enumerate() if t in hasher._executor._threads]
    assert pool
    hasher.close()
    for t in pool:
        t.join(5)
    assert not any(t.is_alive() for t in pool)


def test_default_hash_concurrency_is_the_cpus_the_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pinned to one CPU of many (taskset, a cpuset): one hash at a time.
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda _pid: {3}, raising=False)
    monkeypatch.setattr(config.os, "cpu_count", lambda: 8)
    assert config.usable_cpus() == 1
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda _pid: {0, 1, 2}, raising=False)
    assert config.usable_cpus() == 3
    monkeypatch.delattr(config.os, "sched_getaffinity", raising=False)
    assert config.usable_cpus() == 8
    monkeypatch.setattr(config.os, "cpu_count", lambda: None)
    assert config.usable_cpus() == 1
