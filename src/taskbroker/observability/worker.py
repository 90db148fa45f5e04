"""Worker-side observability: Celery signal handlers for metrics, tracing and logs.

* ``worker_init`` (main process, before the pool forks): prometheus_client multiprocess mode
  in a fresh directory, task counters pre-created at 0 for every registered task type.
* ``worker_process_init`` (each prefork child; the solo pool's one process): tracing from
  OTEL_*, and the child's copy of the metrics server socket closed.
* ``task_prerun``/``task_postrun``/``task_failure``/``task_retry``/``task_revoked``:
  ``taskbroker_tasks_total``, runtime and queue-wait histograms, and the execution span (a
  child of the start span, from the message's ``traceparent`` header), made current so the
  spans a handler opens nest under it and log lines carry its ids.
* ``worker_ready``: the HTTP server on ``worker_metrics_port`` (``/metrics``, ``/healthz``)
  in the main process, which sums what every child wrote.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from celery import Celery, signals
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.multiprocess import mark_process_dead

from taskbroker.adapters.celery.tasks import OUTCOME_ATTR
from taskbroker.core.hosts import HostPolicy
from taskbroker.core.settings import Settings
from taskbroker.observability import metrics
from taskbroker.observability.logging import add_secret_keys
from taskbroker.observability.middleware import SENT_AT_HEADER
from taskbroker.observability.tracing import (
    configure_tracing,
    extract_context,
    flush_tracing,
    get_tracer,
    tracing_enabled,
)
from taskbroker.observability.worker_http import WorkerMetricsServer

__all__ = ["WorkerObservability", "install_worker_observability"]

log = logging.getLogger("taskbroker.observability")
#: one line per task start and end (sizes and keys of params and results, not their values)
task_log = structlog.get_logger("taskbroker.task")

TASK_PREFIX = "taskbroker.tasks."

@dataclass
class _Running:
    span: Any = None
    token: Any = None
    log_tokens: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0


class WorkerObservability:
    """State and signal handlers of one worker process tree (see the module docstring)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.ready = False
        self.http = WorkerMetricsServer(
            lambda: self.ready, HostPolicy.of(settings.allowed_hosts.split(",")))
        self._own_dir: Path | None = None
        self._running: dict[str, _Running] = {}
        self._prefork = True

    # --- names --------------------------------------------------------------------------

    def task_type(self, name: str | None) -> str:
        """The task_type label of a Celery task name (``unknown`` for anything unregistered)."""
        if name and name.startswith(TASK_PREFIX) and name in self.app.tasks:
            return name[len(TASK_PREFIX):]
        return metrics.UNKNOWN_TASK_TYPE

    def registered_types(self) -> list[str]:
        """Names of the task types this worker runs."""
        return sorted(n[len(TASK_PREFIX):] for n in self.app.tasks if n.startswith(TASK_PREFIX))

    # --- process lifecycle -----------------------------------------------------------------

    def on_worker_init(self, sender: Any = None, **_: Any) -> None:
        """Main process, before forking: multiprocess metrics, counters at 0, secret keys."""
        pool = str(getattr(sender, "pool_cls", "prefork")).lower()
        self._prefork = "prefork" in pool or "processes" in pool
        path = metrics.multiprocess_dir()
        if path is None:
            path = self._own_dir = Path(tempfile.mkdtemp(prefix="taskbroker-metrics-"))
        metrics.enable_multiprocess(path)
        wm = metrics.worker_metrics()
        for task_type in self.registered_types():
            for state in metrics.TASK_STATES:
                wm.tasks.labels(task_type, state)
            wm.runtime.labels(task_type)
            wm.queue_wait.labels(task_type)
        for task in self.app.tasks.values():
            declared = getattr(getattr(task, "Request", None), "task_type", None)
            if declared is not None and declared.secret_params:
                add_secret_keys(declared.secret_params)
        if not self._prefork:
            configure_tracing("taskbroker-worker")

    def on_worker_ready(self, **_: Any) -> None:
        """Main process, pool started: serve /metrics and /healthz."""
        self.ready = True
        if self.settings.worker_metrics_port:
            self.http.start(self.settings.worker_metrics_host, self.settings.worker_metrics_port)

    def on_worker_shutdown(self, **_: Any) -> None:
        """Main process, stopping: report down, stop serving, remove our own directory."""
        self.ready = False
        self.http.stop()
        if self._own_dir is not None:
            metrics.remove_multiprocess_dir(self._own_dir)

    def on_process_init(self, **_: Any) -> None:
        """Each pool child (or the solo pool): tracing, and no inherited listening socket."""
        self.http.forget_after_fork()  # a replacement child forked after worker_ready
        self._running.clear()
        configure_tracing("taskbroker-worker")

    def on_process_shutdown(self, pid: int | None = None, **_: Any) -> None:
        """Each pool child, exiting: export buffered spans, drop its live-gauge files."""
        flush_tracing()
        if metrics.multiprocess_dir() is not None:
            mark_process_dead(pid or os.getpid())

    # --- tasks --------------------------------------------------------------------------

    def on_prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        """A task begins: count it, measure its queue wait, open its span."""
        if task_id is None or task is None:
            return
        task_type = self.task_type(task.name)
        request = task.request
        wm = metrics.worker_metrics()
        wm.tasks.labels(task_type, "started").inc()
        now = time.time()
        sent_at = _header(request, SENT_AT_HEADER)
        begin = _as_epoch(sent_at)
        eta = _as_epoch(getattr(request, "eta", None))
        if eta is not None:
            begin = max(begin or eta, eta)
        if begin is not None:
            wm.queue_wait.labels(task_type).observe(max(0.0, now - begin))
        running = _Running(started=time.perf_counter())
        running.log_tokens = structlog.contextvars.bind_contextvars(task_id=task_id,
                                                                    task_type=task_type)
        params = (getattr(request, "kwargs", None) or {}).get("params")
        task_log.info("task started", **describe_payload("params", params,
                                                    full=self.settings.log_payloads))
        if tracing_enabled():
            span = get_tracer().start_span(
                f"taskbroker.task {task_type}", context=extract_context(request),
                kind=SpanKind.CONSUMER,
                attributes={"task.type": task_type, "task.id": task_id,
                            "task.retries": int(getattr(request, "retries", 0) or 0)},
            )
            running.span = span
            running.token = otel_context.attach(trace.set_span_in_context(span))
        self._running[task_id] = running

    def on_postrun(self, task_id: str | None = None, task: Any = None, retval: Any = None,
                   state: str | None = None, **_: Any) -> None:
        """A task ended: runtime, succeeded/revoked, close its span."""
        running = self._running.pop(task_id or "", None)
        if task is None or running is None:
            return
        task_type = self.task_type(task.name)
        wm = metrics.worker_metrics()
        wm.runtime.labels(task_type).observe(time.perf_counter() - running.started)
        # the runtime's outcome of the delivery (success, revoked, skipped, failure, retry);
        # a failure or retry is counted by on_failure / on_retry
        result = getattr(getattr(task, "request", None), OUTCOME_ATTR, None)
        outcome = result.status if result is not None else (state or "unknown").lower()
        task_log.info("task ended", outcome=outcome,
                 duration_ms=round((time.perf_counter() - running.started) * 1000, 1),
                 **describe_payload("result", result.result if result is not None else None,
                                    full=self.settings.log_payloads))
        if outcome == "success":
            wm.tasks.labels(task_type, "succeeded").inc()
        elif outcome == "revoked":
            wm.tasks.labels(task_type, "revoked").inc()
        try:
            if running.span is not None:
                running.span.set_attribute("outcome", outcome)
                running.span.end()
        finally:
            if running.token is not None:
                otel_context.detach(running.token)
            structlog.contextvars.reset_contextvars(**running.log_tokens)

    def on_failure(self, sender: Any = None, task_id: str | None = None,
                   exception: BaseException | None = None, **_: Any) -> None:
        """A task raised (or hit its hard time limit / lost its process): count, record."""
        wm = metrics.worker_metrics()
        wm.tasks.labels(self.task_type(getattr(sender, "name", None)), "failed").inc()
        running = self._running.get(task_id or "")
        if running is not None and running.span is not None and exception is not None:
            running.span.record_exception(exception)
            running.span.set_status(Status(StatusCode.ERROR, type(exception).__name__))

    def on_retry(self, sender: Any = None, request: Any = None, reason: Any = None,
                 **_: Any) -> None:
        """A task asked to be retried."""
        metrics.worker_metrics().tasks.labels(
            self.task_type(getattr(sender, "name", None)), "retried").inc()

    def on_revoked(self, request: Any = None, **_: Any) -> None:
        """Main process: a revoked task's message was discarded (or its process terminated)."""
        name = getattr(request, "task_name", None) or getattr(request, "name", None)
        metrics.worker_metrics().tasks.labels(self.task_type(name), "revoked").inc()

def describe_payload(name: str, value: Any, *, full: bool) -> dict[str, Any]:
    """Log fields about a task's params or result: its size and top-level keys, never its
    values (they may hold personal data) unless ``full`` (TASKBROKER_LOG_PAYLOADS)."""
    if value is None:
        return {}
    try:
        size = len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        size = -1
    fields: dict[str, Any] = {f"{name}_bytes": size}
    if isinstance(value, dict):
        fields[f"{name}_keys"] = sorted(str(k) for k in value)[:20]
    if full:
        fields[name] = value
    return fields


def _header(request: Any, key: str) -> Any:
    value = getattr(request, key, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(key) if isinstance(headers, dict) else None
    return value


def _as_epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        from datetime import datetime

        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


_installed: WorkerObservability | None = None


def install_worker_observability(app: Celery, settings: Settings) -> WorkerObservability:
    """Connect the worker's signal handlers (once per process) and return their state."""
    global _installed
    if _installed is not None:
        return _installed
    obs = WorkerObservability(app, settings)
    for signal, handler in (
        (signals.worker_init, obs.on_worker_init),
        (signals.worker_ready, obs.on_worker_ready),
        (signals.worker_shutdown, obs.on_worker_shutdown),
        (signals.worker_process_init, obs.on_process_init),
        (signals.worker_process_shutdown, obs.on_process_shutdown),
        (signals.task_prerun, obs.on_prerun),
        (signals.task_postrun, obs.on_postrun),
        (signals.task_failure, obs.on_failure),
        (signals.task_retry, obs.on_retry),
        (signals.task_revoked, obs.on_revoked),
    ):
        signal.connect(handler, weak=False, dispatch_uid=f"taskbroker.obs.{signal.name}")
    signals.setup_logging.connect(_keep_our_logging, weak=False,
                                  dispatch_uid="taskbroker.obs.setup_logging")
    _installed = obs
    return obs


def _keep_our_logging(**_: Any) -> None:
    """Celery's own logging setup is skipped: its records go through configure_logging's."""
