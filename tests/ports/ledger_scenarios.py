"""Threaded scenarios of the Ledger contract, run in the test process or in a child process.

Each scenario drives one ledger from several threads released together by a barrier and
returns a JSON-compatible summary that the contract test asserts on.  An adapter whose threads
can crash their process (see ``THREADS_IN_CHILD`` in ``test_ledger_contract.py``) runs them
in a child instead, so that a crash fails one test rather than killing the test session::

    python -m tests.ports.ledger_scenarios <database URL> <scenario name>

prints the summary as the last line of its output.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from taskbroker.core.ports import Ledger

__all__ = ["SCENARIOS", "THREADS"]

#: threads racing in each scenario
THREADS = 10
#: tasks (or idempotency keys) each scenario races on, one at a time
RACED_TASKS = 30
#: as many in a child process: a crash or a lost race there is a matter of chance, so give it
#: many chances
RACED_TASKS_IN_CHILD = 150

T = TypeVar("T")


def _race(items: Sequence[T], act: Callable[[int, int, T], None]) -> list[str]:
    """For each item in turn, release THREADS threads together to call ``act(thread, index,
    item)``; the errors, as text."""
    barrier = threading.Barrier(THREADS)
    errors: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        for n, item in enumerate(items):
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                with lock:
                    errors.append(f"thread {i}: the others never came")
                return
            try:
                act(i, n, item)
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    errors.extend(f"thread {t.name} still running" for t in threads if t.is_alive())
    return errors


def _new(ledger: Ledger) -> str:
    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="alice", params={})
    return task_id


def concurrent_idempotent_creates(ledger: Ledger, items: int = RACED_TASKS) -> dict[str, Any]:
    """THREADS starts at once with one idempotency key, for ``items`` keys: per key, exactly
    one create inserts (the service then publishes once) and every start gets the one record
    back."""
    keys = [f"key-{uuid.uuid4().hex}" for _ in range(items)]
    publishes = dict.fromkeys(keys, 0)  # creates that inserted: each would publish
    returned: dict[str, list[str]] = {key: [] for key in keys}
    lock = threading.Lock()

    def create(i: int, n: int, key: str) -> None:
        task_id = str(uuid.uuid4())
        existing = ledger.create(task_id=task_id, task_type="t", task_name="tb.t",
                                 owner="alice", params={"i": i}, idempotency_key=key)
        with lock:
            if existing is None:
                publishes[key] += 1
            returned[key].append(existing.id if existing is not None else task_id)

    errors = _race(keys, create)
    records: dict[str, int] = dict.fromkeys(keys, 0)
    for task_id in ledger.ids(("queued", "started", "retry", "success", "failure", "revoked")):
        record = ledger.get(task_id)
        if record is not None and record.idempotency_key in records:
            records[record.idempotency_key] += 1
    inconsistent = []
    for key in keys:
        holder = ledger.by_idempotency_key("alice", key)
        if not (publishes[key] == 1 and records[key] == 1 and holder is not None
                and returned[key] == [holder.id] * THREADS):
            inconsistent.append({"publishes": publishes[key], "records": records[key],
                                 "answers": len(returned[key]),
                                 "distinct": len(set(returned[key]))})
    return {"keys": len(keys), "inconsistent": inconsistent, "errors": errors}


def concurrent_starts(ledger: Ledger, items: int = RACED_TASKS) -> dict[str, Any]:
    """THREADS workers at once try to start a queued task, for ``items`` tasks: one may."""
    ids = [_new(ledger) for _ in range(items)]
    winners: dict[str, list[str]] = {task_id: [] for task_id in ids}
    lock = threading.Lock()

    def start(i: int, n: int, task_id: str) -> None:
        if ledger.mark_started(task_id, worker=f"w{i}"):
            with lock:
                winners[task_id].append(f"w{i}")

    errors = _race(ids, start)
    inconsistent = []
    for task_id in ids:
        record = ledger.get(task_id)
        won = winners[task_id]
        if not (len(won) == 1 and record is not None and record.status == "started"
                and record.attempts == 1 and record.worker == won[0]):
            inconsistent.append({"winners": won, "status": record.status if record else None,
                                 "attempts": record.attempts if record else None})
    return {"started": sum(1 for w in winners.values() if w), "inconsistent": inconsistent,
            "errors": errors}


def cancel_racing_finish(ledger: Ledger, items: int = RACED_TASKS) -> dict[str, Any]:
    """THREADS/2 cancels and THREADS/2 finishes at once on a started task, for ``items``
    tasks: each task must have exactly one winner, and end as its winner says."""
    ids = [_new(ledger) for _ in range(items)]
    for task_id in ids:
        ledger.mark_started(task_id, worker="w")
    wins: dict[str, list[str]] = {task_id: [] for task_id in ids}
    lock = threading.Lock()

    def race(i: int, n: int, task_id: str) -> None:
        if i % 2 == 0:
            won, how = ledger.cancel(task_id)[1], "cancel"
        else:
            won = ledger.finish(task_id, status="success", result={"n": n, "by": i})
            how = "finish"
        if won:
            with lock:
                wins[task_id].append(f"{how}:{i}")

    errors = _race(ids, race)
    inconsistent = []
    for n, task_id in enumerate(ids):
        record = ledger.get(task_id)
        winners = wins[task_id]
        status = record.status if record else None
        ok = len(winners) == 1 and record is not None and (
            (winners[0].startswith("cancel") and status == "revoked" and record.result is None)
            or (winners[0].startswith("finish") and status == "success"
                and record.result == {"n": n, "by": int(winners[0].split(":")[1])}))
        if not ok:
            inconsistent.append({"winners": winners, "status": status})
    return {"cancel_won": sum(w[0].startswith("cancel") for w in wins.values() if w),
            "finish_won": sum(w[0].startswith("finish") for w in wins.values() if w),
            "inconsistent": inconsistent, "errors": errors}


SCENARIOS: dict[str, Callable[[Ledger, int], dict[str, Any]]] = {
    "concurrent_idempotent_creates": concurrent_idempotent_creates,
    "concurrent_starts": concurrent_starts,
    "cancel_racing_finish": cancel_racing_finish,
}


def main(argv: list[str]) -> int:
    """Run one scenario on a fresh ledger for a database URL; print its summary."""
    from taskbroker.adapters.sql import engine_for
    from taskbroker.adapters.sql.migrate import upgrade
    from taskbroker.app import ledger_for

    url, name = argv
    upgrade(engine_for(url))
    print(json.dumps(SCENARIOS[name](ledger_for(url), RACED_TASKS_IN_CHILD)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
