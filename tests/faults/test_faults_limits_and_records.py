"""Time limits, idempotency under races, expiry and retention of task records."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
import redis

from taskbroker.app import App
from taskbroker.core.pipeline.errors import TaskNotFound
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.ports import utcnow
from taskbroker.core.reaper import Reaper
from tests.support.procs import Redis, wait_for

USER = Principal("limits-user", frozenset())
pytestmark = pytest.mark.usefixtures("worker")


def test_soft_time_limit_fails_clearly_after_cleanup(dist_app: App, tmp_path: Path) -> None:
    cleanup = tmp_path / "cleanup"
    r = dist_app.service.start(USER, "test_soft_limit", {"seconds": 30, "cleanup": str(cleanup)})
    s = wait_for(lambda: (x := dist_app.service.status(USER, r.task_id)).status == "failure"
                 and x, timeout=60, what="soft limit failure")
    assert s.error == "time limit exceeded: soft limit of 1 s"
    assert cleanup.read_text() == "cleaned up"
    assert dist_app.ledger.get(r.task_id).attempts == 1, "a time limit is not retried"


def test_hard_time_limit_kills_and_still_ends_terminal(dist_app: App) -> None:
    r = dist_app.service.start(USER, "test_hard_limit", {"seconds": 60})
    s = wait_for(lambda: (x := dist_app.service.status(USER, r.task_id)).status == "failure"
                 and x, timeout=60, what="hard limit failure")
    assert s.error == "time limit exceeded: hard limit of 3 s, process killed"
    # the pool replaced the killed process
    ok = dist_app.service.start(USER, "test_count", {"n": 2, "step_ms": 0})
    wait_for(lambda: dist_app.service.status(USER, ok.task_id).status == "success", timeout=60,
             what="worker still serving")


def test_twenty_racers_one_idempotency_key(dist_app: App) -> None:
    barrier = threading.Barrier(20)
    ids: list[str] = []
    errors: list[BaseException] = []
    key = f"race-{utcnow().timestamp()}"

    def racer() -> None:
        try:
            barrier.wait(10)
            ids.append(dist_app.service.start(USER, "test_count", {"n": 1, "step_ms": 0},
                                              idempotency_key=key).task_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=racer) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(ids) == 20 and len(set(ids)) == 1
    from sqlalchemy import func, select

    from taskbroker.adapters.sql.tables import tasks

    with dist_app.ledger.engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(tasks)
                         .where(tasks.c.idempotency_key == key)).scalar_one()
    assert n == 1


def test_results_do_not_depend_on_celery_results(dist_app: App, redis_server: Redis) -> None:
    r = dist_app.service.start(USER, "test_count", {"n": 3, "step_ms": 0})
    wait_for(lambda: dist_app.service.status(USER, r.task_id).status == "success", timeout=60,
             what="success")
    client = redis.Redis.from_url(redis_server.url)
    # Celery stores no result for our tasks (the ledger does), so its result expiry
    # (result_expires) cannot take a result away, and the server subscribes to nothing
    assert not client.exists(f"celery-task-meta-{r.task_id}")
    assert client.pubsub_channels(f"celery-task-meta-{r.task_id}") == []
    s = dist_app.service.status(USER, r.task_id)
    assert s.status == "success" and s.result == {"sum": 6, "steps": 3}


def test_retention_purges_to_expired_then_unknown(dist_app: App) -> None:
    r = dist_app.service.start(USER, "test_count", {"n": 1, "step_ms": 0})
    wait_for(lambda: dist_app.service.status(USER, r.task_id).status == "success", timeout=60,
             what="success")
    reaper = Reaper(dist_app.ledger, dist_app.service.broker, dist_app.plugins.registry,
                    stale_after=60, interval=60, retention_days=30, tombstone_days=7)
    reaper.run_once(now=utcnow() + dt.timedelta(days=29))
    assert dist_app.service.status(USER, r.task_id).status == "success", "kept within retention"
    report = reaper.run_once(now=utcnow() + dt.timedelta(days=31))
    assert report.purged >= 1
    s = dist_app.service.status(USER, r.task_id)
    assert s.status == "expired" and "purged" in s.error
    other = Principal("someone-else", frozenset())
    with pytest.raises(TaskNotFound):  # no existence oracle for other users
        dist_app.service.status(other, r.task_id)
    reaper.run_once(now=utcnow() + dt.timedelta(days=31 + 8))
    with pytest.raises(TaskNotFound):
        dist_app.service.status(USER, r.task_id)
