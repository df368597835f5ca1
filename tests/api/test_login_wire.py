"""What a password login sends to PostgreSQL (the production configuration).

A login's own SQL is one read on the read pool (shared/db/reads.py
`PoolReads`: autocommit, one statement per read, tests/api/test_profile_reads.py
watches its wire): the identity by email with whether the account has a
second factor (bench/README.md, P13; it was a second read after the hash).
Nothing goes through the write
engine, whose every checkout costs a pre-ping and whose reads were wrapped in
BEGIN/ROLLBACK: a second-factor check there cost six round trips a login
(bench/README.md, P5). The login's audit row is the audit writer's, written
after the request from a task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from shared.audit.store import AUDIT_TABLE
from shared.db.reads import PoolReads
from tests.conftest import Services, new_user, start_services
from tests.support.passkey_flows import claims

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
async def pg_services(
    tmp_path: Path, redis_prefix: str, db_urls: dict[str, str]
) -> AsyncIterator[Services]:
    async for s in start_services(tmp_path=tmp_path, redis_prefix=redis_prefix, urls=db_urls):
        yield s


def _outside_the_audit_writer() -> bool:
    task = asyncio.current_task()
    return task is None or not task.get_name().startswith("audit-writer")


@pytest.mark.parametrize("db_urls", ["postgres"], indirect=True)
async def test_a_password_login_is_one_read_and_nothing_on_the_write_engine(
    pg_services: Services,
) -> None:
    s = pg_services
    ctx = s.auth_app.state.ctx
    assert isinstance(ctx.reads, PoolReads)
    user = new_user()
    assert (await s.auth.post("/users", json=user)).status_code == 201
    body = {"email": user["email"], "password": user["password"]}
    assert (await s.auth.post("/login", json=body)).status_code == 200  # pools warm

    reads: list[str] = []
    writes: list[str] = []
    checkouts: list[str] = []

    def on(target: Any, name: str, into: list[str]) -> None:
        def record(*args: Any) -> None:
            if _outside_the_audit_writer():
                into.append(args[2] if name == "before_cursor_execute" else name)

        event.listen(target, name, record)

    class Statements:
        """What the read pool runs, through its statement-tracing hook."""

        def start(self) -> object | None:
            return object() if _outside_the_audit_writer() else None

        def end(self, _started: object, statement: str, error: BaseException | None = None) -> None:
            assert error is None
            reads.append(statement)

    ctx.reads.trace(Statements())
    on(ctx.engine.sync_engine, "before_cursor_execute", writes)
    # A write-engine checkout is a pre-ping (and its BEGIN/ROLLBACK) on the wire.
    on(ctx.engine.sync_engine.pool, "checkout", checkouts)

    resp = await s.auth.post("/login", json=body)
    assert resp.status_code == 200
    assert resp.json()["refresh_token"]
    assert [r.split()[0] for r in reads] == ["SELECT"]
    assert "FROM identities" in reads[0]
    assert "webauthn_credentials" in reads[0]
    assert "totp_secrets" in reads[0]
    assert writes == []
    assert checkouts == []

    # The login's audit row is still stored: by the writer, outside the request.
    await s.auth_app.state.obs.flush_audit()
    async with ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(AUDIT_TABLE.c.session_id).where(
                    AUDIT_TABLE.c.event == "login", AUDIT_TABLE.c.outcome == "success"
                )
            )
        ).all()
    assert len(rows) == 2
    assert claims(resp.json())["sid"] in {r.session_id for r in rows}
