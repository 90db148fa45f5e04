"""The PostgreSQL ledger's direct statements (a start's insert, a status's read on psycopg's
cursor) give what SQLAlchemy gives, survive a database restart, and hand every connection
back to the pool as SQLAlchemy expects it (transactions stay atomic)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

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
