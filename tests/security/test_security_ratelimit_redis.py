"""Rate limits and the active-task cap against the session's real Redis and PostgreSQL.

Each test uses fresh user ids, so counters never leak between tests (or test runs).  Limits
are per hour so "within the window" holds however slow the machine is.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskbroker.app import App, default_middleware
from taskbroker.core.pipeline.errors import RateLimited
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.service import TaskService
from tests.support.procs import base_env

CLIENTS = 50


def user(prefix: str, *roles: str) -> Principal:
    """A principal nobody else uses."""
    return Principal(f"{prefix}-{uuid.uuid4().hex[:8]}", frozenset(roles))


def service_with(app: App, **overrides: Any) -> TaskService:
    """A TaskService over the session's ledger and broker with other limit settings."""
    settings = app.settings.model_copy(update=overrides)
    return TaskService(app.plugins.registry, app.ledger, app.service.broker,
                       default_middleware(settings, app.plugins, app.ledger))


@pytest.fixture
def started(dist_app: App) -> Iterator[list[str]]:
    """Ids of tasks a test queued; revoked in the ledger afterwards (they never run: the
    'parked' queue has no consumer)."""
    ids: list[str] = []
    try:
        yield ids
    finally:
        for task_id in ids:
            dist_app.ledger.cancel(task_id)


def hammer(fn: Callable[[], Any], clients: int = CLIENTS) -> tuple[list[Any], list[RateLimited]]:
    """Run ``fn`` in ``clients`` threads released at once; return (results, denials)."""
    barrier = threading.Barrier(clients)
    admitted: list[Any] = []
    denied: list[RateLimited] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client() -> None:
        barrier.wait()
        try:
            result = fn()
        except RateLimited as exc:
            with lock:
                denied.append(exc)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                admitted.append(result)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    return admitted, denied


@pytest.mark.parametrize("strategy", ["moving-window", "sliding-window-counter", "fixed-window"])
def test_concurrent_clients_get_exactly_n(dist_app: App, strategy: str) -> None:
    limit = 7
    service = service_with(dist_app, rate_limits=f"list: {limit}/hour",
                           rate_limit_strategy=strategy)
    who = user("flood")
    admitted, denied = hammer(lambda: service.list_active(who))
    assert len(admitted) == limit
    assert len(denied) == CLIENTS - limit
    assert {d.limit for d in denied} == {f"{limit} per 1 hour"}
    assert all(0 < d.retry_after <= 3600 for d in denied)
    # another user is unaffected by the flood
    service.list_active(user("bystander"))


def test_concurrent_starts_queue_exactly_n(dist_app: App, started: list[str],
                                           tmp_path: Path) -> None:
    limit = 5
    service = service_with(dist_app, rate_limits=f"start: {limit}/hour", max_active_per_user=0)
    who = user("starter")
    admitted, denied = hammer(
        lambda: service.start(who, "test_parked", {"path": str(tmp_path / "never")}))
    started.extend(r.task_id for r in admitted)
    assert len(admitted) == limit and len(denied) == CLIENTS - limit
    assert dist_app.ledger.count_active(who.user_id) == limit


_PROCESS_SCRIPT = """
import pathlib, sys, time
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.errors import RateLimited
from taskbroker.core.pipeline.chain import Call
from taskbroker.core.pipeline.middleware.ratelimit import build_rate_limit_middleware
from taskbroker.core.settings import Settings

redis_url, user, go, calls = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), int(sys.argv[4])
mw = build_rate_limit_middleware(
    Settings(redis_url=redis_url, rate_limits="status: 11/hour"), None)
who = Principal(user, frozenset())
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
admitted = 0
for _ in range(calls):
    try:
        mw.before(Call("status", who, {}))
        admitted += 1
    except RateLimited:
        pass
print("admitted", admitted, flush=True)
"""


def test_two_processes_share_one_limit(dist_app: App, tmp_path: Path) -> None:
    go = tmp_path / "go"
    who = user("multi")
    env = base_env()
    procs = [
        subprocess.Popen([sys.executable, "-c", _PROCESS_SCRIPT, str(dist_app.settings.redis_url),
                          who.user_id, str(go), "25"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    try:
        for p in procs:  # both import and connect before either fires
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    counts = [int(out.split("admitted")[1]) for out in outputs]
    assert sum(counts) == 11, outputs


def test_active_cap_refuses_then_frees(dist_app: App, started: list[str], tmp_path: Path) -> None:
    service = service_with(dist_app, rate_limits="start: none", max_active_per_user=2)
    who = user("capped")
    params = {"path": str(tmp_path / "never")}
    for _ in range(2):
        started.append(service.start(who, "test_parked", params).task_id)
    with pytest.raises(RateLimited) as err:
        service.start(who, "test_parked", params)
    assert err.value.limit == "max_active_per_user=2"
    assert err.value.retry_after > 0
    assert "you have 2 queued or running tasks" in str(err.value)
    # someone else is not capped by this user's tasks
    started.append(service.start(user("other"), "test_parked", params).task_id)
    # canceling one frees a slot
    service.cancel(who, started[0])
    started.append(service.start(who, "test_parked", params).task_id)
    assert dist_app.ledger.count_active(who.user_id) == 2


def test_active_cap_holds_under_concurrent_starts(dist_app: App, started: list[str],
                                                  tmp_path: Path) -> None:
    cap = 3
    service = service_with(dist_app, rate_limits="start: none", max_active_per_user=cap)
    who = user("racer")
    admitted, denied = hammer(
        lambda: service.start(who, "test_parked", {"path": str(tmp_path / "never")}), clients=12)
    started.extend(r.task_id for r in admitted)
    assert len(admitted) == cap and len(denied) == 12 - cap
    assert {d.limit for d in denied} == {f"max_active_per_user={cap}"}
    assert dist_app.ledger.count_active(who.user_id) == cap
