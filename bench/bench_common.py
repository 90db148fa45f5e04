"""Shared pieces of the benchmark suite: the environment (Redis, PostgreSQL, workers), timing
helpers and the :class:`Figure` every benchmark returns.

Process management is reused from ``tests.support.procs``; every process started here is
stopped in a ``finally`` (see :func:`bench_environment` and :func:`running_worker`).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # tests.support and bench.* are imported from the repo root
    sys.path.insert(0, str(ROOT))

from taskbroker.app import App, build_app  # noqa: E402
from taskbroker.core.pipeline.principal import Principal  # noqa: E402
from taskbroker.core.settings import Settings  # noqa: E402
from tests.support.procs import (  # noqa: E402
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

__all__ = [
    "DOCKET_PYTHON",
    "DOCKET_TARGET",
    "LOG_DIR",
    "PARKED_PARAMS",
    "ROOT",
    "WAIT_CPU_TARGET_MS",
    "BenchEnv",
    "Figure",
    "bench_environment",
    "cpu_seconds",
    "docket_env",
    "interleaved",
    "ms",
    "p99",
    "rss_bytes",
    "running_worker",
    "tree_rss_bytes",
]

LOG_DIR = Path(tempfile.gettempdir()) / "taskbroker-bench-logs"

#: limits high enough that the rate limiter never refuses a benchmark call (it still runs)
BENCH_RATE_LIMITS = ("start: 1000000/minute; status: 1000000/minute; list: 1000000/minute; "
                     "cancel: 1000000/minute; list_types: 1000000/minute; "
                     "search: 1000000/minute; inspect: 1000000/minute; "
                     "workers: 1000000/minute")

#: the params of the parked tasks the MCP benchmarks start (their queue has no consumer)
PARKED_PARAMS = {"path": "/nonexistent/taskbroker-bench-marker"}
#: the fastmcp 4 venv `make test-deps` makes (FastMCP 4 + Docket, the second peer)
DOCKET_PYTHON = ROOT / ".cache" / "fastmcp-venv" / "bin" / "python"
#: taskbroker's server CPU per MCP call may be at most this share of FastMCP 4 + Docket's
DOCKET_TARGET = 0.8
#: a waiting client may cost the server at most this much CPU per second of waiting
WAIT_CPU_TARGET_MS = 1.0

#: the benchmark's callers: a plain user and an admin (who sees every task)
USER = Principal("bench", frozenset())
ADMIN = Principal("bench-admin", frozenset({"admin"}))


@dataclass
class Figure:
    """One row of the results table.

    ``median`` and ``p99`` are in ``unit``; ``baseline`` is the comparable figure measured
    in the same run (same unit), ``ratio`` is ``median / baseline`` unless given.
    """

    name: str
    median: float
    p99: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            self.ratio = self.median / self.baseline


def ms(seconds: float) -> float:
    """Seconds to milliseconds."""
    return seconds * 1000.0


def p99(samples: list[float]) -> float:
    """The 99th percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(0.99 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Wall time of ``n`` calls of ``fn``, one sample per call (seconds)."""
    samples: list[float] = []
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return samples


def interleaved(ours: Callable[[], Any], raw: Callable[[], Any], *, n: int, block: int = 50,
                warmup: int = 20) -> tuple[list[float], list[float]]:
    """Time ``ours`` and ``raw`` ``n`` times each in alternating blocks of ``block`` calls.

    Alternating blocks spreads machine noise (other people's test runs) over both sides, so
    the ratio of their medians is meaningful even when absolute numbers wander.
    """
    timed(ours, warmup)
    timed(raw, warmup)
    a: list[float] = []
    b: list[float] = []
    rounds = max(1, n // block)
    for _ in range(rounds):
        a += timed(ours, block)
        b += timed(raw, block)
    return a, b


def summary(samples: list[float]) -> tuple[float, float]:
    """(median, p99) of ``samples`` in milliseconds."""
    return ms(statistics.median(samples)), ms(p99(samples))


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of the turns' own ratios ``ours[i] / theirs[i]`` (turns where ``theirs``
    measured nothing left out; NaN when none is left)."""
    ratios = [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]
    return statistics.median(ratios) if ratios else float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (seconds, from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                kids += [int(x) for x in fh.read().split()]
    return kids


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, summed RSS of ``pid`` and all its descendants)."""
    own = rss_bytes(pid)
    total, stack, seen = 0, [pid], set()
    while stack and len(seen) < 10_000:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        with contextlib.suppress(OSError):
            total += rss_bytes(p)
        stack += _children(p)
    return own, total


@dataclass
class BenchEnv:
    """A private Redis, a fresh PostgreSQL database and a TaskService over them."""

    redis: Redis
    postgres: Postgres
    env: dict[str, str]
    settings: Settings
    app: App

    def worker_argv(self, *, queues: str, concurrency: int, pool: str = "prefork",
                    name: str = "bench") -> list[str]:
        """argv of a `taskbroker worker` for this environment."""
        return taskbroker_argv("worker", "--concurrency", str(concurrency), "--queues", queues,
                               "--pool", pool, "--hostname", f"{name}-{os.getpid()}@%h")


def docket_env(benv: BenchEnv) -> dict[str, str]:
    """Environment of the FastMCP 4 + Docket peer (no update check, no banner, quiet)."""
    return dict(benv.env, FASTMCP_CHECK_FOR_UPDATES="off", FASTMCP_SHOW_SERVER_BANNER="false",
                FASTMCP_LOG_LEVEL="WARNING")


def _settings_from_env(env: dict[str, str]) -> Settings:
    values = {k[len("TASKBROKER_"):].lower(): v for k, v in env.items()
              if k.startswith("TASKBROKER_")}
    return Settings(**values)


@contextlib.contextmanager
def bench_environment() -> Iterator[BenchEnv]:
    """Start Redis and create a PostgreSQL database; stop and drop them on exit."""
    redis = start_redis()
    postgres: Postgres | None = None
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed in finally
    try:
        postgres = create_postgres_database()
        env = base_env(
            TASKBROKER_REDIS_URL=redis.url,
            TASKBROKER_DATABASE_URL=postgres.url,
            TASKBROKER_RATE_LIMITS=BENCH_RATE_LIMITS,
            TASKBROKER_MAX_ACTIVE_PER_USER="0",
            TASKBROKER_HTTP_AUTH="none",
            TASKBROKER_LOG_LEVEL=os.environ.get("TASKBROKER_BENCH_LOG_LEVEL", "INFO"),
            TASKBROKER_WORKER_METRICS_PORT="0",
        )
        settings = _settings_from_env(env)
        # like a server: one JSON line per operation at the production default level (INFO),
        # written to /dev/null so the table stays readable
        from taskbroker.observability.logging import configure_logging

        configure_logging(settings, stream=devnull)
        app = build_app(settings)
        yield BenchEnv(redis, postgres, env, settings, app)
    finally:
        with contextlib.suppress(Exception):
            from taskbroker.adapters.sql.engine import dispose_engines

            dispose_engines()
        if postgres is not None:
            postgres.stop()
        redis.stop()
        devnull.close()


@contextlib.contextmanager
def running_worker(benv: BenchEnv, *, queues: str = "taskbroker", concurrency: int = 2,
                   pool: str = "prefork", name: str = "bench") -> Iterator[Proc]:
    """A `taskbroker worker`, ready to consume; stopped on exit whatever happens."""
    proc = start_process(benv.worker_argv(queues=queues, concurrency=concurrency, pool=pool,
                                          name=name),
                         env=benv.env, name=f"worker-{name}", log_dir=LOG_DIR)
    try:
        def up() -> bool:
            if not proc.alive():
                raise RuntimeError(f"worker died at start:\n{proc.log()[-3000:]}")
            return bool(benv.app.celery.control.ping(timeout=0.5))

        wait_for(up, timeout=90, what="worker answers ping")
        yield proc
    finally:
        proc.stop()
