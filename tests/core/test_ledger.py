"""Ledger transitions on SQLite and on PostgreSQL: conditional, race-safe, durable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbroker.adapters.sql.engine import engine_for
from taskbroker.adapters.sql.ledger import SqlLedger as Ledger
from taskbroker.adapters.sql.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    if request.param == "sqlite":
        engine = engine_for(f"sqlite:///{tmp_path / 'ledger.db'}")
    else:
        engine = engine_for(request.getfixturevalue("postgres").url)
    upgrade(engine)
    yield Ledger(engine)


def new(ledger: Ledger, owner: str = "u", key: str | None = None,
        inserted: list[str] | None = None) -> str:
    tid = str(uuid.uuid4())
    existing = ledger.create(task_id=tid, task_type="t", task_name="tb.t", owner=owner,
                             params={"x": 1}, idempotency_key=key)
    if existing is None and inserted is not None:
        inserted.append(tid)
    return existing.id if existing else tid


def test_lifecycle(ledger: Ledger) -> None:
    tid = new(ledger)
    assert ledger.get(tid).status == "queued"
    assert ledger.mark_started(tid, worker="w1")
    assert not ledger.mark_started(tid, worker="w2"), "a second delivery must not start it"
    ledger.report_progress(tid, 40, "halfway")
    rec = ledger.get(tid)
    assert (rec.status, rec.progress, rec.message, rec.attempts) == ("started", 40, "halfway", 1)
    assert ledger.finish(tid, status="success", result={"ok": True})
    rec = ledger.get(tid)
    assert rec.status == "success" and rec.result == {"ok": True} and rec.progress == 100
    assert rec.completed_at is not None and rec.started_at <= rec.completed_at
    assert not ledger.finish(tid, status="failure", error="late"), "terminal is final"


def test_cancel_wins_over_a_late_finish(ledger: Ledger) -> None:
    tid = new(ledger)
    ledger.mark_started(tid, worker="w")
    rec, changed = ledger.cancel(tid)
    assert changed and rec.status == "revoked" and ledger.is_cancel_requested(tid)
    assert not ledger.finish(tid, status="success", result={"x": 1})
    assert ledger.get(tid).status == "revoked" and ledger.get(tid).result is None
    _, changed = ledger.cancel(tid)
    assert not changed


def test_cancelled_queued_task_is_never_started(ledger: Ledger) -> None:
    tid = new(ledger)
    ledger.cancel(tid)
    assert not ledger.mark_started(tid, worker="w")


def test_owner_scoping(ledger: Ledger) -> None:
    tid = new(ledger, owner="alice")
    assert ledger.get(tid, owner="bob") is None
    assert ledger.cancel(tid, owner="bob") == (None, False)
    assert ledger.get(tid, owner="alice") is not None
    records, total = ledger.list_active(owner="alice")
    assert tid in {r.id for r in records} and total >= 1
    assert tid not in {r.id for r in ledger.list_active(owner="bob")[0]}


def test_discard_takes_back_only_a_never_claimed_queued_record(ledger: Ledger) -> None:
    tid = new(ledger)
    assert ledger.discard(tid) and ledger.get(tid) is None
    assert not ledger.discard(tid), "nothing left to discard"
    started = new(ledger)
    assert ledger.mark_started(started, worker="w")
    assert not ledger.discard(started) and ledger.get(started).status == "started"
    retried = new(ledger)
    assert ledger.mark_started(retried, worker="w")
    assert ledger.finish(retried, status="retry", error="again")
    assert not ledger.discard(retried), "a task that ran once is never discarded"


def test_idempotency_key_is_per_owner(ledger: Ledger) -> None:
    key = uuid.uuid4().hex
    inserted: list[str] = []
    a = new(ledger, owner="alice", key=key, inserted=inserted)
    a2 = new(ledger, owner="alice", key=key, inserted=inserted)
    b = new(ledger, owner="bob", key=key, inserted=inserted)
    assert a == a2 and a != b and inserted == [a, b]
