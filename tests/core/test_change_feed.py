"""The Redis change feed with a real redis-server: a write in another thread (as a worker's
would be) wakes a waiter through pub/sub long before the fallback read; a quiet task costs no
reads; the subscription survives a Redis restart; deployments on other databases stay apart."""

from __future__ import annotations

import threading
import time
import uuid

import anyio

from taskbroker.adapters.memory import MemoryLedger
from taskbroker.adapters.redis.changes import ChangeFeed, ChangePublisher, channel_for
from taskbroker.core.waiting import TaskWatcher
from tests.support.procs import Redis


def _task(ledger: MemoryLedger) -> str:
    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type="t", task_name="tb.t", owner="u", params={})
    return task_id


def test_channels_are_per_database() -> None:
    assert channel_for("redis://h:6379/0") == "taskbroker:task-changes:0"
    assert channel_for("redis://h:6379/3") != channel_for("redis://h:6379/0")
    assert channel_for("redis://h:6379") == channel_for("redis://h:6379/0")


def test_a_write_elsewhere_wakes_the_waiter_through_pub_sub(private_redis: Redis) -> None:
    ledger = MemoryLedger()
    ledger.on_change = ChangePublisher(private_redis.url)
    task_id = _task(ledger)
    # the fallback read would come after 60 s: everything below is pub/sub
    watcher = TaskWatcher(ledger, changes=ChangeFeed(private_redis.url), fallback_interval=60,
                          batch_seconds=0.01, linger_seconds=0)
    seen: list[tuple[str, int]] = []

    def work() -> None:  # a worker thread writing to the ledger
        time.sleep(0.5)
        ledger.mark_started(task_id, worker="w")
        for pct in (30, 60):
            time.sleep(0.3)
            ledger.report_progress(task_id, pct, None)
        time.sleep(0.3)
        ledger.finish(task_id, status="success", result={})

    async def main() -> float:
        thread = threading.Thread(target=work)
        began = anyio.current_time()
        thread.start()
        with anyio.fail_after(30):
            async for snap in watcher.follow(task_id, timeout=30):
                seen.append((snap.status, snap.progress))
        thread.join()
        return anyio.current_time() - began

    took = anyio.run(main)
    assert seen == [("queued", 0), ("started", 0), ("started", 30), ("started", 60),
                    ("success", 100)]
    assert took < 10  # far from the 60 s fallback
    # the follower's own read, one at subscribing, then one per change
    assert watcher.reads <= 2 + 4


def test_the_subscription_survives_a_redis_restart(private_redis: Redis) -> None:
    ledger = MemoryLedger()
    task_id = _task(ledger)
    watcher = TaskWatcher(ledger, changes=ChangeFeed(private_redis.url), fallback_interval=60,
                          batch_seconds=0.01, linger_seconds=0)
    statuses: list[str] = []

    def outage_then_change() -> None:
        time.sleep(0.5)
        private_redis.stop()
        time.sleep(0.5)
        private_redis.restart()
        time.sleep(2.0)  # the feed reconnects within about a second
        ledger.on_change = ChangePublisher(private_redis.url)
        ledger.cancel(task_id)

    async def main() -> None:
        thread = threading.Thread(target=outage_then_change)
        thread.start()
        with anyio.fail_after(30):
            async for snap in watcher.follow(task_id, timeout=30):
                statuses.append(snap.status)
        thread.join()

    anyio.run(main)
    assert statuses == ["queued", "revoked"]


def test_a_publisher_without_redis_drops_the_notification_quickly() -> None:
    from tests.support.procs import free_port

    publish = ChangePublisher(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    began = time.monotonic()
    publish("some-task")  # nothing listens, nothing raised
    assert time.monotonic() - began < 2
