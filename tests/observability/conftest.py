"""Fixtures of the observability tests: an OTLP/HTTP collector, a traced worker, its database.

The worker (and, in the Prometheus test, the server) are real subprocesses configured only by
standard OTEL_* variables: they export spans over OTLP/HTTP to :class:`Collector`, a tiny
receiver running in the test process.  They use their own Redis database and PostgreSQL
database, so other test modules' workers never take their tasks and ledger counts are exact.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from taskbroker.core.settings import Settings
from tests.conftest import settings_from_env, start_worker
from tests.support.procs import Postgres, Proc, Redis, base_env, free_port


@dataclass(frozen=True)
class ExportedSpan:
    """A span as a process exported it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


class Collector:
    """An OTLP/HTTP trace receiver (``POST /v1/traces``, protobuf) keeping every span."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector._add(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The OTEL_EXPORTER_OTLP_ENDPOINT to give exporters."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _add(self, request: ExportTraceServiceRequest) -> None:
        found = []
        for rs in request.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes
                            if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attrs = {a.key: _value(a.value) for a in s.attributes}
                    found.append(ExportedSpan(service, s.name, s.trace_id.hex(), s.span_id.hex(),
                                              s.parent_span_id.hex(), attrs))
        with self._lock:
            self.spans.extend(found)

    def find(self, name: str, **attributes: Any) -> list[ExportedSpan]:
        """Spans called ``name`` whose attributes include ``attributes`` (dots as ``__``)."""
        want = {k.replace("__", "."): v for k, v in attributes.items()}
        with self._lock:
            spans = list(self.spans)
        return [s for s in spans if s.name == name
                and all(s.attributes.get(k) == v for k, v in want.items())]


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@pytest.fixture(scope="session")
def otlp_collector() -> Iterator[Collector]:
    """An OTLP/HTTP receiver on a free loopback port."""
    collector = Collector()
    collector.thread.start()
    try:
        yield collector
    finally:
        collector.server.shutdown()
        collector.server.server_close()


@pytest.fixture(scope="session")
def obs_database(postgres: Postgres) -> Iterator[str]:
    """A PostgreSQL database of our own (exact active-task counts)."""
    with postgres.scratch_database("tb_obs") as url:
        yield url


@pytest.fixture(scope="session")
def obs_env(redis_server: Redis, obs_database: str, otlp_collector: Collector) -> dict[str, str]:
    """Environment of the traced processes (own Redis db 7, own ledger database, OTLP)."""
    return base_env(
        TASKBROKER_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/7",
        TASKBROKER_DATABASE_URL=obs_database,
        TASKBROKER_CANCEL_GRACE_SECONDS="2",
        TASKBROKER_HEARTBEAT_INTERVAL="1",
        TASKBROKER_PLUGIN_MODULES="tests.support.sample_plugin,tests.observability.obs_plugin",
        TASKBROKER_WORKER_METRICS_PORT=str(free_port()),
        TASKBROKER_TRACE_USER="id",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )


@pytest.fixture(scope="session")
def obs_settings(obs_env: dict[str, str]) -> Settings:
    """The traced processes' settings as the test process sees them."""
    return settings_from_env(obs_env)


@pytest.fixture(scope="session")
def obs_worker(obs_env: dict[str, str]) -> Iterator[Proc]:
    """A real prefork worker (2 children) exporting spans to the collector."""
    proc = start_worker(obs_env, name="obs-worker")
    try:
        yield proc
    finally:
        proc.stop()
