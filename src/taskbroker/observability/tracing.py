"""OpenTelemetry tracing: provider setup from OTEL_* variables, and Celery header propagation.

Tracing is off unless the environment asks for it (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER``; ``OTEL_SDK_DISABLED=true``
wins).  Off means no SDK provider, no span objects and no header injection: every entry point
checks :func:`tracing_enabled` first.

The trace context travels as W3C ``traceparent``/``tracestate`` headers of the Celery
message (the taskiq pattern: :func:`inject_headers` on publish, :func:`extract_context` on
execute), so the worker's execution span is a child of the start span.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Tracer, TracerProvider

__all__ = [
    "TRACER_NAME",
    "configure_tracing",
    "extract_context",
    "flush_tracing",
    "get_tracer",
    "inject_headers",
    "tracing_configured",
    "tracing_enabled",
    "user_attribute",
]

log = logging.getLogger("taskbroker.observability")

#: instrumentation scope of taskbroker's spans
TRACER_NAME = "taskbroker"

_setup_lock = threading.Lock()
_own_provider: Any = None


def tracing_configured(environ: MutableMapping[str, str] | None = None) -> bool:
    """True when the OTEL_* environment asks for trace export."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_tracing(service_name: str) -> bool:
    """Install an SDK tracer provider exporting as OTEL_* says; return whether tracing is on.

    Does nothing when the environment does not ask for tracing, or when a provider is already
    installed (by us, or by an application embedding taskbroker).  Call it in every process
    that makes spans -- for prefork workers in each child (``worker_process_init``): the
    exporter's background thread does not survive ``fork``.
    """
    global _own_provider
    if not tracing_configured():
        return tracing_enabled()
    with _setup_lock:
        if tracing_enabled():
            return True
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        provider = SdkTracerProvider(resource=Resource.create(attributes))
        kinds = [k.strip().lower() for k in
                 os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if k.strip()]
        for kind in kinds or ["otlp"]:
            if kind == "console":
                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            elif kind in ("otlp", "otlp_proto_http"):
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            else:
                log.warning("OTEL_TRACES_EXPORTER=%s is not supported (otlp, console)", kind)
        trace.set_tracer_provider(provider)
        _own_provider = provider
        return True


def tracing_enabled() -> bool:
    """True when a real (SDK) tracer provider is installed globally."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    """taskbroker's tracer from ``provider`` (default: the global one)."""
    return trace.get_tracer(TRACER_NAME, tracer_provider=provider)


def flush_tracing(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (call before a process exits without atexit)."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        try:
            flush(timeout_millis)
        except Exception as exc:  # exporting is best effort
            log.warning("flushing spans failed: %s", type(exc).__name__)


def inject_headers(headers: MutableMapping[str, Any]) -> None:
    """Write the current trace context (W3C traceparent) into Celery message ``headers``."""
    propagate.inject(headers)


class _RequestGetter(Getter[Any]):
    """Reads propagation fields from a Celery task request (attributes or ``headers``)."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        value = getattr(carrier, key, None)
        if value is None:
            headers = getattr(carrier, "headers", None) or {}
            value = headers.get(key) if isinstance(headers, dict) else None
        if value is None:
            return None
        return list(value) if isinstance(value, list | tuple) else [str(value)]

    def keys(self, carrier: Any) -> list[str]:
        headers = getattr(carrier, "headers", None) or {}
        return list(headers) if isinstance(headers, dict) else []


_getter = _RequestGetter()


def extract_context(request: Any) -> Context:
    """The trace context a Celery task request carries (empty when none)."""
    return propagate.extract(request, getter=_getter)


def user_attribute(user_id: str | None, mode: str) -> str | None:
    """How telemetry names the user: the id, a salted hash (pseudonym), or nothing."""
    if user_id is None or mode == "none":
        return None
    if mode == "id":
        return user_id
    digest = hashlib.sha256(b"taskbroker-user:" + user_id.encode()).hexdigest()
    return f"u-{digest[:16]}"
