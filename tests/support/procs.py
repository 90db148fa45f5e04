"""Start and stop real processes for tests: redis-server, PostgreSQL databases, workers,
servers.  Every helper returns a handle whose ``stop()`` is safe to call twice; fixtures call
it in ``finally`` so nothing outlives a failing test."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds.

    The timeout is a deadline for giving up, not a performance assertion.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the thing may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                       + (f" (last error: {last_exc!r})" if last_exc else ""))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


@dataclass
class Proc:
    """A started process (own session, so its children die with it) and its log file."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    name: str

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def log(self) -> str:
        """Everything the process wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
        """Signal the whole process group, wait, then SIGKILL what is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)

    def kill(self) -> None:
        """SIGKILL the main process only (children are left to their fate, like a crash)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)


def start_process(argv: list[str], *, env: dict[str, str], name: str, log_dir: Path,
                  stdin: int | None = subprocess.DEVNULL) -> Proc:
    """Start ``argv`` in its own session with output to ``log_dir/<name>-<n>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as out:
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=stdin, start_new_session=True, cwd=ROOT)
    return Proc(popen, log_path, name)


@dataclass
class Redis:
    """A private redis-server on a free port."""

    port: int
    proc: Proc
    dir: Path

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (SIGTERM: with appendonly it flushes)."""
        self.proc.stop()

    def restart(self) -> None:
        """Start the server again on the same port and data directory."""
        self.proc = _spawn_redis(self.port, self.dir, self.appendonly)

    appendonly: bool = False


def _spawn_redis(port: int, data_dir: Path, appendonly: bool) -> Proc:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "yes" if appendonly else "no", "--dir", str(data_dir),
            "--daemonize", "no"]
    proc = start_process(argv, env=dict(os.environ), name=f"redis-{port}", log_dir=data_dir)
    wait_for(lambda: port_open(port), timeout=20, what=f"redis-server on {port}")
    return proc


def start_redis(*, appendonly: bool = False, port: int | None = None) -> Redis:
    """Start a private redis-server (its data under a fresh temporary directory)."""
    data_dir = Path(tempfile.mkdtemp(prefix="tb-redis-"))
    port = port or free_port()
    proc = _spawn_redis(port, data_dir, appendonly)
    return Redis(port, proc, data_dir, appendonly)


@dataclass
class Postgres:
    """A PostgreSQL database created for this test session (dropped by :meth:`stop`)."""

    admin_url: str
    name: str
    own_cluster: Proc | None = None
    dirs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3) of the database."""
        return self.admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    @contextlib.contextmanager
    def scratch_database(self, prefix: str) -> Iterator[str]:
        """Another database on the same server (a module's or a suite's own): its URL,
        dropped on exit, after this process's engine for it closed its pooled connections."""
        import psycopg

        from taskbroker.adapters.sql.engine import engine_for

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.admin_url.rsplit("/", 1)[0] + f"/{name}"
        try:
            yield url
        finally:
            engine_for(url).dispose()
            self._drop(name)

    def stop(self) -> None:
        """Drop the database (and stop a cluster we started ourselves)."""
        self._drop(self.name)
        if self.own_cluster is not None:
            self.own_cluster.stop()

    def _admin_dsn(self) -> str:
        return self.admin_url.replace("postgresql+psycopg", "postgresql")

    def _drop(self, name: str) -> None:
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(self._admin_dsn(),
                                                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _own_postgres_cluster() -> tuple[str, Proc]:
    """Start a throwaway PostgreSQL cluster on a free port (when none runs on 5432)."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not bindirs:
        raise RuntimeError("no PostgreSQL on 127.0.0.1:5432 and no server binaries to start one")
    bindir = bindirs[-1]
    data = Path(tempfile.mkdtemp(prefix="tb-pg-"))
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)
    proc = start_process([*run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                          "-k", str(data), "-c", "listen_addresses=127.0.0.1"],
                         env=dict(os.environ), name="postgres", log_dir=Path(tempfile.gettempdir()))
    wait_for(lambda: port_open(port), timeout=30, what="own PostgreSQL")
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", proc


def create_postgres_database() -> Postgres:
    """A fresh database on 127.0.0.1:5432 (trust auth), or on a cluster we start."""
    import psycopg

    own: Proc | None = None
    admin = os.environ.get("TASKBROKER_TEST_PG_ADMIN_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    if not port_open(int(admin.rsplit(":", 1)[1].split("/")[0])):
        admin, own = _own_postgres_cluster()
    name = f"tb_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.replace("postgresql+psycopg", "postgresql"),
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Postgres(admin, name, own)


def base_env(**extra: str) -> dict[str, str]:
    """Environment for taskbroker subprocesses: test plugins importable, no stray settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TASKBROKER_", "OTEL_", "PROMETHEUS_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TASKBROKER_PLUGIN_MODULES"] = "tests.support.sample_plugin"
    env["TASKBROKER_BUILTIN_PLUGINS"] = "false"
    env["TASKBROKER_LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    # functional tests run many calls as one user; rate-limit tests set their own limits
    env["TASKBROKER_RATE_LIMITS"] = ("start: 100000/minute; status: 1000000/minute; "
                                     "cancel: 100000/minute; list: 100000/minute; "
                                     "list_types: 100000/minute; search: 100000/minute; "
                                     "inspect: 100000/minute; workers: 100000/minute")
    env["TASKBROKER_MAX_ACTIVE_PER_USER"] = "0"
    # functional tests open a session per call, many at once; the session tests set their own
    env["TASKBROKER_SESSION_RATE"] = "1000000/minute"
    env["TASKBROKER_SESSIONS_PER_USER"] = "1000"
    env["TASKBROKER_WORKER_METRICS_PORT"] = "0"  # tests that scrape a worker pick a port
    env.update(extra)
    return env


def taskbroker_argv(*args: str) -> list[str]:
    """argv running the taskbroker CLI with this interpreter."""
    return [sys.executable, "-m", "taskbroker", *args]


@contextlib.contextmanager
def running(proc: Proc) -> Iterator[Proc]:
    """Stop ``proc`` on exit, whatever happens."""
    try:
        yield proc
    finally:
        proc.stop()


@contextlib.contextmanager
def serving_http(env: dict[str, str], *, name: str, log_dir: Path) -> Iterator[int]:
    """`taskbroker serve` over HTTP without a worker of its own, up (``/healthz`` answers);
    yields its port and stops it on exit, whatever happens."""
    import httpx

    port = free_port()
    proc = start_process(taskbroker_argv("serve", "--port", str(port), "--no-worker"),
                         env=env, name=name, log_dir=log_dir)
    with running(proc):
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
                 timeout=60, what=f"{name} up")
        yield port
