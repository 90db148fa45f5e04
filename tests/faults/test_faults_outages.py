"""Broker and database outages: calls fail fast and clearly, nothing accepted is lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbroker.app import build_app, load_app_plugins
from taskbroker.core.pipeline.errors import BrokerUnavailable
from taskbroker.core.pipeline.principal import Principal
from tests.conftest import settings_from_env, start_worker
from tests.support.procs import Postgres, Redis, start_redis, wait_for
from tests.support.tcpproxy import TcpProxy

USER = Principal("outage-user", frozenset())
#: a hang guard, not a performance bound: a call that blocks this long is hung
HANG = 15.0


def call_with_guard(fn, *args, **kwargs):
    """Run ``fn`` in a thread; fail the test if it hangs. Returns (result, exception)."""
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(HANG)
    assert not t.is_alive(), f"{fn.__name__} hung during the outage"
    return box.get("result"), box.get("error")


@pytest.fixture
def own_redis() -> Iterator[Redis]:
    """A redis-server with appendonly persistence that the test may stop and restart."""
    server = start_redis(appendonly=True)
    try:
        yield server
    finally:
        server.stop()


def test_redis_restart(own_redis: Redis, dist_env: dict[str, str], tmp_path: Path) -> None:
    # messages a worker held unacknowledged when Redis went away come back after the
    # visibility timeout (its restore on connection loss cannot reach Redis either)
    env = dict(dist_env, TASKBROKER_REDIS_URL=own_redis.url, TASKBROKER_VISIBILITY_TIMEOUT="10")
    settings = settings_from_env(env)
    app = build_app(settings, plugins=load_app_plugins(settings))
    record = tmp_path / "done.log"
    worker = start_worker(env, name="redis-restart", concurrency=2)
    try:
        accepted = [app.service.start(USER, "test_idem", {"ms": 400, "record": str(record)})
                    for _ in range(12)]
        own_redis.stop()
        for _ in range(3):
            started = time.monotonic()
            _, err = call_with_guard(app.service.start, USER, "test_idem",
                                     {"ms": 1, "record": str(record)})
            assert isinstance(err, BrokerUnavailable), err
            assert isinstance(err, ConnectionError)
            assert "unavailable" in str(err)  # the rate limiter or the publish, both fail closed
            print(f"start during outage failed after {time.monotonic() - started:.3f} s")
        # no half-written record: the failed starts left nothing queued
        records, _ = app.ledger.list_active(owner=USER.user_id)
        assert {r.id for r in records} <= {a.task_id for a in accepted}
        own_redis.restart()
        wait_for(lambda: all(app.ledger.get(a.task_id).status == "success" for a in accepted),
                 timeout=180, interval=0.5, what="accepted tasks completed after restart")
        after = app.service.start(USER, "test_idem", {"ms": 1, "record": str(record)})
        wait_for(lambda: app.ledger.get(after.task_id).status == "success", timeout=120,
                 what="a new task after the restart")
    finally:
        worker.stop()
    done = record.read_text().split()
    assert {a.task_id for a in accepted} <= set(done)


def test_database_outage(dist_env: dict[str, str], postgres: Postgres, tmp_path: Path) -> None:
    proxy = TcpProxy("127.0.0.1", int(postgres.url.split(":")[-1].split("/")[0]))
    url = postgres.url.replace(postgres.url.split("@")[1].split("/")[0],
                               f"127.0.0.1:{proxy.port}")
    env = dict(dist_env, TASKBROKER_DATABASE_URL=url,
               TASKBROKER_REDIS_URL=dist_env["TASKBROKER_REDIS_URL"].rsplit("/", 1)[0] + "/2")
    settings = settings_from_env(env)
    app = build_app(settings, plugins=load_app_plugins(settings))
    record = tmp_path / "db.log"
    worker = start_worker(env, name="db-outage", concurrency=1)
    try:
        r = app.service.start(USER, "test_idem", {"ms": 3000, "record": str(record)})
        wait_for(lambda: app.ledger.get(r.task_id).status == "started", timeout=60,
                 what="task started")
        proxy.cut()
        for op in (lambda: app.service.status(USER, r.task_id),
                   lambda: app.service.start(USER, "test_idem", {"ms": 1, "record": "x"}),
                   lambda: app.service.list_active(USER)):
            _, err = call_with_guard(op)
            assert isinstance(err, ConnectionError), err
            assert "ledger database unavailable" in str(err)
        # the handler finishes while the database is away; the worker keeps its result
        wait_for(lambda: record.exists() and r.task_id in record.read_text(), timeout=60,
                 what="handler finished during the outage")
        time.sleep(1.0)  # let the worker hit the outage on its result write
        proxy.restore()
        rec = wait_for(lambda: (x := app.ledger.get(r.task_id)).status == "success" and x,
                       timeout=120, what="result written after the outage")
        assert rec.result == {"done": True}
    finally:
        worker.stop()
        proxy.close()


def test_starts_refused_during_a_ledger_outage_leave_nothing_in_the_broker(
    dist_env: dict[str, str], postgres: Postgres, redis_server: Redis
) -> None:
    """Retrying clients during a 15 s ledger outage: every start is refused, no message is
    left behind (the old publish-then-insert path left one per attempt, each holding a worker
    slot for 5 s after recovery), and the first real task after recovery starts at once."""
    import redis as redis_lib

    proxy = TcpProxy("127.0.0.1", int(postgres.url.split(":")[-1].split("/")[0]))
    url = postgres.url.replace(postgres.url.split("@")[1].split("/")[0],
                               f"127.0.0.1:{proxy.port}")
    broker_url = redis_server.url.rsplit("/", 1)[0] + "/3"
    env = dict(dist_env, TASKBROKER_DATABASE_URL=url, TASKBROKER_REDIS_URL=broker_url)
    settings = settings_from_env(env)
    app = build_app(settings, plugins=load_app_plugins(settings))
    queue = redis_lib.Redis.from_url(broker_url)
    queue.delete("taskbroker")
    worker = None
    try:
        proxy.cut()
        cut_at = time.monotonic()
        refused = 0
        while time.monotonic() - cut_at < 15:  # three clients retrying in turn
            for client in range(3):
                _, err = call_with_guard(app.service.start, Principal(f"retry-{client}"),
                                         "test_echo", {})
                assert isinstance(err, ConnectionError), err
                refused += 1
            time.sleep(0.2)
        assert refused >= 9
        assert queue.llen("taskbroker") == 0, "a refused start left its message in the broker"
        proxy.restore()
        worker = start_worker(env, name="after-outage", concurrency=1)
        restored = time.monotonic()
        first = wait_for(lambda: _start_or_none(app, USER), timeout=60,
                         what="a start accepted after the outage")
        rec = wait_for(lambda: (x := app.ledger.get(first.task_id)).status == "success" and x,
                       timeout=60, what="the first real task after the outage ran")
        assert rec.result == {"owner": USER.user_id}
        print(f"{refused} starts refused during the outage; first real task finished "
              f"{time.monotonic() - restored:.2f} s after the database came back "
              f"(worker start included)")
    finally:
        if worker is not None:
            worker.stop()
        proxy.close()


def _start_or_none(app, who):  # type: ignore[no-untyped-def]
    try:
        return app.service.start(who, "test_echo", {})
    except ConnectionError:
        return None
