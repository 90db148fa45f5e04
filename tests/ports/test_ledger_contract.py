"""The Ledger port's contract: one suite, run against every adapter.

Adapters (the ``subject`` fixture's params): :class:`MemoryLedger`, :class:`SqlLedger` on a
SQLite file, on in-memory SQLite (``sqlite://``, one database for the whole process) and on
PostgreSQL (a database of this module's own on the session's server).  Every test gets an
empty ledger and asserts values worked out by hand: times are fixed instants in 2001 passed
as ``now=``, so nothing depends on the wall clock.

Covered: creation and idempotency keys (ten threads racing per key), failed publishes, the
conditional transitions (start, finish, cancel, retry, reclaim), owner scoping, progress,
heartbeats and the cancel flag, listings and counts, the reaper's queries, retention with
tombstones, JSON storage, and errors in the port's own vocabulary (:class:`Unavailable`,
:class:`Rejected`, :class:`PortError`).  ``KNOWN_BREAKS`` lists the clauses an adapter breaks
today (strict expected failures; see ``conftest.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from taskbroker.adapters.memory import MemoryLedger
from taskbroker.adapters.sql import SqlLedger, engine_for
from taskbroker.adapters.sql.migrate import upgrade
from taskbroker.adapters.sql.tables import purged, tasks
from taskbroker.app import ledger_for
from taskbroker.core.ports import (
    MAX_TASK_EVENTS,
    ActiveRow,
    Ledger,
    PortError,
    Rejected,
    TaskQuery,
    TaskRecord,
    Unavailable,
)
from tests.ports.ledger_scenarios import RACED_TASKS, RACED_TASKS_IN_CHILD, SCENARIOS
from tests.support.procs import ROOT, free_port

#: every adapter of the port; a new one adds its name here and a branch in ``_open``
ADAPTERS = ("memory", "sqlite-file", "sqlite-memory", "postgresql")

#: adapters whose threaded scenarios run in a child process: sharing them between threads can
#: crash the process (SIGSEGV), which must fail one test, not end the session
THREADS_IN_CHILD = frozenset({"sqlite-memory"})

_SQL = ("sqlite-file", "sqlite-memory", "postgresql")

#: (test, adapter) -> why the adapter breaks that clause today (strict xfail, see conftest)
KNOWN_BREAKS: dict[tuple[str, str], str] = {}

T0 = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
ALL_STATUSES = ("queued", "started", "retry", "success", "failure", "revoked")


def at(seconds: float) -> dt.datetime:
    """A fixed instant ``seconds`` after T0."""
    return T0 + dt.timedelta(seconds=seconds)


# --- the adapters ----------------------------------------------------------------------------


@dataclass
class LedgerUnderTest:
    """One adapter, empty: the ledger and its database URL (SQL adapters; a child process
    running a threaded scenario opens its own ledger on it)."""

    kind: str
    ledger: Ledger
    url: str | None = None




def _empty(ledger: SqlLedger) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(delete(tasks))
        conn.execute(delete(purged))


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> LedgerUnderTest:
    if kind == "memory":
        return LedgerUnderTest(kind, MemoryLedger())
    if kind == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    elif kind == "sqlite-memory":
        url = "sqlite://"
    elif kind == "postgresql":
        url = request.getfixturevalue("contract_pg_url")
    else:
        raise AssertionError(f"no such adapter {kind!r}")
    ledger = SqlLedger.from_url(url)
    upgrade(ledger.engine)  # the schema (taskbroker db upgrade)
    _empty(ledger)  # the in-memory and PostgreSQL databases outlive one test
    return LedgerUnderTest(kind, ledger, url)


@pytest.fixture(params=ADAPTERS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerUnderTest]:
    """An empty ledger of each adapter."""
    under_test = _open(request.param, request, tmp_path)
    try:
        yield under_test
    finally:
        if isinstance(under_test.ledger, SqlLedger):
            if under_test.kind == "sqlite-file":
                under_test.ledger.engine.dispose()
            else:
                _empty(under_test.ledger)


@pytest.fixture
def ledger(subject: LedgerUnderTest) -> Ledger:
    """The ledger of ``subject``."""
    return subject.ledger


# --- helpers ---------------------------------------------------------------------------------


def new_task(ledger: Ledger, *, owner: str = "alice", task_type: str = "t",
             queued: float = 0, **kwargs: Any) -> str:
    """Create a queued task at ``at(queued)``; its id."""
    task_id = str(uuid.uuid4())
    assert ledger.create(task_id=task_id, task_type=task_type, task_name=f"tb.{task_type}",
                         owner=owner, params=kwargs.pop("params", {"x": 1}), now=at(queued),
                         **kwargs) is None
    return task_id


def started_task(ledger: Ledger, *, started: float = 1, worker: str = "w1",
                 **kwargs: Any) -> str:
    """A task started by ``worker`` at ``at(started)``."""
    task_id = new_task(ledger, **kwargs)
    assert ledger.mark_started(task_id, worker=worker, now=at(started))
    return task_id


def record(ledger: Ledger, task_id: str) -> TaskRecord:
    """The record of ``task_id`` (which must exist)."""
    found = ledger.get(task_id)
    assert found is not None, f"no record for {task_id}"
    return found


def queued_record(task_id: str, **fields: Any) -> TaskRecord:
    """The record create() must make, with ``fields`` changed."""
    base: dict[str, Any] = dict(
        id=task_id, task_type="t", task_name="tb.t", owner="alice", params={"x": 1},
        status="queued", progress=0, message=None, result=None, error=None, queued_at=T0,
        started_at=None, completed_at=None, ended_at=None, heartbeat_at=None,
        cancel_requested=False, worker=None, attempts=0, priority=None, idempotency_key=None,
    )
    base.update(fields)
    return TaskRecord(**base)


def port_error(kind: type[PortError], call: Callable[[], object]) -> PortError:
    """The ``kind`` of port error ``call`` raises; any other outcome fails with a one-line
    report (formatting a RecursionError's thousand frames would take a minute)."""
    try:
        call()
    except kind as exc:
        return exc
    except Exception as exc:
        other = f"raised {type(exc).__name__} instead of {kind.__name__}: {str(exc)[:300]}"
    else:
        other = f"raised nothing instead of {kind.__name__}"
    pytest.fail(other, pytrace=False)  # outside the except block: nothing chained


def raced(subject: LedgerUnderTest) -> int:
    """How many tasks (or keys) a threaded scenario races on for ``subject``."""
    return RACED_TASKS_IN_CHILD if subject.kind in THREADS_IN_CHILD else RACED_TASKS


def run_scenario(subject: LedgerUnderTest, name: str) -> dict[str, Any]:
    """Run a threaded scenario on ``subject``: here, or in a child for THREADS_IN_CHILD."""
    if subject.kind not in THREADS_IN_CHILD:
        return SCENARIOS[name](subject.ledger, RACED_TASKS)
    assert subject.url is not None
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-m", "tests.ports.ledger_scenarios",
         subject.url, name],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    if proc.returncode != 0:
        how = (f"signal {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        pytest.fail(f"the scenario's process ended with {how}:\n{proc.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return summary


# --- creation and idempotency ----------------------------------------------------------------


def test_create_inserts_a_queued_record(ledger: Ledger) -> None:
    task_id = str(uuid.uuid4())
    params = {"x": 1, "nested": {"a": [1, 2], "s": "é"}}
    assert ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice",
                         params=params, priority=7, idempotency_key="k-1", now=T0) is None
    stored = record(ledger, task_id)
    assert stored == queued_record(task_id, params=params, priority=7, idempotency_key="k-1")
    assert stored.terminal is False


def test_a_created_record_is_visible_to_other_threads_at_once(ledger: Ledger) -> None:
    # the service publishes right after create(): a worker must then find the record
    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice",
                  params={"x": 1}, now=T0)
    seen: list[TaskRecord | None] = []
    reader = threading.Thread(target=lambda: seen.append(ledger.get(task_id)))
    reader.start()
    reader.join(30)
    assert seen == [queued_record(task_id)]


@pytest.mark.parametrize("key", [None, "k-1"], ids=["no-key", "key"])
def test_discard_takes_back_a_never_claimed_record(ledger: Ledger, key: str | None) -> None:
    # what the service does when the publish after create() fails
    task_id = new_task(ledger, idempotency_key=key)
    assert ledger.discard(task_id) is True
    assert ledger.get(task_id) is None
    assert ledger.ids(ALL_STATUSES) == []
    assert ledger.discard(task_id) is False, "nothing left to discard"
    if key is not None:  # the key is not burnt: the next start with it is a new task
        assert ledger.by_idempotency_key("alice", key) is None
        retry_id = new_task(ledger, idempotency_key=key)
        assert record(ledger, retry_id).idempotency_key == key


def test_discard_never_takes_back_a_task_that_was_claimed(ledger: Ledger) -> None:
    started = new_task(ledger)
    assert ledger.mark_started(started, worker="w1", now=at(1))
    retried = new_task(ledger)
    assert ledger.mark_started(retried, worker="w1", now=at(1))
    assert ledger.finish(retried, status="retry", error="again", now=at(2))
    cancelled = new_task(ledger)
    ledger.cancel(cancelled, now=at(3))
    for task_id in (started, retried, cancelled):
        before = record(ledger, task_id)
        assert ledger.discard(task_id) is False
        assert record(ledger, task_id) == before
    assert ledger.discard(str(uuid.uuid4())) is False


def test_an_idempotency_key_returns_the_original_record(ledger: Ledger) -> None:
    first = new_task(ledger, idempotency_key="k-1")
    second = str(uuid.uuid4())
    existing = ledger.create(task_id=second, task_type="t", task_name="tb.t", owner="alice",
                             params={"x": 2}, idempotency_key="k-1", now=at(5))
    assert existing == queued_record(first, idempotency_key="k-1")
    assert ledger.get(second) is None
    # keys are per owner
    bobs = new_task(ledger, owner="bob", idempotency_key="k-1")
    assert record(ledger, bobs).owner == "bob"
    assert (ledger.by_idempotency_key("alice", "k-1") or queued_record("?")).id == first
    assert (ledger.by_idempotency_key("bob", "k-1") or queued_record("?")).id == bobs
    assert ledger.by_idempotency_key("carol", "k-1") is None
    assert ledger.by_idempotency_key("alice", "k-2") is None
    # a finished original is still the answer
    assert ledger.mark_started(first, worker="w1", now=at(1))
    assert ledger.finish(first, status="success", result={"ok": True}, now=at(2))
    again = ledger.create(task_id=str(uuid.uuid4()), task_type="t", task_name="tb.t",
                          owner="alice", params={}, idempotency_key="k-1")
    assert again is not None
    assert (again.id, again.status, again.result) == (first, "success", {"ok": True})


def test_concurrent_idempotent_creates_publish_once(subject: LedgerUnderTest) -> None:
    summary = run_scenario(subject, "concurrent_idempotent_creates")
    assert summary["errors"] == []
    assert summary["inconsistent"] == []  # per key: 1 publish, 1 record, THREADS same answers
    assert summary["keys"] == raced(subject)


def test_a_duplicate_id_is_refused(ledger: Ledger) -> None:
    task_id = new_task(ledger)
    before = record(ledger, task_id)
    port_error(PortError, lambda: ledger.create(task_id=task_id, task_type="u",
                                                task_name="tb.u", owner="bob", params={"y": 2}))
    assert record(ledger, task_id) == before


def test_a_duplicate_id_with_an_idempotency_key_is_refused(ledger: Ledger) -> None:
    task_id = new_task(ledger)
    before = record(ledger, task_id)
    port_error(PortError, lambda: ledger.create(task_id=task_id, task_type="u",
                                                task_name="tb.u", owner="bob", params={"y": 2},
                                                idempotency_key="fresh"))
    assert record(ledger, task_id) == before
    assert ledger.by_idempotency_key("bob", "fresh") is None


# --- starting --------------------------------------------------------------------------------


def test_mark_started_moves_a_queued_task_to_started(ledger: Ledger) -> None:
    task_id = new_task(ledger)
    assert ledger.mark_started(task_id, worker="w1", now=at(1)) is True
    assert record(ledger, task_id) == queued_record(
        task_id, status="started", started_at=at(1), heartbeat_at=at(1), worker="w1",
        attempts=1)


def test_a_started_task_is_not_started_again(ledger: Ledger) -> None:
    task_id = started_task(ledger)
    before = record(ledger, task_id)
    assert ledger.mark_started(task_id, worker="w2", now=at(2)) is False
    assert record(ledger, task_id) == before


def test_a_revoked_task_cannot_be_started(ledger: Ledger) -> None:
    task_id = new_task(ledger)
    assert ledger.cancel(task_id, now=at(1))[1] is True
    assert ledger.mark_started(task_id, worker="w1", now=at(2)) is False
    after = record(ledger, task_id)
    assert (after.status, after.started_at, after.attempts, after.worker) == (
        "revoked", None, 0, None)


@pytest.mark.parametrize("status", ["success", "failure"])
def test_a_finished_task_cannot_be_started(ledger: Ledger, status: str) -> None:
    task_id = started_task(ledger)
    assert ledger.finish(task_id, status=status, now=at(2))
    before = record(ledger, task_id)
    assert ledger.mark_started(task_id, worker="w2", now=at(3)) is False
    assert record(ledger, task_id) == before


def test_an_unknown_task_cannot_be_started(ledger: Ledger) -> None:
    task_id = str(uuid.uuid4())
    assert ledger.mark_started(task_id, worker="w1") is False
    assert ledger.get(task_id) is None


def test_a_retried_task_starts_again_and_keeps_its_first_start(ledger: Ledger) -> None:
    task_id = started_task(ledger, started=1)
    ledger.report_progress(task_id, 30, "a third")
    assert ledger.finish(task_id, status="retry", error="RetryableError: busy", now=at(2))
    assert record(ledger, task_id) == queued_record(
        task_id, status="retry", progress=30, message="a third", error="RetryableError: busy",
        started_at=at(1), heartbeat_at=record(ledger, task_id).heartbeat_at, ended_at=at(2),
        worker="w1", attempts=1)
    assert ledger.mark_started(task_id, worker="w2", now=at(3)) is True
    assert record(ledger, task_id) == queued_record(
        task_id, status="started", error="RetryableError: busy", started_at=at(1),
        heartbeat_at=at(3), ended_at=None, worker="w2", attempts=2)


def test_concurrent_starts_start_the_task_once(subject: LedgerUnderTest) -> None:
    summary = run_scenario(subject, "concurrent_starts")
    assert summary["errors"] == []
    assert summary["inconsistent"] == []
    assert summary["started"] == raced(subject)


# --- finishing -------------------------------------------------------------------------------


def test_finish_records_success(ledger: Ledger) -> None:
    task_id = started_task(ledger, started=1)
    ledger.report_progress(task_id, 40, "most")
    assert ledger.finish(task_id, status="success", result={"sum": 36}, now=at(2)) is True
    finished = record(ledger, task_id)
    assert finished == queued_record(
        task_id, status="success", progress=100, message="most", result={"sum": 36},
        started_at=at(1), completed_at=at(2), ended_at=at(2),
        heartbeat_at=finished.heartbeat_at, worker="w1", attempts=1)
    assert finished.terminal is True


def test_finish_records_failure(ledger: Ledger) -> None:
    task_id = started_task(ledger, started=1)
    assert ledger.finish(task_id, status="failure", error="RuntimeError: boom", now=at(2))
    assert record(ledger, task_id) == queued_record(
        task_id, status="failure", progress=100, error="RuntimeError: boom", started_at=at(1),
        completed_at=at(2), ended_at=at(2), heartbeat_at=at(1), worker="w1", attempts=1)


def test_finish_only_ends_a_started_task(ledger: Ledger) -> None:
    queued = new_task(ledger)
    revoked = started_task(ledger)
    ledger.cancel(revoked, now=at(2))
    done = started_task(ledger)
    ledger.finish(done, status="success", result={"first": True}, now=at(2))
    for task_id in (queued, revoked, done):
        before = record(ledger, task_id)
        assert ledger.finish(task_id, status="failure", error="late", now=at(3)) is False
        assert ledger.finish(task_id, status="success", result={"late": 1}, now=at(3)) is False
        assert record(ledger, task_id) == before
    unknown = str(uuid.uuid4())
    assert ledger.finish(unknown, status="success", result={}) is False
    assert ledger.get(unknown) is None


def test_mark_ended_records_when_the_handler_let_go(ledger: Ledger) -> None:
    task_id = started_task(ledger)
    ledger.cancel(task_id, now=at(2))
    ledger.mark_ended(task_id, now=at(3))
    after = record(ledger, task_id)
    assert (after.status, after.ended_at, after.completed_at) == ("revoked", at(3), at(2))
    unknown = str(uuid.uuid4())
    ledger.mark_ended(unknown, now=at(3))
    assert ledger.get(unknown) is None


# --- cancelling ------------------------------------------------------------------------------


def test_cancel_revokes_a_queued_task(ledger: Ledger) -> None:
    task_id = new_task(ledger)
    after, changed = ledger.cancel(task_id, now=at(4))
    expected = queued_record(task_id, status="revoked", cancel_requested=True,
                             completed_at=at(4), progress=100, message="canceled")
    assert (after, changed) == (expected, True)
    assert record(ledger, task_id) == expected
    assert ledger.is_cancel_requested(task_id) is True


def test_cancel_revokes_a_started_task_and_a_late_finish_changes_nothing(
        ledger: Ledger) -> None:
    task_id = started_task(ledger, started=1)
    after, changed = ledger.cancel(task_id, now=at(2))
    assert changed is True
    assert after == queued_record(
        task_id, status="revoked", cancel_requested=True, completed_at=at(2), progress=100,
        message="canceled", started_at=at(1), heartbeat_at=at(1), worker="w1", attempts=1)
    assert ledger.finish(task_id, status="success", result={"x": 1}, now=at(3)) is False
    assert record(ledger, task_id) == after


@pytest.mark.parametrize("end", ["success", "failure", "revoked"])
def test_cancel_of_a_terminal_task_changes_nothing(ledger: Ledger, end: str) -> None:
    task_id = started_task(ledger)
    if end == "revoked":
        ledger.cancel(task_id, now=at(2))
    else:
        ledger.finish(task_id, status=end, result={"r": 1}, now=at(2))
    before = record(ledger, task_id)
    assert ledger.cancel(task_id, now=at(9)) == (before, False)
    assert record(ledger, task_id) == before
    assert before.completed_at == at(2)


def test_cancel_of_an_unknown_task_changes_nothing(ledger: Ledger) -> None:
    task_id = str(uuid.uuid4())
    assert ledger.cancel(task_id) == (None, False)
    assert ledger.get(task_id) is None


def test_is_cancel_requested(ledger: Ledger) -> None:
    assert ledger.is_cancel_requested(str(uuid.uuid4())) is True  # unknown: stop
    queued, running = new_task(ledger), started_task(ledger)
    assert ledger.is_cancel_requested(queued) is False
    assert ledger.is_cancel_requested(running) is False
    ledger.cancel(running)
    assert ledger.is_cancel_requested(running) is True
    assert ledger.is_cancel_requested(queued) is False


def test_a_cancel_racing_a_finish_has_exactly_one_winner(subject: LedgerUnderTest) -> None:
    summary = run_scenario(subject, "cancel_racing_finish")
    assert summary["errors"] == []
    assert summary["inconsistent"] == []
    assert summary["cancel_won"] + summary["finish_won"] == raced(subject)


# --- owners ----------------------------------------------------------------------------------


def test_another_owner_sees_nothing_and_changes_nothing(ledger: Ledger) -> None:
    task_id = new_task(ledger, owner="alice")
    before = record(ledger, task_id)
    assert ledger.get(task_id, owner="bob") is None
    assert ledger.cancel(task_id, owner="bob") == (None, False)
    assert record(ledger, task_id) == before
    assert ledger.get(task_id, owner="alice") == before
    assert [r.id for r in ledger.list_active(owner="alice")[0]] == [task_id]
    assert ledger.list_active(owner="bob") == ([], 0)
    assert ledger.count_active("bob") == 0
    assert ledger.was_purged(task_id, owner="bob") is False
    after, changed = ledger.cancel(task_id, owner="alice", now=at(2))
    assert changed is True and after is not None and after.status == "revoked"


# --- progress and heartbeats -----------------------------------------------------------------


def test_progress_is_recorded_only_while_started(ledger: Ledger) -> None:
    task_id = new_task(ledger)
    ledger.report_progress(task_id, 40, "too early")
    assert record(ledger, task_id) == queued_record(task_id)
    ledger.mark_started(task_id, worker="w1", now=at(1))
    ledger.report_progress(task_id, 40, "halfway")
    running = record(ledger, task_id)
    assert (running.progress, running.message) == (40, "halfway")
    assert running.heartbeat_at is not None and running.heartbeat_at > at(1)  # a sign of life
    ledger.report_progress(task_id, 60, None)  # no message: the last one stays
    assert (record(ledger, task_id).progress, record(ledger, task_id).message) == (60, "halfway")
    ledger.finish(task_id, status="success", result={}, now=at(2))
    done = record(ledger, task_id)
    ledger.report_progress(task_id, 5, "too late")
    assert record(ledger, task_id) == done
    assert (done.progress, done.message) == (100, "halfway")


def test_a_long_progress_message_is_cut_to_2000_characters(ledger: Ledger) -> None:
    task_id = started_task(ledger)
    message = "x" * 1990 + "€" * 3010  # multi-byte: characters are counted, not bytes
    ledger.report_progress(task_id, 10, message)
    assert record(ledger, task_id).message == "x" * 1990 + "€" * 10


def test_heartbeat_only_while_started(ledger: Ledger) -> None:
    queued = new_task(ledger)
    ledger.heartbeat(queued)
    assert record(ledger, queued).heartbeat_at is None
    running = started_task(ledger, started=1)
    ledger.heartbeat(running)
    beat = record(ledger, running).heartbeat_at
    assert beat is not None and beat > at(1)
    ledger.finish(running, status="success", result={}, now=at(2))
    before = record(ledger, running)
    ledger.heartbeat(running)
    assert record(ledger, running) == before
    ledger.heartbeat(str(uuid.uuid4()))  # unknown: nothing to do, nothing created
    assert len(ledger.ids(ALL_STATUSES)) == 2


# --- listings and counts ---------------------------------------------------------------------


def test_list_active_is_oldest_first_with_limit_and_total(ledger: Ledger) -> None:
    a1 = new_task(ledger, queued=5)
    a2 = new_task(ledger, queued=1)
    a3 = started_task(ledger, queued=3, started=10)
    ledger.report_progress(a3, 30, None)
    a4 = started_task(ledger, queued=2, started=11)
    ledger.finish(a4, status="retry", error="busy", now=at(12))
    a5 = new_task(ledger, queued=4)
    done = started_task(ledger, queued=0.5)
    ledger.finish(done, status="success", result={}, now=at(6))
    ledger.cancel(new_task(ledger, queued=0.7), now=at(7))
    b1 = new_task(ledger, owner="bob", task_type="u", queued=0)

    def row(task_id: str, queued: float, status: str = "queued", started: float | None = None,
            progress: int = 0, owner: str = "alice", task_type: str = "t") -> ActiveRow:
        return ActiveRow(task_id, f"tb.{task_type}", task_type, status,
                         None if started is None else at(started), at(queued), progress, owner)

    alices = [row(a2, 1), row(a4, 2, "retry", 11), row(a3, 3, "started", 10, 30), row(a5, 4),
              row(a1, 5)]
    assert ledger.list_active(owner="alice") == (alices, 5)
    assert ledger.list_active(owner="alice", limit=3) == (alices[:3], 5)
    assert ledger.list_active(owner="alice", limit=4) == (alices[:4], 5)
    assert ledger.list_active(owner="alice", limit=5) == (alices, 5)
    everyone = [row(b1, 0, owner="bob", task_type="u"), *alices]
    assert ledger.list_active() == (everyone, 6)
    assert ledger.list_active(limit=1) == (everyone[:1], 6)
    assert ledger.list_active(task_type="u") == (everyone[:1], 1)
    assert ledger.list_active(owner="alice", task_type="u") == ([], 0)


def test_counts_of_active_tasks(ledger: Ledger) -> None:
    queued = [new_task(ledger) for _ in range(3)]
    started_task(ledger)
    retrying = started_task(ledger)
    ledger.finish(retrying, status="retry", error="busy")
    for end in ("success", "failure"):
        ledger.finish(started_task(ledger), status=end)
    ledger.cancel(queued[0])
    new_task(ledger, owner="bob", task_type="u")
    assert ledger.count_active("alice") == 4  # 2 queued, 1 started, 1 retry
    assert ledger.count_active("bob") == 1
    assert ledger.count_active("carol") == 0
    assert sorted(ledger.active_counts()) == [("t", "queued", 2), ("t", "retry", 1),
                                              ("t", "started", 1), ("u", "queued", 1)]


def test_ids_by_status(ledger: Ledger) -> None:
    queued = new_task(ledger)
    running = started_task(ledger)
    done = started_task(ledger)
    ledger.finish(done, status="success")
    revoked = new_task(ledger)
    ledger.cancel(revoked)
    assert ledger.ids(["queued"]) == [queued]
    assert sorted(ledger.ids(("started", "success"))) == sorted([running, done])
    assert sorted(ledger.ids(ALL_STATUSES)) == sorted([queued, running, done, revoked])
    assert ledger.ids(["failure"]) == []


# --- the reaper's queries --------------------------------------------------------------------


def test_stale_started_is_oldest_heartbeat_first(ledger: Ledger) -> None:
    s1 = started_task(ledger, started=10)
    s2 = started_task(ledger, started=30)
    s3 = started_task(ledger, started=20)
    fresh = started_task(ledger, started=5)
    ledger.heartbeat(fresh)  # beats now, long after 2001
    new_task(ledger)  # queued: no heartbeat
    ledger.finish(started_task(ledger, started=1), status="success")
    stale = ledger.stale_started(at(100))
    assert [(r.id, r.heartbeat_at, r.status) for r in stale] == [
        (s1, at(10), "started"), (s3, at(20), "started"), (s2, at(30), "started")]
    assert [r.id for r in ledger.stale_started(at(100), limit=2)] == [s1, s3]
    assert [r.id for r in ledger.stale_started(at(20))] == [s1]  # a beat at the cutoff is fine
    assert ledger.stale_started(at(0)) == []


def test_reclaim_stale_only_takes_a_task_that_is_still_stale(ledger: Ledger) -> None:
    to_retry = started_task(ledger, started=10)
    to_fail = started_task(ledger, started=10)
    beat = started_task(ledger, started=10)
    ledger.heartbeat(beat)
    later = started_task(ledger, started=30)
    cancelled = started_task(ledger, started=10)
    ledger.cancel(cancelled, now=at(11))

    assert ledger.reclaim_stale(to_retry, at(20), status="retry",
                                error="worker lost; re-delivered") is True
    retried = record(ledger, to_retry)
    assert (retried.status, retried.error, retried.completed_at, retried.progress) == (
        "retry", "worker lost; re-delivered", None, 0)
    assert retried.ended_at is not None and retried.ended_at > at(20)
    assert ledger.reclaim_stale(to_retry, at(20), status="failure", error="again") is False

    assert ledger.reclaim_stale(to_fail, at(20), status="failure", error="worker lost") is True
    failed = record(ledger, to_fail)
    assert (failed.status, failed.error, failed.progress) == ("failure", "worker lost", 100)
    assert failed.completed_at is not None and failed.completed_at > at(20)

    for task_id, status in ((beat, "started"), (later, "started"), (cancelled, "revoked")):
        before = record(ledger, task_id)
        assert ledger.reclaim_stale(task_id, at(20), status="failure", error="x") is False
        assert record(ledger, task_id) == before
        assert before.status == status
    assert ledger.reclaim_stale(str(uuid.uuid4()), at(20), status="failure", error="x") is False


def test_quiet_retries_and_touch(ledger: Ledger) -> None:
    r1 = started_task(ledger, started=1)
    ledger.finish(r1, status="retry", error="busy", now=at(2))
    r2 = started_task(ledger, started=1)
    ledger.finish(r2, status="retry", error="busy", now=at(4))
    new_task(ledger, queued=0)  # quiet, but not waiting to retry
    started_task(ledger, started=0)
    assert [(r.id, r.status, r.error) for r in ledger.quiet_retries(at(3))] == [
        (r1, "retry", "busy")]
    assert ledger.quiet_retries(at(2)) == []  # touched exactly at the cutoff: not quiet
    assert sorted(r.id for r in ledger.quiet_retries(at(5))) == sorted([r1, r2])
    assert len(ledger.quiet_retries(at(5), limit=1)) == 1
    ledger.touch(r1)  # a re-publish: now recent
    assert [r.id for r in ledger.quiet_retries(at(5))] == [r2]
    unknown = str(uuid.uuid4())
    ledger.touch(unknown)
    assert ledger.get(unknown) is None


def test_snapshots_read_many_tasks_at_once(ledger: Ledger) -> None:
    queued = new_task(ledger, queued=0)
    running = started_task(ledger, started=1)
    ledger.report_progress(running, 40, "halfway")
    done = started_task(ledger, started=1)
    ledger.finish(done, status="success", result={"big": "x" * 100}, now=at(3))
    missing = str(uuid.uuid4())
    found = ledger.snapshots([queued, running, done, missing, queued])
    assert set(found) == {queued, running, done}
    assert (found[queued].status, found[queued].progress, found[queued].message) == (
        "queued", 0, None)
    assert found[queued].updated_at == at(0)
    assert (found[running].status, found[running].progress, found[running].message) == (
        "started", 40, "halfway")
    assert (found[done].status, found[done].progress) == ("success", 100)
    assert found[done].updated_at == at(3)
    assert ledger.snapshots([]) == {}
    many = [new_task(ledger) for _ in range(30)]
    assert set(ledger.snapshots(many)) == set(many)


def test_waiting_lists_untouched_queued_and_retrying_tasks_oldest_first(ledger: Ledger) -> None:
    old_queued = new_task(ledger, queued=0)
    retrying = started_task(ledger, started=1)
    ledger.finish(retrying, status="retry", error="busy", now=at(2))
    new_task(ledger, queued=6)  # too recent
    running = started_task(ledger, started=0)
    done = started_task(ledger, started=0)
    ledger.finish(done, status="success", result={}, now=at(1))
    assert [(r.id, r.status) for r in ledger.waiting(at(5))] == [
        (old_queued, "queued"), (retrying, "retry")]
    assert ledger.waiting(at(0)) == []  # touched exactly at the cutoff: not waiting long
    assert [r.id for r in ledger.waiting(at(5), limit=1)] == [old_queued]
    assert running not in {r.id for r in ledger.waiting(at(50))}


def test_touch_since_a_cutoff_has_one_winner(ledger: Ledger) -> None:
    task_id = new_task(ledger, queued=0)
    assert ledger.touch(task_id, unchanged_since=at(5)) is True  # now: well after at(5)
    assert ledger.touch(task_id, unchanged_since=at(5)) is False, "a second reaper loses"
    assert ledger.waiting(at(5)) == []
    assert ledger.touch(str(uuid.uuid4()), unchanged_since=at(5)) is False


def test_abandon_fails_only_a_task_still_waiting(ledger: Ledger) -> None:
    lost = new_task(ledger, queued=0)
    assert ledger.abandon(lost, error="lost by the broker: x", unchanged_since=at(5)) is True
    rec = record(ledger, lost)
    assert (rec.status, rec.error, rec.progress, rec.terminal) == (
        "failure", "lost by the broker: x", 100, True)
    assert rec.completed_at is not None
    recent = new_task(ledger, queued=10)
    assert ledger.abandon(recent, error="e", unchanged_since=at(5)) is False
    running = started_task(ledger, started=0)
    assert ledger.abandon(running, error="e", unchanged_since=at(50)) is False
    assert record(ledger, running).status == "started"


# --- retention -------------------------------------------------------------------------------


def test_purge_removes_old_terminal_records_and_leaves_tombstones(ledger: Ledger) -> None:
    p1 = started_task(ledger, owner="alice")
    ledger.finish(p1, status="success", result={}, now=at(10))
    p2 = started_task(ledger, owner="bob")
    ledger.finish(p2, status="failure", error="e", now=at(20))
    p3 = new_task(ledger, owner="alice")
    ledger.cancel(p3, now=at(15))
    recent = started_task(ledger)
    ledger.finish(recent, status="success", result={}, now=at(40))
    queued, running = new_task(ledger), started_task(ledger)

    assert ledger.purge(at(30), now=at(50)) == 3
    for gone in (p1, p2, p3):
        assert ledger.get(gone) is None
        assert ledger.was_purged(gone) is True
    assert ledger.was_purged(p1, owner="alice") is True
    assert ledger.was_purged(p1, owner="bob") is False  # a tombstone keeps its owner
    assert ledger.was_purged(p2, owner="bob") is True
    for kept in (recent, queued, running):
        assert ledger.get(kept) is not None
        assert ledger.was_purged(kept) is False
    assert ledger.was_purged(str(uuid.uuid4())) is False
    assert ledger.purge(at(30), now=at(60)) == 0


def test_purge_takes_at_most_limit_records(ledger: Ledger) -> None:
    ids = [started_task(ledger) for _ in range(3)]
    for n, task_id in enumerate(ids):
        ledger.finish(task_id, status="success", now=at(10 + n))
    assert ledger.purge(at(30), limit=2, now=at(50)) == 2
    assert len(ledger.ids(["success"])) == 1
    assert ledger.purge(at(30), limit=2, now=at(50)) == 1
    assert ledger.purge(at(30), limit=2, now=at(50)) == 0
    assert all(ledger.was_purged(task_id) for task_id in ids)


def test_purge_tombstones_forgets_old_tombstones(ledger: Ledger) -> None:
    old = [started_task(ledger) for _ in range(2)]
    for task_id in old:
        ledger.finish(task_id, status="success", now=at(10))
    assert ledger.purge(at(30), now=at(50)) == 2
    newer = started_task(ledger)
    ledger.finish(newer, status="failure", now=at(60))
    assert ledger.purge(at(65), now=at(70)) == 1
    assert ledger.purge_tombstones(at(50)) == 0  # purged exactly at the cutoff: kept
    assert ledger.purge_tombstones(at(60)) == 2
    assert [ledger.was_purged(t) for t in (*old, newer)] == [False, False, True]
    assert ledger.purge_tombstones(at(80)) == 1
    assert ledger.purge_tombstones(at(80)) == 0
    assert ledger.was_purged(newer) is False and ledger.get(newer) is None  # reads as unknown


# --- values ----------------------------------------------------------------------------------


def test_records_are_copies(ledger: Ledger) -> None:
    params: dict[str, Any] = {"items": [1, 2], "inner": {"k": "v"}}
    task_id = new_task(ledger, params=params)
    params["items"].append(3)
    params["inner"]["k"] = "changed"
    read = record(ledger, task_id)
    assert read.params == {"items": [1, 2], "inner": {"k": "v"}}
    read.params["items"].append(4)
    assert record(ledger, task_id).params == {"items": [1, 2], "inner": {"k": "v"}}
    ledger.mark_started(task_id, worker="w1")
    result: dict[str, Any] = {"rows": [{"a": 1}]}
    ledger.finish(task_id, status="success", result=result)
    result["rows"].append({"b": 2})
    done = record(ledger, task_id)
    assert done.result == {"rows": [{"a": 1}]}
    assert done.result is not None
    done.result["rows"].clear()
    assert record(ledger, task_id).result == {"rows": [{"a": 1}]}


def test_params_and_results_come_back_as_json(ledger: Ledger) -> None:
    task_id = new_task(ledger, params={"pair": (1, 2), "n": 1.5, "none": None, "flag": True})
    assert record(ledger, task_id).params == {"pair": [1, 2], "n": 1.5, "none": None,
                                              "flag": True}
    ledger.mark_started(task_id, worker="w1")
    ledger.finish(task_id, status="success", result={"by_id": {7: "seven"}, "t": ("a",)})
    assert record(ledger, task_id).result == {"by_id": {"7": "seven"}, "t": ["a"]}


def test_params_that_are_not_json_are_rejected(ledger: Ledger) -> None:
    task_id = str(uuid.uuid4())
    refused = port_error(Rejected, lambda: ledger.create(
        task_id=task_id, task_type="t", task_name="tb.t", owner="alice",
        params={"when": dt.datetime(2001, 1, 1)}))
    assert isinstance(refused, ValueError) and "INSERT" not in str(refused)
    assert ledger.get(task_id) is None


def test_a_result_that_is_not_json_is_rejected(ledger: Ledger) -> None:
    task_id = started_task(ledger)
    before = record(ledger, task_id)
    refused = port_error(Rejected, lambda: ledger.finish(
        task_id, status="success", result={"day": dt.date(2001, 1, 1)}))
    assert "UPDATE" not in str(refused)
    assert record(ledger, task_id) == before


def test_a_record_written_in_one_thread_is_read_in_another(ledger: Ledger) -> None:
    made: list[str] = []
    writer = threading.Thread(target=lambda: made.append(new_task(ledger)))
    writer.start()
    writer.join(30)
    assert record(ledger, made[0]) == queued_record(made[0])
    starter = threading.Thread(target=lambda: ledger.mark_started(made[0], worker="w9"))
    starter.start()
    starter.join(30)
    assert (record(ledger, made[0]).status, record(ledger, made[0]).worker) == ("started", "w9")


def test_ping_passes_when_the_store_is_up(ledger: Ledger) -> None:
    assert ledger.ping() is None


def test_in_memory_sqlite_is_one_database_per_process() -> None:
    # build_app makes its ledger with ledger_for(url); the data plugin and tests take their
    # own from the same URL: all must see one database, from any thread
    first = SqlLedger.from_url("sqlite://")
    upgrade(first.engine)
    _empty(first)
    try:
        second = ledger_for("sqlite://")
        made: list[str] = []
        writer = threading.Thread(target=lambda: made.append(new_task(first)))
        writer.start()
        writer.join(30)
        assert record(second, made[0]) == queued_record(made[0])
        assert second.mark_started(made[0], worker="w1", now=at(1))
        assert record(first, made[0]).status == "started"
    finally:
        _empty(first)


# --- the history (the console) ---------------------------------------------------------------


def test_search_filters_sorts_pages_and_counts(ledger: Ledger) -> None:
    a1 = new_task(ledger, owner="alice", task_type="t", queued=1, idempotency_key="nightly-1")
    a2 = new_task(ledger, owner="alice", task_type="u", queued=2)
    b1 = new_task(ledger, owner="bob", task_type="t", queued=3)
    assert ledger.mark_started(a2, worker="w9", now=at(4))
    assert ledger.finish(a2, status="failure", error="ValueError: boom", now=at(5))

    def ids(**criteria: Any) -> tuple[list[str], int]:
        rows, total = ledger.search(TaskQuery(**criteria))
        return [r.id for r in rows], total

    assert ids() == ([b1, a2, a1], 3)  # newest first by default
    assert ids(descending=False) == ([a1, a2, b1], 3)
    assert ids(owner="alice") == ([a2, a1], 2)
    assert ids(task_types=("t",)) == ([b1, a1], 2)
    assert ids(statuses=("failure",)) == ([a2], 1)
    assert ids(since=at(2), until=at(3)) == ([a2], 1)
    assert ids(text="nightly") == ([a1], 1)
    assert ids(text=a2[:13]) == ([a2], 1)
    assert ids(text="%") == ([], 0)  # wildcards are literal
    assert ids(worker="w9") == ([a2], 1)
    assert ids(limit=1, offset=1) == ([a2], 3)
    assert ids(limit=1, count_limit=1) == ([b1], 2)  # "more than 1"
    assert ids(limit=1, count_limit=3) == ([b1], 3)
    assert ids(sort="owner", descending=False, limit=2) == ([a2, a1] if a2 < a1 else [a1, a2], 3)
    row = ledger.search(TaskQuery(statuses=("failure",)))[0][0]
    assert (row.task_type, row.owner, row.status, row.error, row.worker, row.attempts) == (
        "u", "alice", "failure", "ValueError: boom", "w9", 1)
    assert row.queued_at == at(2) and row.started_at == at(4) and row.completed_at == at(5)
    port_error(Rejected, lambda: ledger.search(TaskQuery(sort="params")))


def test_the_timeline_records_starts_messages_retries_and_cancels(ledger: Ledger) -> None:
    task_id = started_task(ledger, started=1, worker="w1")
    ledger.report_progress(task_id, 10, None)  # no message: not a timeline entry
    ledger.report_progress(task_id, 40, "loading")
    assert ledger.finish(task_id, status="retry", error="ConnectionError: db", now=at(3))
    assert ledger.mark_started(task_id, worker="w2", now=at(4))
    ledger.cancel(task_id, by="carol", now=at(5))
    events = ledger.events(task_id)
    assert [(e.kind, e.progress, e.message, e.actor) for e in events] == [
        ("started", None, None, "w1"), ("progress", 40, "loading", None),
        ("retry", None, "ConnectionError: db", None), ("started", None, None, "w2"),
        ("revoked", None, None, "carol")]
    assert events[0].at == at(1) and events[-1].at == at(5)
    assert ledger.events(str(uuid.uuid4())) == []


def test_the_timeline_is_bounded(ledger: Ledger) -> None:
    task_id = started_task(ledger)
    for i in range(MAX_TASK_EVENTS + 20):
        ledger.report_progress(task_id, 50, f"item {i}")
    events = ledger.events(task_id)
    assert len(events) == MAX_TASK_EVENTS and events[-1].message == f"item {MAX_TASK_EVENTS - 2}"


def test_purge_removes_the_timeline_too(ledger: Ledger) -> None:
    task_id = started_task(ledger, started=1)
    ledger.report_progress(task_id, 50, "half")
    assert ledger.finish(task_id, status="success", result={}, now=at(2))
    assert ledger.purge(at(3)) == 1
    assert ledger.events(task_id) == []


def test_the_trace_id_of_the_start_is_kept(ledger: Ledger) -> None:
    traced = new_task(ledger, trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    assert record(ledger, traced).trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record(ledger, new_task(ledger)).trace_id is None


def test_retries_lists_the_tasks_that_retry_a_task(ledger: Ledger) -> None:
    first = new_task(ledger, owner="alice", queued=1)
    again = new_task(ledger, owner="alice", queued=2, retry_of=first)
    other = new_task(ledger, owner="admin", queued=3, retry_of=first)
    assert [r.id for r in ledger.retries(first)] == [again, other]
    assert [r.id for r in ledger.retries(first, owner="alice")] == [again]
    assert ledger.retries(again) == []


def test_every_change_and_only_a_change_is_notified(ledger: Ledger) -> None:
    seen: list[str] = []
    ledger.on_change = seen.append
    try:
        a = new_task(ledger)  # a new task: nobody waits for it yet
        assert seen == []
        assert ledger.mark_started(a, worker="w", now=at(1))
        ledger.report_progress(a, 50, "half")
        assert ledger.finish(a, status="success", result={}, now=at(2))
        b = new_task(ledger)
        ledger.cancel(b, by="carol")
        assert seen == [a, a, a, b]
        # writes that change nothing notify nothing
        assert not ledger.mark_started(a, worker="w")
        ledger.report_progress(a, 60, "late")
        assert not ledger.finish(a, status="failure", error="x")
        ledger.cancel(a)
        assert seen == [a, a, a, b]

        def broken(task_id: str) -> None:
            raise RuntimeError("the feed is down")

        ledger.on_change = broken  # a failing hook never fails the write
        c = new_task(ledger)
        assert ledger.mark_started(c, worker="w")
    finally:
        ledger.on_change = None


def test_a_shared_secret_is_made_once_and_kept(ledger: Ledger) -> None:
    key = ledger.shared_secret("console")
    assert len(key) == 32 and ledger.shared_secret("console") == key
    assert ledger.shared_secret("other") not in (key, b"")


def test_workers_report_themselves_and_leave(ledger: Ledger) -> None:
    assert ledger.workers() == []
    ledger.worker_seen("w1", pid=11, queues=["b", "a"], started_at=at(0), now=at(1))
    ledger.worker_seen("w2", pid=12, queues=["a"], started_at=at(0), now=at(2))
    ledger.worker_seen("w1", pid=11, queues=["a", "b"], started_at=at(0), now=at(3))
    rows = ledger.workers()
    assert [(w.name, w.pid, w.queues, w.seen_at) for w in rows] == [
        ("w1", 11, ["a", "b"], at(3)), ("w2", 12, ["a"], at(2))]
    ledger.worker_gone("w1")
    assert [w.name for w in ledger.workers()] == ["w2"]


# --- errors in the port's vocabulary ---------------------------------------------------------

_ID = "00000000-0000-4000-8000-000000000000"

#: one call of every method of the port
CALLS: dict[str, Callable[[Ledger], object]] = {
    "create": lambda led: led.create(task_id=_ID, task_type="t", task_name="tb.t",
                                     owner="alice", params={}),
    "by_idempotency_key": lambda led: led.by_idempotency_key("alice", "k"),
    "cancel": lambda led: led.cancel(_ID),
    "mark_started": lambda led: led.mark_started(_ID, worker="w"),
    "heartbeat": lambda led: led.heartbeat(_ID),
    "report_progress": lambda led: led.report_progress(_ID, 5, "m"),
    "is_cancel_requested": lambda led: led.is_cancel_requested(_ID),
    "finish": lambda led: led.finish(_ID, status="success", result={}),
    "mark_ended": lambda led: led.mark_ended(_ID),
    "get": lambda led: led.get(_ID),
    "list_active": lambda led: led.list_active(),
    "snapshots": lambda led: led.snapshots([_ID]),
    "count_active": lambda led: led.count_active("alice"),
    "active_counts": lambda led: led.active_counts(),
    "ids": lambda led: led.ids(["queued"]),
    "was_purged": lambda led: led.was_purged(_ID),
    "stale_started": lambda led: led.stale_started(at(0)),
    "reclaim_stale": lambda led: led.reclaim_stale(_ID, at(0), status="failure", error="e"),
    "quiet_retries": lambda led: led.quiet_retries(at(0)),
    "touch": lambda led: led.touch(_ID, unchanged_since=at(0)),
    "discard": lambda led: led.discard(_ID),
    "waiting": lambda led: led.waiting(at(0)),
    "abandon": lambda led: led.abandon(_ID, error="lost", unchanged_since=at(0)),
    "purge": lambda led: led.purge(at(0)),
    "purge_tombstones": lambda led: led.purge_tombstones(at(0)),
    "ping": lambda led: led.ping(),
    "search": lambda led: led.search(TaskQuery()),
    "events": lambda led: led.events(_ID),
    "retries": lambda led: led.retries(_ID),
    "worker_seen": lambda led: led.worker_seen("w", pid=1, queues=["q"], started_at=None),
    "worker_gone": lambda led: led.worker_gone("w"),
    "workers": lambda led: led.workers(),
    "shared_secret": lambda led: led.shared_secret("console"),
}

#: adapters that can be made unreachable
DOWN = ("memory", "sqlite-file", "postgresql")


def test_the_error_table_covers_every_method_of_the_port() -> None:
    assert set(CALLS) == set(Ledger.__abstractmethods__)


@pytest.fixture(params=DOWN)
def down(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Ledger, str]]:
    """A ledger whose store cannot be reached, and text its errors must not reveal."""
    if request.param == "memory":
        ledger = MemoryLedger()
        ledger.unavailable = True
        yield ledger, "unavailable-memory"
    elif request.param == "sqlite-file":
        volume = tmp_path / "volume"
        engine = engine_for(f"sqlite:///{volume / 'ledger.db'}")
        volume.rmdir()  # the database's directory went away (an unmounted volume)
        yield SqlLedger(engine), str(volume)
        engine.dispose()
    else:
        port = free_port()
        yield SqlLedger(engine_for(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")), \
            str(port)


@pytest.mark.parametrize("method", sorted(CALLS))
def test_every_method_raises_unavailable_when_the_store_is_down(
        down: tuple[Ledger, str], method: str) -> None:
    ledger, secret = down
    with pytest.raises(Unavailable) as raised:
        CALLS[method](ledger)
    assert isinstance(raised.value, ConnectionError)
    text = str(raised.value)
    assert secret not in text and "127.0.0.1" not in text
    assert not any(word in text for word in ("SELECT", "UPDATE", "INSERT", "DELETE"))


@pytest.mark.parametrize("adapter", ["postgresql"])
def test_constructing_on_an_unreachable_database_raises_unavailable(adapter: str) -> None:
    # making the ledger touches no database; migrating its schema is the first contact
    port = free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/x"
    ledger = ledger_for(url)
    refused = port_error(Unavailable, lambda: upgrade(engine_for(url)))
    assert str(port) not in str(refused)
    assert port_error(Unavailable, ledger.ping)


def test_postgresql_refuses_a_nul_character_with_rejected(contract_pg_url: str) -> None:
    ledger = SqlLedger.from_url(contract_pg_url)
    _empty(ledger)
    try:
        task_id = str(uuid.uuid4())
        with pytest.raises(Rejected) as raised:
            ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="al\x00ice",
                          params={})
        assert isinstance(raised.value, ValueError)
        assert "\x00" not in str(raised.value) and "INSERT" not in str(raised.value)
        assert ledger.get(task_id) is None
        running = started_task(ledger)
        before = record(ledger, running)
        with pytest.raises(Rejected):
            ledger.report_progress(running, 50, "half\x00way")
        with pytest.raises(Rejected):
            ledger.finish(running, status="failure", error="bad\x00byte")
        assert record(ledger, running) == before
    finally:
        _empty(ledger)


def test_run_seconds_are_the_latest_successes_of_a_type_newest_first(ledger: Ledger) -> None:
    runs = [(10, 12.5), (20, 21.0), (30, 37.0), (40, 40.25)]  # (started, completed), seconds
    for began, done in runs:
        task_id = started_task(ledger, started=began, queued=began - 1, task_type="t")
        assert ledger.finish(task_id, status="success", result={}, now=at(done))
    # neither failures, other types, unfinished tasks nor retries count
    failed = started_task(ledger, started=50, queued=49, task_type="t")
    assert ledger.finish(failed, status="failure", error="E: x", now=at(90))
    other = started_task(ledger, started=50, queued=49, task_type="u")
    assert ledger.finish(other, status="success", result={}, now=at(51))
    started_task(ledger, started=60, queued=59, task_type="t")
    assert ledger.run_seconds("t") == [0.25, 7.0, 1.0, 2.5]
    assert ledger.run_seconds("t", limit=2) == [0.25, 7.0]
    assert ledger.run_seconds("u") == [1.0] and ledger.run_seconds("none") == []


def test_a_retry_keeps_its_link_to_the_original(ledger: Ledger) -> None:
    original = new_task(ledger)
    retry = new_task(ledger, retry_of=original, queued=5)
    assert record(ledger, retry).retry_of == original
    assert record(ledger, original).retry_of is None
