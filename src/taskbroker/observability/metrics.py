"""Prometheus metrics of the server and workers: definitions, labels and exposition.

Server metrics (``taskbroker_operations_total`` ...) live in the default registry and are
created at import.  Worker metrics are created on first use by :func:`worker_metrics`, after
the worker has switched prometheus_client to multiprocess mode (see README.md), so that the
values prefork children write end up in files the worker's main process can sum.

Labels stay low-cardinality: operation, task_type, outcome, state -- never a task or user id.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from taskbroker.core.pipeline.chain import OPERATIONS
from taskbroker.core.ports import ACTIVE

if TYPE_CHECKING:
    from taskbroker.core.ports import Ledger
    from taskbroker.core.reaper import ReapReport

__all__ = [
    "ACTIVE_STATES",
    "NO_TASK_TYPE",
    "TASK_STATES",
    "UNKNOWN_TASK_TYPE",
    "ActiveTasksCollector",
    "WorkerMetrics",
    "enable_multiprocess",
    "multiprocess_dir",
    "operation_duration",
    "operations_total",
    "rate_limit_denials",
    "reaper_actions",
    "record_reap",
    "register_active_tasks",
    "render_metrics",
    "worker_metrics",
]

log = logging.getLogger("taskbroker.observability")

#: task_type label of names no registered task type has (bounded cardinality)
UNKNOWN_TASK_TYPE = "unknown"
#: task_type label of operations that concern no task type (list_types, list without filter)
NO_TASK_TYPE = "none"
#: the ``state`` values of ``taskbroker_tasks_total``
TASK_STATES = ("started", "succeeded", "failed", "revoked", "retried")
#: the ledger states ``taskbroker_active_tasks`` reports
ACTIVE_STATES = ACTIVE

#: latency buckets of operations (seconds): most calls take milliseconds
OPERATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0)
#: buckets of task runtime and queue wait (seconds): tasks run seconds to hours
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                600.0, 1800.0, 3600.0, 10800.0)

operations_total = Counter(
    "taskbroker_operations_total", "Operations by outcome (ok, invalid, denied, rate_limited, "
    "not_found, unavailable, error).", ["operation", "task_type", "outcome"],
)
operation_duration = Histogram(
    "taskbroker_operation_duration_seconds", "Time an operation took, middleware included.",
    ["operation", "task_type"], buckets=OPERATION_BUCKETS,
)
rate_limit_denials = Counter(
    "taskbroker_rate_limit_denials_total", "Operations refused by the rate limiter.",
    ["operation"],
)
reaper_actions = Counter(
    "taskbroker_reaper_actions_total",
    "What the ledger reaper did: requeued/failed stale tasks (worker lost), recovered/abandoned "
    "queued tasks whose broker message was lost, purged records.", ["action"],
)
REAPER_ACTIONS = ("requeued", "failed", "recovered", "abandoned", "purged")
for _action in REAPER_ACTIONS:
    reaper_actions.labels(_action)


def record_reap(report: ReapReport) -> None:
    """Count what one reaper pass did (the reaper's ``on_report``)."""
    for action in REAPER_ACTIONS:
        count = getattr(report, action)
        if count:
            reaper_actions.labels(action).inc(count)


for _op in OPERATIONS:  # present at 0 from the start, so rate() and ratios have a series
    rate_limit_denials.labels(_op)


# --- worker metrics (created after the multiprocess switch) ------------------------------


@dataclass(frozen=True)
class WorkerMetrics:
    """The metrics a worker's signal handlers update."""

    registry: CollectorRegistry
    tasks: Counter
    runtime: Histogram
    queue_wait: Histogram


@functools.cache
def worker_metrics() -> WorkerMetrics:
    """The worker metrics, created on first use (in the worker's own registry)."""
    registry = CollectorRegistry(auto_describe=True)
    return WorkerMetrics(
        registry=registry,
        tasks=Counter("taskbroker_tasks_total", "Task executions by state (started, succeeded, "
                      "failed, revoked, retried).", ["task_type", "state"], registry=registry),
        runtime=Histogram("taskbroker_task_runtime_seconds", "Time a task's execution took.",
                          ["task_type"], buckets=TASK_BUCKETS, registry=registry),
        queue_wait=Histogram("taskbroker_task_queue_wait_seconds", "Time from publish (or ETA) "
                             "until a worker began the task.", ["task_type"],
                             buckets=TASK_BUCKETS, registry=registry),
    )


# --- multiprocess mode -------------------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The multiprocess directory when prometheus_client runs in multiprocess mode."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(path) if path else None


def enable_multiprocess(path: Path) -> None:
    """Switch this process (and the children it forks later) to multiprocess mode in ``path``.

    Wipes the directory's old files (counters of a previous run must not be summed in), sets
    ``PROMETHEUS_MULTIPROC_DIR`` and makes metric values created from now on file-backed.
    Metrics created earlier keep their in-memory values.
    """
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    # prometheus_client picks the value class once, at import (taskbroker imported it long
    # before the worker started); metrics look it up each time they create a labelled child.
    values.ValueClass = values.MultiProcessValue()
    worker_metrics.cache_clear()


def remove_multiprocess_dir(path: Path) -> None:
    """Delete a multiprocess directory this process created."""
    shutil.rmtree(path, ignore_errors=True)


# --- active tasks, read from the ledger at scrape time -----------------------------------


class ActiveTasksCollector(Collector):
    """``taskbroker_active_tasks{task_type,state}``: queued/started/retry tasks in the ledger.

    Computed at scrape time with one grouped query.  Every (type, state) once seen stays
    exported (at 0 when empty), so series do not vanish between tasks.
    """

    def __init__(self, counts: Callable[[], Iterable[tuple[str, str, int]]],
                 known_types: Iterable[str] = ()) -> None:
        self._counts = counts
        self._seen: set[str] = set(known_types)
        self._lock = threading.Lock()

    def add_types(self, names: Iterable[str]) -> None:
        """Export these task types (at 0 until they have active tasks)."""
        with self._lock:
            self._seen.update(names)

    def collect(self) -> Iterator[Metric]:
        """Yield the gauge family (nothing when the ledger cannot be read)."""
        try:
            rows = list(self._counts())
        except Exception as exc:  # a scrape must not fail because the database is away
            log.warning("active tasks: ledger unreadable (%s)", type(exc).__name__)
            return
        values_: dict[tuple[str, str], int] = {}
        for task_type, state, n in rows:
            if state in ACTIVE_STATES:
                values_[(task_type, state)] = values_.get((task_type, state), 0) + n
        with self._lock:
            self._seen.update(t for t, _ in values_)
            types = sorted(self._seen)
        family = GaugeMetricFamily("taskbroker_active_tasks",
                                   "Tasks queued, started or waiting to retry (from the ledger).",
                                   labels=["task_type", "state"])
        for task_type in types:
            for state in ACTIVE_STATES:
                family.add_metric([task_type, state], values_.get((task_type, state), 0))
        yield family

    def describe(self) -> Iterator[Metric]:
        """Nothing: describing would run the ledger query at registration."""
        return iter(())


_active: ActiveTasksCollector | None = None
_active_lock = threading.Lock()


def _swap(old: Collector | None, new: Collector) -> None:
    """Register ``new`` in the default registry in place of ``old``."""
    if old is not None:
        REGISTRY.unregister(old)
    REGISTRY.register(new)


def register_active_tasks(ledger: Ledger, known_types: Iterable[str] = ()) -> ActiveTasksCollector:
    """Export active tasks from ``ledger`` (replacing a collector registered earlier)."""
    global _active
    collector = ActiveTasksCollector(ledger.active_counts, known_types)
    with _active_lock:
        _swap(_active, collector)
        _active = collector
    return collector


class WaitingCollector(Collector):
    """How many tasks clients wait for now, and how many ledger reads waking them took
    (one read serves every waiter; with Redis pub/sub it happens only when a task moves)."""

    def __init__(self, watching: Callable[[], int], reads: Callable[[], int]) -> None:
        self._watching = watching
        self._reads = reads

    def collect(self) -> Iterator[Metric]:
        """Yield the two families."""
        yield GaugeMetricFamily("taskbroker_waited_tasks",
                                "Tasks that clients of this server wait for now.",
                                value=self._watching())
        yield CounterMetricFamily("taskbroker_wait_reads",
                                  "Ledger reads made to wake waiting clients (all of them).",
                                  value=self._reads())

    def describe(self) -> Iterator[Metric]:
        """Nothing (values are read at collection)."""
        return iter(())


_waiting: WaitingCollector | None = None


def register_waiting(watching: Callable[[], int], reads: Callable[[], int]) -> WaitingCollector:
    """Export a task watcher's figures (replacing a collector registered earlier)."""
    global _waiting
    collector = WaitingCollector(watching, reads)
    with _active_lock:
        _swap(_waiting, collector)
        _waiting = collector
    return collector


def render_metrics() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set, e.g. several server processes),
    the values of every process are summed from the directory.
    """
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    for own in (_active, _waiting):
        if own is not None:
            registry.register(own)
    return generate_latest(registry), CONTENT_TYPE_LATEST
