"""ObservabilityMiddleware in the real chain, in process: Prometheus counters by outcome (read
as deltas of the default registry), one span per operation into an in-memory exporter through
a TracerProvider passed in, and failures of its own that never break the call.

Calls that leave tracing state behind run in a fresh thread, whose context dies with it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from taskbroker.app import build_app, default_middleware, load_app_plugins
from taskbroker.core.pipeline.errors import (
    BrokerUnavailable,
    InvalidRequest,
    RateLimited,
    TaskNotFound,
    Unauthenticated,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from taskbroker.observability import metrics
from taskbroker.observability.middleware import ObservabilityMiddleware
from tests.pipeline.conftest import NO_LIMITS, PLUGIN_MODULES, Harness

T = TypeVar("T")
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def traced(tmp_path: Path, provider: TracerProvider, **settings: Any) -> Harness:
    """A harness whose observability middleware traces through ``provider``."""
    from taskbroker.adapters.memory import MemoryLedger, StubBroker
    from taskbroker.core.runtime import Runtime

    values: dict[str, Any] = dict(
        database_url="memory://", data_dir=tmp_path, redis_url=None, builtin_plugins=False,
        plugin_modules=PLUGIN_MODULES, load_plugins="", rate_limits=NO_LIMITS,
        max_active_per_user=0, trace_user="id")
    values.update(settings)
    resolved = Settings(**values)
    plugins = load_app_plugins(resolved)
    ledger, broker = MemoryLedger(), StubBroker()
    chain = default_middleware(resolved, plugins, ledger)
    chain[0] = ObservabilityMiddleware(resolved, tracer_provider=provider)
    app = build_app(resolved, plugins=plugins, ledger=ledger, broker=broker, middleware=chain)
    return Harness(app, ledger, broker, Runtime(ledger, patience=1))


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    """Where the spans go."""
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A tracer provider of the test's own (the global one is left alone)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield tracer_provider
    finally:
        tracer_provider.shutdown()


def in_fresh_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a new thread (an empty context); its result or its exception."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    result: T = box["value"]
    return result


def sample(name: str, **labels: str) -> float:
    """The current value of a sample of the default registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def only_span(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    """The one finished span called ``name``."""
    spans = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(spans) == 1, [s.name for s in exporter.get_finished_spans()]
    return spans[0]


# --- metrics ---------------------------------------------------------------------------------


def test_operations_are_counted_by_operation_type_and_outcome(
        tmp_path: Path, provider: TracerProvider, alice: Principal) -> None:
    tb = traced(tmp_path, provider, rate_limits="list_types: 1/hour")
    series = [
        ("start", "test_count", "ok"), ("start", "unknown", "invalid"),
        ("status", "test_count", "ok"), ("status", "none", "not_found"),
        ("list", "none", "denied"), ("list_types", "none", "ok"),
        ("list_types", "none", "rate_limited"), ("cancel", "none", "unavailable"),
    ]
    before = {s: sample("taskbroker_operations_total", operation=s[0], task_type=s[1],
                        outcome=s[2]) for s in series}
    timed_before = sample("taskbroker_operation_duration_seconds_count", operation="start",
                          task_type="test_count")
    denials_before = sample("taskbroker_rate_limit_denials_total", operation="list_types")

    receipt = tb.service.start(alice, "test_count", {"n": 2})
    with pytest.raises(InvalidRequest):
        tb.service.start(alice, "no_such_type")
    tb.service.status(alice, receipt.task_id)
    with pytest.raises(TaskNotFound):
        tb.service.status(alice, UNKNOWN_ID)
    with pytest.raises(Unauthenticated):
        tb.service.list_active(None)
    tb.service.list_types(alice)
    with pytest.raises(RateLimited):
        tb.service.list_types(alice)
    tb.ledger.unavailable = True
    with pytest.raises(BrokerUnavailable):
        tb.service.cancel(alice, UNKNOWN_ID)

    after = {s: sample("taskbroker_operations_total", operation=s[0], task_type=s[1],
                       outcome=s[2]) for s in series}
    assert {s: after[s] - before[s] for s in series} == dict.fromkeys(series, 1.0)
    assert sample("taskbroker_operation_duration_seconds_count", operation="start",
                  task_type="test_count") - timed_before == 1.0
    assert sample("taskbroker_rate_limit_denials_total",
                  operation="list_types") - denials_before == 1.0


# --- spans -----------------------------------------------------------------------------------


def test_a_start_makes_one_server_span_whose_context_travels_with_the_message(
        tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter,
        alice: Principal) -> None:
    tb = traced(tmp_path, provider)
    receipt = in_fresh_thread(lambda: tb.service.start(alice, "test_count", {"n": 2}))
    span = only_span(exporter, "taskbroker.start")
    assert span.kind is SpanKind.SERVER
    assert dict(span.attributes or {}) == {
        "taskbroker.operation": "start", "user": "alice", "task.type": "test_count",
        "task.id": receipt.task_id, "outcome": "ok"}
    assert span.status.status_code is StatusCode.UNSET
    [message] = tb.broker.pending
    context = span.get_span_context()
    version, trace_id, parent_id, flags = message.headers["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", f"{context.trace_id:032x}",
                                              f"{context.span_id:016x}")
    assert int(flags, 16) & 1 == 1  # sampled


def test_a_refused_call_makes_an_error_span(tmp_path: Path, provider: TracerProvider,
                                            exporter: InMemorySpanExporter,
                                            alice: Principal) -> None:
    tb = traced(tmp_path, provider)
    with pytest.raises(TaskNotFound):
        in_fresh_thread(lambda: tb.service.status(alice, UNKNOWN_ID))
    span = only_span(exporter, "taskbroker.status")
    assert (span.attributes or {})["outcome"] == "not_found"
    assert (span.attributes or {})["task.id"] == UNKNOWN_ID
    assert (span.status.status_code, span.status.description) == (
        StatusCode.ERROR, "not_found: TaskNotFound")
    [event] = span.events
    assert event.name == "exception"
    assert (event.attributes or {})["exception.type"] == (
        "taskbroker.core.pipeline.errors.TaskNotFound")
    assert (event.attributes or {})["exception.message"] == (
        f"task_id {UNKNOWN_ID!r}: no such task")


@pytest.mark.parametrize("mode", ["hash", "none"])
def test_spans_carry_the_user_as_configured(tmp_path: Path, provider: TracerProvider,
                                            exporter: InMemorySpanExporter,
                                            alice: Principal, mode: str) -> None:
    tb = traced(tmp_path, provider, trace_user=mode)
    in_fresh_thread(lambda: tb.service.list_types(alice))
    attributes = dict(only_span(exporter, "taskbroker.list_types").attributes or {})
    if mode == "hash":
        digest = hashlib.sha256(b"taskbroker-user:alice").hexdigest()[:16]
        assert attributes["user"] == f"u-{digest}"
    else:
        assert "user" not in attributes


def test_the_trace_context_is_detached_after_each_call(tmp_path: Path,
                                                       provider: TracerProvider,
                                                       exporter: InMemorySpanExporter,
                                                       alice: Principal) -> None:
    tb = traced(tmp_path, provider)

    def two_calls() -> bool:
        tb.service.list_types(alice)
        leaked = trace.get_current_span().get_span_context().is_valid
        tb.service.list_active(alice)
        return leaked

    assert in_fresh_thread(two_calls) is False
    first = only_span(exporter, "taskbroker.list_types")
    second = only_span(exporter, "taskbroker.list")
    assert second.parent is None  # not a child of the first call
    assert second.get_span_context().trace_id != first.get_span_context().trace_id


# --- its own failures never break a call -----------------------------------------------------


class FailingExporter(SpanExporter):
    """An exporter whose backend is down."""

    def export(self, spans: Any) -> SpanExportResult:
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        pass


class FailingProcessor(SimpleSpanProcessor):
    """A span processor that raises when a span ends (so span.end() raises)."""

    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("processor broke")


class BrokenTracerProvider(trace.TracerProvider):
    """A provider whose tracer cannot start spans."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        class Broken(trace.NoOpTracer):
            def start_span(self, *a: Any, **k: Any) -> trace.Span:
                raise RuntimeError("tracer broke")

        return Broken()


class BrokenCounter:
    """A metric whose backend fails."""

    def labels(self, *args: Any) -> Any:
        raise RuntimeError("metrics broke")


@pytest.mark.parametrize("failure", ["exporter", "span-end", "span-start", "metric"])
def test_a_failing_exporter_tracer_or_metric_never_breaks_the_call(
        tmp_path: Path, alice: Principal, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, failure: str) -> None:
    provider: trace.TracerProvider
    if failure in ("exporter", "span-end"):
        provider = TracerProvider()
        provider.add_span_processor(FailingProcessor(FailingExporter()) if failure == "span-end"
                                    else SimpleSpanProcessor(FailingExporter()))
    else:
        provider = BrokenTracerProvider() if failure == "span-start" else TracerProvider()
    if failure == "metric":
        monkeypatch.setattr(metrics, "operations_total", BrokenCounter())
    tb = traced(tmp_path, provider)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        receipt = in_fresh_thread(lambda: tb.service.start(alice, "test_count", {"n": 3}))
        [(_, outcome)] = tb.run_pending()
    assert outcome.result == {"sum": 6, "steps": 3}
    assert tb.service.status(alice, receipt.task_id).status == "success"
    swallowed = [r.getMessage() for r in caplog.records
                 if r.name in ("taskbroker.middleware", "opentelemetry.sdk.trace.export")]
    expected = {"exporter": "Exception while exporting Span.",
                "span-end": "ObservabilityMiddleware.after failed: RuntimeError('processor broke')",
                "span-start": "ObservabilityMiddleware.before failed: "
                              "RuntimeError('tracer broke')",
                "metric": "ObservabilityMiddleware.after failed: RuntimeError('metrics broke')"}
    assert expected[failure] in swallowed


def test_a_failing_metric_still_ends_the_span_and_detaches_the_context(
        tmp_path: Path, provider: TracerProvider, exporter: InMemorySpanExporter,
        alice: Principal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "operations_total", BrokenCounter())
    tb = traced(tmp_path, provider)

    def call_and_look() -> tuple[bool, dict[str, Any]]:
        tb.service.list_types(alice)
        return (trace.get_current_span().get_span_context().is_valid,
                structlog.contextvars.get_contextvars())

    leaked_span, leaked_vars = in_fresh_thread(call_and_look)
    assert [s.name for s in exporter.get_finished_spans()] == ["taskbroker.list_types"]
    assert (leaked_span, leaked_vars) == (False, {})
