"""One trace from the service call to the handler on a real prefork worker; logs carry it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskbroker.app import App, build_app, default_middleware, load_app_plugins
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from taskbroker.observability.middleware import ObservabilityMiddleware
from tests.support.procs import Proc, wait_for

SECRET_PIN = "QZXJWV"  # letters: cannot turn up in a timestamp or an id


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """Where the test process's spans go."""
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def traced_app(obs_settings: Settings, exporter: InMemorySpanExporter) -> Iterator[App]:
    """A service whose observability middleware traces into ``exporter`` (no global state)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    plugins = load_app_plugins(obs_settings)
    probe = build_app(obs_settings, plugins=plugins, middleware=[])
    chain = default_middleware(obs_settings, plugins, probe.ledger)
    chain[0] = ObservabilityMiddleware(obs_settings, tracer_provider=provider)
    app = build_app(obs_settings, plugins=plugins, middleware=chain)
    try:
        yield app
    finally:
        provider.shutdown()


def test_one_trace_from_start_to_handler(traced_app: App, obs_worker: Proc, otlp_collector,
                                         exporter: InMemorySpanExporter,
                                         alice: Principal) -> None:
    receipt = traced_app.service.start(alice, "obs_traced", {"label": "L1", "pin": SECRET_PIN})
    wait_for(lambda: traced_app.service.status(alice, receipt.task_id).status == "success",
             timeout=60, what="obs_traced success")

    start = [s for s in exporter.get_finished_spans() if s.name == "taskbroker.start"
             and s.attributes.get("task.id") == receipt.task_id]
    assert len(start) == 1
    start_span = start[0]
    assert start_span.attributes["task.type"] == "obs_traced"
    assert start_span.attributes["outcome"] == "ok"
    assert start_span.attributes["user"] == "alice"  # TASKBROKER_TRACE_USER=id
    trace_id = format(start_span.context.trace_id, "032x")
    start_id = format(start_span.context.span_id, "016x")

    task_span = wait_for(
        lambda: otlp_collector.find("taskbroker.task obs_traced",
                                    task__id=receipt.task_id),
        timeout=30, what="the worker's execution span")[0]
    assert task_span.trace_id == trace_id
    assert task_span.parent_span_id == start_id
    assert task_span.service == "taskbroker-worker"
    assert task_span.attributes["outcome"] == "success"
    handler_span = wait_for(lambda: [s for s in otlp_collector.find("obs.handler.work")
                                     if s.trace_id == trace_id],
                            timeout=30, what="the handler's own span")[0]
    assert handler_span.parent_span_id == task_span.span_id
    assert handler_span.attributes["label"] == "L1"

    # the worker's log lines about this task carry the trace and the task
    def task_lines() -> list[dict]:
        lines = []
        for raw in obs_worker.log().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("task_id") == receipt.task_id:
                lines.append(line)
        return lines

    lines = wait_for(lambda: [ln for ln in task_lines() if ln["event"].startswith("handler")],
                     timeout=30, what="handler log lines")
    assert {ln["event"].split(" on ")[0] for ln in lines} >= {
        "handler working", "handler credentials"}
    for line in lines:
        assert line["trace_id"] == trace_id
        assert line["task_type"] == "obs_traced"
        assert len(line["span_id"]) == 16
    creds = next(ln for ln in lines if ln["event"] == "handler credentials")
    assert creds["pin"] == "***"  # TaskType.secret_params
    assert creds["password"] == "***"
    assert creds["headers"] == {"Authorization": "***"}
    # patterns in free text: credentials in URLs and key=value tokens
    log_text = obs_worker.log()
    assert "connecting to postgresql://svc:***@db:5432/x with token=***" in log_text
    assert SECRET_PIN not in log_text


def test_refused_calls_are_traced_with_their_outcome(traced_app: App,
                                                     exporter: InMemorySpanExporter,
                                                     alice: Principal) -> None:
    with pytest.raises(ValueError):
        traced_app.service.start(alice, "no_such_type", {})
    span = [s for s in exporter.get_finished_spans() if s.name == "taskbroker.start"][-1]
    assert span.attributes["outcome"] == "invalid"
    assert span.attributes["task.type"] == "unknown"
    assert span.status.status_code.name == "ERROR"
    assert [e.name for e in span.events] == ["exception"]

    with pytest.raises(LookupError):
        traced_app.service.status(alice, "00000000-0000-0000-0000-000000000000")
    span = [s for s in exporter.get_finished_spans() if s.name == "taskbroker.status"][-1]
    assert span.attributes["outcome"] == "not_found"
    assert span.attributes["task.id"] == "00000000-0000-0000-0000-000000000000"
