"""Shared fixtures: real Redis, real PostgreSQL, real Celery workers, a TaskService over them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskbroker.app import App, build_app, load_app_plugins
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from tests.support.procs import (
    Postgres,
    Proc,
    Redis,
    base_env,
    create_postgres_database,
    start_process,
    start_redis,
    taskbroker_argv,
    wait_for,
)

LOG_DIR = Path(tempfile.gettempdir()) / "taskbroker-test-logs"


@pytest.fixture(autouse=True)
def _schedule_data_follows_the_environment() -> Iterator[None]:
    """Building an app points the schedule data at its settings' database (the data plugin's
    configure hook); each test starts from the environment's again."""
    from taskbroker.plugins.data import configure_database

    configure_database(None)
    yield
    configure_database(None)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A private redis-server for the session."""
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A fresh PostgreSQL database for the session (127.0.0.1:5432, or a cluster we start)."""
    db = create_postgres_database()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(scope="session")
def dist_env(redis_server: Redis, postgres: Postgres) -> dict[str, str]:
    """Environment of distributed-mode processes (Redis broker, PostgreSQL ledger)."""
    return base_env(
        TASKBROKER_REDIS_URL=redis_server.url,
        TASKBROKER_DATABASE_URL=postgres.url,
        TASKBROKER_CANCEL_GRACE_SECONDS="2",
        TASKBROKER_HEARTBEAT_INTERVAL="1",
    )


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings built from a subprocess environment (so test and workers agree)."""
    values = {k[len("TASKBROKER_"):].lower(): v for k, v in env.items()
              if k.startswith("TASKBROKER_")}
    return Settings(**values)


@pytest.fixture(scope="session")
def dist_settings(dist_env: dict[str, str]) -> Settings:
    """The distributed settings as the test process sees them."""
    return settings_from_env(dist_env)


def start_worker(env: dict[str, str], *, name: str = "worker", queues: str = "taskbroker",
                 concurrency: int = 2) -> Proc:
    """A real `taskbroker worker` process; returns once it is ready to consume."""
    argv = taskbroker_argv("worker", "--concurrency", str(concurrency), "--hostname",
                           f"{name}-{id(env) % 10_000}@%h")
    if queues:
        argv += ["--queues", queues]
    proc = start_process(argv, env=env, name=name, log_dir=LOG_DIR)
    try:
        wait_for(lambda: "ready" in proc.log() or not proc.alive(), timeout=60,
                 what="worker ready")
        if not proc.alive():
            raise RuntimeError(f"worker died at start:\n{proc.log()[-3000:]}")
    except BaseException:
        proc.stop()
        raise
    return proc


@pytest.fixture(scope="session")
def worker(dist_env: dict[str, str]) -> Iterator[Proc]:
    """One worker (2 prefork children) consuming the default queue, for the session."""
    proc = start_worker(dist_env)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def dist_app(dist_settings: Settings) -> App:
    """A TaskService in the test process over the session's Redis and PostgreSQL."""
    return build_app(dist_settings, plugins=load_app_plugins(dist_settings))


@pytest.fixture
def alice() -> Principal:
    """A plain user."""
    return Principal("alice", frozenset())


@pytest.fixture
def bob() -> Principal:
    """Another plain user."""
    return Principal("bob", frozenset())


@pytest.fixture
def admin() -> Principal:
    """An admin."""
    return Principal("root", frozenset({"admin"}))
