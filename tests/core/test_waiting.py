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


class _FeedForTests:
    """A change source fed by the ledger's on_change hook, in this event loop (a stand-in for
    Redis pub/sub; tests/core/test_change_feed.py runs the real one)."""

    def __init__(self, ledger: MemoryLedger) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[str](1000)
        ledger.on_change = self.send.send_nowait
        self.subscriptions = 0

    async def listen(self):  # type: ignore[no-untyped-def]
        self.subscriptions += 1
        yield None
        async for task_id in self.receive:
            yield task_id


def test_with_a_feed_a_quiet_task_costs_no_reads_and_a_change_one() -> None:
    ledger = MemoryLedger()
    ids = [_task(ledger) for _ in range(200)]
    feed = _FeedForTests(ledger)
    watcher = TaskWatcher(ledger, changes=feed, fallback_interval=60, batch_seconds=0.01,
                          linger_seconds=0)
    seen: dict[str, list[str]] = {i: [] for i in ids}

    async def main() -> None:
        async def wait(task_id: str) -> None:
            async for snap in watcher.follow(task_id, timeout=30):
                seen[task_id].append(snap.status)

        async with anyio.create_task_group() as group:
            for task_id in ids:
                group.start_soon(wait, task_id)
            # settled: each follower's first read and the subscription's are done (a fixed
            # 0.2 s was not always enough on a loaded 2-core machine: the subscription's read
            # then landed inside the quiet window below)
            with anyio.fail_after(30):
                while not (all(seen.values()) and watcher.reads >= len(ids) + 1):
                    await anyio.sleep(0.01)
            settled = watcher.reads
            await anyio.sleep(0.5)
            assert watcher.reads == settled  # nothing changed: nothing read
            ledger.mark_started(ids[0], worker="w")
            await anyio.sleep(0.2)
            assert watcher.reads == settled + 1 and seen[ids[0]] == ["queued", "started"]
            for task_id in ids:
                ledger.cancel(task_id)

    anyio.run(main)
    assert all(s[-1] == "revoked" for s in seen.values())
    assert feed.subscriptions == 1
    assert watcher.reads <= 200 + 1 + 1 + 200  # cancels batched into few reads


def test_with_a_feed_a_lost_notification_is_caught_by_the_fallback_read() -> None:
    ledger = MemoryLedger()
    task_id = _task(ledger)
    feed = _FeedForTests(ledger)
    watcher = TaskWatcher(ledger, changes=feed, fallback_interval=0.3, linger_seconds=0)
    statuses: list[str] = []

    async def main() -> None:
        async def change_silently() -> None:
            await anyio.sleep(0.1)
            ledger.on_change = None  # the notification is lost
            ledger.cancel(task_id)

        async with anyio.create_task_group() as group:
            group.start_soon(change_silently)
            with anyio.fail_after(5):
                async for snap in watcher.follow(task_id, timeout=30):
                    statuses.append(snap.status)

    anyio.run(main)
    assert statuses == ["queued", "revoked"]


def test_a_follower_busy_between_changes_still_gets_the_last_one() -> None:
    """A follower that is away (sending a notification, pausing) when the task ends must
    still be given the terminal state: the shared loop read it meanwhile, and nothing will
    wake the follower again (a task never changes after it ends)."""
    ledger = MemoryLedger()
    task_id = _task(ledger)
    watcher = TaskWatcher(ledger, interval=INTERVAL)
    seen: list[str] = []

    async def main() -> None:
        async def other() -> None:  # keeps the shared read loop running meanwhile
            async for _ in watcher.follow(task_id, timeout=30):
                pass

        async with anyio.create_task_group() as group:
            group.start_soon(other)
            await anyio.sleep(3 * INTERVAL)
            with anyio.fail_after(10):
                async for snap in watcher.follow(task_id, timeout=30):
                    seen.append(snap.status)
                    if snap.status == "queued":
                        ledger.mark_started(task_id, worker="w")
                        ledger.finish(task_id, status="success", result={"ok": True})
                        await anyio.sleep(10 * INTERVAL)  # away while the loop reads it

    anyio.run(main)
    assert seen == ["queued", "success"]
