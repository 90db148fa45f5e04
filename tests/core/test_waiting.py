"""The shared task watcher: every waiter is woken by one ledger read per interval, however
many wait; changes arrive in order; the terminal state ends the wait; nobody waiting, nothing
read."""

from __future__ import annotations

import uuid

import anyio

from taskbroker.adapters.memory import MemoryLedger
from taskbroker.core.waiting import TaskWatcher

INTERVAL = 0.02


def _task(ledger: MemoryLedger) -> str:
    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="u", params={})
    return task_id


def test_a_follower_sees_every_change_in_order_and_the_terminal_state() -> None:
    ledger = MemoryLedger()
    task_id = _task(ledger)
    watcher = TaskWatcher(ledger, interval=INTERVAL)
    seen: list[tuple[str, int]] = []

    async def main() -> None:
        async def worker() -> None:
            await anyio.sleep(5 * INTERVAL)
            ledger.mark_started(task_id, worker="w")
            for pct in (25, 50, 75):
                await anyio.sleep(5 * INTERVAL)
                ledger.report_progress(task_id, pct, f"at {pct}")
            await anyio.sleep(5 * INTERVAL)
            ledger.finish(task_id, status="success", result={"ok": True})

        async with anyio.create_task_group() as group:
            group.start_soon(worker)
            async for snap in watcher.follow(task_id, timeout=30):
                seen.append((snap.status, snap.progress))

    anyio.run(main)
    assert seen == [("queued", 0), ("started", 0), ("started", 25), ("started", 50),
                    ("started", 75), ("success", 100)]
    assert watcher.watching == 0


def test_many_waiters_cost_one_read_per_interval() -> None:
    ledger = MemoryLedger()
    ids = [_task(ledger) for _ in range(200)]
    watcher = TaskWatcher(ledger, interval=INTERVAL)
    ends: list[str] = []

    async def main() -> None:
        async def wait(task_id: str) -> None:
            last = None
            async for snap in watcher.follow(task_id, timeout=30):
                last = snap.status
            ends.append(last or "none")

        async with anyio.create_task_group() as group:
            for task_id in ids:
                group.start_soon(wait, task_id)
            await anyio.sleep(10 * INTERVAL)
            assert watcher.watching == 200
            before = watcher.reads
            await anyio.sleep(20 * INTERVAL)
            during = watcher.reads - before
            # one read per interval for all 200 (a slack of a few for scheduling)
            assert 5 <= during <= 25, during
            for task_id in ids:
                ledger.cancel(task_id)

    anyio.run(main)
    assert ends == ["revoked"] * 200
    # the 200 first reads (one per follower joining) plus the shared ones, not 200 per interval
    assert watcher.reads < 200 + 60


def test_the_wait_ends_at_its_deadline_and_an_unknown_task_yields_nothing() -> None:
    ledger = MemoryLedger()
    task_id = _task(ledger)
    watcher = TaskWatcher(ledger, interval=INTERVAL)

    async def main() -> tuple[list[str], list[str], float]:
        began = anyio.current_time()
        queued = [s.status async for s in watcher.follow(task_id, timeout=5 * INTERVAL)]
        took = anyio.current_time() - began
        unknown = [s.status async for s in watcher.follow(str(uuid.uuid4()), timeout=1)]
        return queued, unknown, took

    queued, unknown, took = anyio.run(main)
    assert queued == ["queued"] and unknown == []
    assert took < 10  # a give-up bound: it returned at its deadline, not when the task ended
    reads = watcher.reads
    anyio.run(anyio.sleep, 10 * INTERVAL)
    assert watcher.reads == reads, "nobody waits: nothing is read"
