"""The PostgreSQL ledger's direct statements (a start's insert, a status's read on psycopg's
cursor) give what SQLAlchemy gives, survive a database restart, and hand every connection
back to the pool as SQLAlchemy expects it (transactions stay atomic)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import anyio
import psycopg
import pytest
from sqlalchemy import delete, insert, select

from taskbroker.adapters.sql.direct import COLUMNS, DirectStatements
from taskbroker.adapters.sql.engine import engine_for
from taskbroker.adapters.sql.ledger import _GET, SqlLedger, _record
from taskbroker.adapters.sql.migrate import upgrade
from taskbroker.adapters.sql.tables import tasks
from taskbroker.core.ports import Rejected, utcnow


@pytest.fixture(scope="module")
def pg_url(contract_pg_url: str) -> str:
    upgrade(engine_for(contract_pg_url))
    return contract_pg_url


@pytest.fixture
def ledger(pg_url: str) -> Iterator[SqlLedger]:
    led = SqlLedger.from_url(pg_url)
    assert isinstance(led.direct, DirectStatements)
    yield led
    with led.engine.begin() as conn:
        conn.execute(delete(tasks))


def _terminate_others(pg_url: str) -> int:
    dsn = pg_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                           ).fetchone()
    return int(row[0]) if row else 0


PARAMS = {"text": "zoë ✓", "nested": {"list": [1, 2.5, None, True]}, "empty": {}}


def test_direct_read_is_what_sqlalchemy_reads(ledger: SqlLedger) -> None:
    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice",
                  params=PARAMS, priority=3, idempotency_key="k1", trace_id="ab" * 16)
    assert ledger.mark_started(task_id, worker="w1")
    assert ledger.finish(task_id, status="success", result={"r": [1, "two"]})
    with ledger.ac.connect() as conn:
        through_sa = _record(conn.execute(_GET, {"id": task_id}).mappings().first())
    direct = ledger.get(task_id)
    assert direct == through_sa
    assert direct is not None and direct.params == PARAMS and direct.result == {"r": [1, "two"]}
    assert direct.queued_at.tzinfo is not None
    assert ledger.get(task_id, owner="alice") == through_sa
    assert ledger.get(task_id, owner="bob") is None
    assert ledger.get(str(uuid.uuid4())) is None
    assert set(COLUMNS) == {c.name for c in tasks.columns}


def test_direct_statements_survive_a_database_restart(ledger: SqlLedger, pg_url: str) -> None:
    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice", params={})
    # fill the pool with several connections, then kill them all server-side
    raws = [ledger.engine.raw_connection() for _ in range(3)]
    for raw in raws:
        raw.close()
    assert _terminate_others(pg_url) >= 1
    # each call meets a dead pooled connection at most once and retries on a fresh one
    for _ in range(3):
        record = ledger.get(task_id)
        assert record is not None and record.id == task_id
    assert _terminate_others(pg_url) >= 1
    other = str(uuid.uuid4())
    ledger.create(task_id=other, task_type="t", task_name="tb.t", owner="alice", params={})
    assert ledger.get(other) is not None


def test_connections_go_back_out_of_autocommit(ledger: SqlLedger) -> None:
    # after direct statements, a transaction on the same pool must still roll back as a unit
    for _ in range(5):
        ledger.get(str(uuid.uuid4()))
    task_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError), ledger.engine.begin() as conn:
        conn.execute(insert(tasks).values(
            id=task_id, task_type="t", task_name="tb.t", owner="x", params={}, status="queued",
            progress=0, queued_at=_now(), updated_at=_now(), cancel_requested=False,
            attempts=0))
        raise RuntimeError("roll it back")
    with ledger.engine.connect() as conn:
        assert conn.execute(select(tasks.c.id).where(tasks.c.id == task_id)).first() is None


def test_non_json_params_are_rejected_and_nothing_is_stored(ledger: SqlLedger) -> None:
    task_id = str(uuid.uuid4())
    with pytest.raises(Rejected):
        ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice",
                      params={"when": object()})
    assert ledger.get(task_id) is None


def test_the_direct_count_of_active_tasks_is_what_sqlalchemy_counts(ledger: SqlLedger) -> None:
    from sqlalchemy import func

    ids = [str(uuid.uuid4()) for _ in range(5)]
    for task_id in ids:
        ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice",
                      params={})
    ledger.mark_started(ids[0], worker="w")
    ledger.finish(ids[1], status="success")
    ledger.cancel(ids[2])
    with ledger.ac.connect() as conn:
        by_hand = conn.execute(select(func.count()).select_from(tasks).where(
            tasks.c.owner == "alice", tasks.c.status.in_(("queued", "started", "retry")))
        ).scalar_one()
    states = [record.status for record in map(ledger.get, ids) if record is not None]
    assert set(states) >= {"queued", "started", "revoked"}
    active = sum(state in ("queued", "started", "retry") for state in states)
    assert ledger.count_active("alice") == by_hand == active
    assert ledger.count_active("nobody") == 0


def test_a_duplicate_idempotency_key_returns_the_first_task(ledger: SqlLedger) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert ledger.create(task_id=first, task_type="t", task_name="tb.t", owner="alice",
                         params={}, idempotency_key="same") is None
    existing = ledger.create(task_id=second, task_type="t", task_name="tb.t", owner="alice",
                             params={}, idempotency_key="same")
    assert existing is not None and existing.id == first
    assert ledger.get(second) is None


def _now() -> dt.datetime:
    return utcnow()


# --- on the event loop (the MCP server's starts and status reads) ----------------------------


def test_on_the_loop_the_same_statements_give_the_same_records(ledger: SqlLedger) -> None:
    from taskbroker.core.loop_bridge import close_loop_locals, run_on_loop

    first, second = str(uuid.uuid4()), str(uuid.uuid4())

    async def main() -> tuple[object, ...]:
        try:
            made = await run_on_loop(
                lambda: ledger.create(task_id=first, task_type="t", task_name="tb.t",
                                      owner="alice", params=PARAMS, idempotency_key="k"))
            # the unique index refuses the second insert; the lookup of the first (not a
            # direct statement) runs in a worker thread
            again = await run_on_loop(
                lambda: ledger.create(task_id=second, task_type="t", task_name="tb.t",
                                      owner="alice", params={}, idempotency_key="k"))
            mine = await run_on_loop(lambda: ledger.get(first, owner="alice"))
            theirs = await run_on_loop(lambda: ledger.get(first, owner="bob"))
            counted = [await run_on_loop(ledger.count_active, who) for who in ("alice", "bob")]
            opened = len(ledger.direct.loop_connections.get()._idle)  # type: ignore[union-attr]
            return made, again, mine, theirs, counted, opened
        finally:
            await close_loop_locals()

    made, again, mine, theirs, counted, opened = anyio.run(main)
    assert counted == [1, 0]
    assert made is None
    assert again is not None and again.id == first  # type: ignore[attr-defined]
    assert mine == ledger.get(first) and mine is not None
    assert mine.params == PARAMS  # type: ignore[attr-defined]
    assert theirs is None
    assert ledger.get(second) is None
    assert opened == 1  # one call at a time: one connection, reused


def test_on_the_loop_a_database_restart_costs_one_retry(ledger: SqlLedger, pg_url: str) -> None:
    from taskbroker.core.loop_bridge import close_loop_locals, run_on_loop

    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice", params={})

    async def main() -> list[str | None]:
        seen = []
        try:
            for _ in range(3):
                record = await run_on_loop(ledger.get, task_id)
                seen.append(record.id if record else None)
                # kill every connection but the test's: the loop's one included
                assert await anyio.to_thread.run_sync(_terminate_others, pg_url) >= 1
        finally:
            await close_loop_locals()
        return seen

    assert anyio.run(main) == [task_id] * 3
    ledger.engine.dispose()  # the engine's pooled connections were killed too
