"""Lost broker messages, with a real Redis: tasks queued on a Redis without persistence survive
its restart (the reaper publishes their messages again), and ten thousand tasks waiting behind
no worker are left alone (their messages are in the broker)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_lib

from taskbroker.app import App, build_app, build_reaper, load_app_plugins
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.ports import utcnow
from tests.conftest import settings_from_env, start_worker
from tests.support.procs import Postgres, Redis, start_redis, wait_for

USER = Principal("lost-user", frozenset())


@pytest.fixture
def volatile_redis() -> Iterator[Redis]:
    """A redis-server without persistence (the chart's built-in Redis used to run so)."""
    server = start_redis(appendonly=False)
    try:
        yield server
    finally:
        server.stop()


def _app(env: dict[str, str]) -> App:
    settings = settings_from_env(env)
    return build_app(settings, plugins=load_app_plugins(settings))


def test_tasks_queued_on_a_redis_that_restarts_empty_all_run(
    dist_env: dict[str, str], volatile_redis: Redis
) -> None:
    env = dict(dist_env, TASKBROKER_REDIS_URL=volatile_redis.url,
               TASKBROKER_LOST_MESSAGE_AFTER="2", TASKBROKER_REAPER_INTERVAL="0.5")
    app = _app(env)
    ids = [app.service.start(USER, "test_echo", {}).task_id for _ in range(20)]
    volatile_redis.stop()
    volatile_redis.restart()  # empty: every queued message is gone
    assert redis_lib.Redis.from_url(volatile_redis.url).llen("taskbroker") == 0
    app = _app(env)  # fresh connections to the restarted server
    reaper = build_reaper(app)
    reaper.start()
    worker = start_worker(env, name="lost-messages", concurrency=2)
    try:
        started = time.monotonic()
        wait_for(lambda: all(app.ledger.get(i).status == "success" for i in ids), timeout=120,
                 interval=0.5, what="every task queued before the restart to run")
        print(f"{len(ids)} tasks recovered {time.monotonic() - started:.1f} s after the "
              f"restart (lost_message_after=2 s)")
    finally:
        reaper.stop()
        worker.stop()
    assert all(app.ledger.get(i).result == {"owner": USER.user_id} for i in ids)


QUEUED = 10_000


def test_ten_thousand_waiting_tasks_are_not_published_again(
    dist_env: dict[str, str], redis_server: Redis, postgres: Postgres
) -> None:
    broker_url = redis_server.url.rsplit("/", 1)[0] + "/4"
    # a database of its own: the ten thousand queued records are dropped with it, not
    # canceled one by one (which took as long as the test itself)
    with postgres.scratch_database("tb_lost") as database_url:
        _ten_thousand_waiting(dict(dist_env, TASKBROKER_REDIS_URL=broker_url,
                                   TASKBROKER_DATABASE_URL=database_url,
                                   TASKBROKER_LOST_MESSAGE_AFTER="1"), broker_url)


def _ten_thousand_waiting(env: dict[str, str], broker_url: str) -> None:
    app = _app(env)
    client = redis_lib.Redis.from_url(broker_url)
    client.flushdb()
    task_type = app.plugins.registry.get("test_echo")
    for _ in range(QUEUED):  # what TaskService.start does, minus the chain (for speed)
        task_id = str(uuid.uuid4())
        app.ledger.create(task_id=task_id, task_type="test_echo", task_name=task_type.celery_name,
                          owner=USER.user_id, params={})
        app.broker.publish(task_type, task_id, {}, owner=USER.user_id, roles=frozenset())
    assert client.llen("taskbroker") == QUEUED
    reaper = build_reaper(app)
    later = utcnow() + dt.timedelta(seconds=5)
    scanned = time.monotonic()
    reports = [reaper.run_once(later + dt.timedelta(seconds=i)) for i in range(3)]
    print(f"3 reaper passes over {QUEUED} waiting tasks took {time.monotonic() - scanned:.2f} s")
    assert [r.recovered for r in reports] == [0, 0, 0]
    assert client.llen("taskbroker") == QUEUED, "nothing was published again"
    client.flushdb()
