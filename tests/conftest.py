"""Shared fixtures: real Redis, real PostgreSQL, real Celery workers, a TaskService over them."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
import uuid
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

#: every process the tests start inherits this marker; none may outlive the session
SESSION_MARKER = "TB_TEST_SESSION"
os.environ.setdefault(SESSION_MARKER, uuid.uuid4().hex)


def processes_of_this_session() -> list[tuple[int, str]]:
    """``(pid, command line)`` of live processes (not this one) carrying this session's
    marker."""
    needle = f"{SESSION_MARKER}={os.environ[SESSION_MARKER]}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append((int(entry.name), cmd.strip()))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a process a test started outlived it (after a short grace for
    processes still shutting down); the leftovers are killed and named."""
    deadline = time.monotonic() + float(os.environ.get("TB_TEST_LEAK_GRACE", "20"))
    left = processes_of_this_session()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = processes_of_this_session()
    if not left:
        return
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    names = "\n".join(f"  pid {pid}: {cmd[:200]}" for pid, cmd in left)
    session.config.get_terminal_writer().line(
        f"\nprocesses started by the tests outlived them (killed now):\n{names}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


@pytest.fixture
def private_redis() -> Iterator[Redis]:
    """A redis-server of the test's own, which it may stop or restart."""
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
