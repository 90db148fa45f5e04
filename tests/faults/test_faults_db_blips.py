"""Database blips: three pg_terminate_backend() rounds while idempotent tasks read the
database fail none of them (pre-ping in workers, a handler's connection error retried within
the type's budget, ledger writes retried)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest

from taskbroker.app import App, build_app, load_app_plugins
from taskbroker.core.pipeline.principal import Principal
from tests.conftest import settings_from_env, start_worker
from tests.support.procs import Postgres, Proc, wait_for

USER = Principal("blip-user", frozenset())
TASKS = 40
BLIPS = 3


@pytest.fixture
def blip_worker(fault_env: dict[str, str]) -> Iterator[Proc]:
    proc = start_worker(fault_env, name="blips", concurrency=2)
    try:
        yield proc
    finally:
        proc.stop()


def _terminate_backends(postgres: Postgres) -> int:
    """Kill every other connection to the test database (what a failover or restart does)."""
    dsn = postgres.admin_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (postgres.name,)).fetchone()
    return int(killed[0]) if killed else 0


def test_three_database_blips_fail_no_idempotent_task(
    fault_env: dict[str, str], blip_worker: Proc, postgres: Postgres
) -> None:
    settings = settings_from_env(fault_env)
    app: App = build_app(settings, plugins=load_app_plugins(settings))
    ids = [app.service.start(USER, "test_sql", {"times": 25, "pause_ms": 40}).task_id
           for _ in range(TASKS)]
    wait_for(lambda: app.ledger.get(ids[0]).status != "queued", timeout=60,
             what="the first task to start")
    killed = []
    for _ in range(BLIPS):
        time.sleep(1.5)
        killed.append(_terminate_backends(postgres))
    assert all(n > 0 for n in killed), f"each blip cut live connections: {killed}"
    wait_for(lambda: all(app.ledger.get(i).terminal for i in ids), timeout=300, interval=0.5,
             what="every task to finish")
    records = [app.ledger.get(i) for i in ids]
    failed = [(r.id, r.error) for r in records if r.status != "success"]
    retried = sum(1 for r in records if r.attempts > 1)
    print(f"{BLIPS} blips killed {killed} connections; {len(failed)} of {TASKS} tasks failed; "
          f"{retried} were retried")
    assert failed == []
    assert all(r.result == {"queries": 25} for r in records)
