"""Observability middleware: a span, metrics and a log line around every operation.

Outermost in the chain, so refused calls (unauthenticated, rate limited, invalid) are traced
and counted too.  ``swallow_errors`` is set: a failing exporter never breaks an operation.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from taskbroker.core.pipeline.chain import Call, Middleware
from taskbroker.core.pipeline.errors import RateLimited
from taskbroker.core.ports import Ledger
from taskbroker.core.settings import Settings
from taskbroker.observability import metrics
from taskbroker.observability.logging import add_secret_keys, route_structlog_to_stdlib
from taskbroker.observability.tracing import (
    configure_tracing,
    get_tracer,
    inject_headers,
    tracing_enabled,
    user_attribute,
)

__all__ = ["ObservabilityMiddleware", "build_observability_middleware", "outcome_of"]

log = structlog.get_logger("taskbroker.operations")

#: operations that only read; successful ones are logged at debug level
READ_OPERATIONS = frozenset({"status", "list", "list_types", "search", "inspect", "workers"})

#: the message header carrying the publish time (epoch seconds) for the queue-wait histogram
SENT_AT_HEADER = "sent_at"


def outcome_of(error: BaseException | None) -> str:
    """The outcome label of a call that ended with ``error`` (``ok`` when none)."""
    if error is None:
        return "ok"
    return str(getattr(error, "outcome", "error"))


def task_type_label(call: Call) -> str:
    """The task_type label: a registered type's name, ``unknown`` or ``none``."""
    if call.task_type is not None:
        return call.task_type.name
    return metrics.UNKNOWN_TASK_TYPE if call.args.get("task_type") else metrics.NO_TASK_TYPE


class ObservabilityMiddleware(Middleware):
    """Traces, counts, times and logs every call.

    Args:
        settings: ``trace_user`` decides how spans and log lines carry the caller.
        tracer_provider: the provider to make spans with (default: the global one, when an
            SDK provider is installed; with none, no span is made at all).
    """

    swallow_errors = True

    def __init__(self, settings: Settings, *, tracer_provider: TracerProvider | None = None,
                 active: metrics.ActiveTasksCollector | None = None) -> None:
        self.user_mode = settings.trace_user
        self._provider = tracer_provider
        self._tracer = get_tracer(tracer_provider) if tracer_provider is not None else None
        self._active = active

    def _tracing(self) -> bool:
        return self._provider is not None or tracing_enabled()

    def before(self, call: Call) -> None:
        """Open the operation's span (made current) and put the trace context in the headers."""
        user = user_attribute(call.user_id, self.user_mode)
        call.extra["obs.log_tokens"] = structlog.contextvars.bind_contextvars(
            **({"user": user} if user else {}), operation=call.operation)
        if self._tracing():
            tracer = self._tracer or get_tracer()
            span = tracer.start_span(f"taskbroker.{call.operation}", kind=SpanKind.SERVER,
                                     attributes={"taskbroker.operation": call.operation})
            if user:
                span.set_attribute("user", user)
            call.extra["obs.span"] = span
            call.extra["obs.token"] = otel_context.attach(trace.set_span_in_context(span))
        if call.operation == "start":
            headers: dict[str, Any] = call.extra.setdefault("headers", {})
            headers[SENT_AT_HEADER] = time.time()
            if "obs.span" in call.extra:
                inject_headers(headers)

    def after(self, call: Call) -> None:
        """Close the span, count and time the call, and log one line about it."""
        elapsed = time.perf_counter() - call.started
        outcome = outcome_of(call.error)
        task_type = task_type_label(call)
        span = call.extra.pop("obs.span", None)
        try:
            if call.task_type is not None:
                if call.task_type.secret_params:
                    add_secret_keys(call.task_type.secret_params)
                if self._active is not None:
                    self._active.add_types([call.task_type.name])
            metrics.operations_total.labels(call.operation, task_type, outcome).inc()
            metrics.operation_duration.labels(call.operation, task_type).observe(elapsed)
            if isinstance(call.error, RateLimited):
                metrics.rate_limit_denials.labels(call.operation).inc()
            if outcome in ("error", "unavailable"):
                level = "warning"
            elif outcome == "ok" and call.operation in READ_OPERATIONS:
                level = "debug"  # polls are frequent; their metrics and spans remain
            else:
                level = "info"
            getattr(log, level)(
                "operation", operation=call.operation, task_type=task_type,
                task_id=call.task_id, outcome=outcome, duration_ms=round(elapsed * 1000, 3),
                **({"error": type(call.error).__name__} if call.error is not None else {}),
            )
        finally:
            # whatever failed above (it is swallowed and logged by the chain), the span ends
            # and this thread's trace and log context are given back
            try:
                if span is not None:
                    self._finish_span(span, call, task_type, outcome)
            finally:
                token = call.extra.pop("obs.token", None)
                if token is not None:
                    otel_context.detach(token)
                tokens = call.extra.pop("obs.log_tokens", None)
                if tokens:
                    structlog.contextvars.reset_contextvars(**tokens)

    @staticmethod
    def _finish_span(span: Any, call: Call, task_type: str, outcome: str) -> None:
        span.set_attribute("task.type", task_type)
        if call.task_id:
            span.set_attribute("task.id", call.task_id)
        span.set_attribute("outcome", outcome)
        if call.error is not None:
            span.record_exception(call.error)
            span.set_status(Status(StatusCode.ERROR, f"{outcome}: {type(call.error).__name__}"))
        span.end()


def build_observability_middleware(settings: Settings, ledger: Ledger) -> ObservabilityMiddleware:
    """The observability middleware for ``settings``.

    Sets tracing up from OTEL_* (when configured) and exports the ledger's active tasks as
    ``taskbroker_active_tasks`` at scrape time.
    """
    route_structlog_to_stdlib()
    configure_tracing("taskbroker-server")
    return ObservabilityMiddleware(settings, active=metrics.register_active_tasks(ledger))
