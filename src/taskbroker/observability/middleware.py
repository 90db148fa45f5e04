"""Observability middleware: traces, metrics and logs around every operation (issue 6)."""

from __future__ import annotations

from taskbroker.core.middleware import Middleware
from taskbroker.core.settings import Settings

__all__ = ["ObservabilityMiddleware", "build_observability_middleware"]


class ObservabilityMiddleware(Middleware):
    """Outermost layer: sees every call, including refused ones (placeholder: no-op)."""

    swallow_errors = True


def build_observability_middleware(settings: Settings, ledger: object) -> ObservabilityMiddleware:
    """The observability middleware for ``settings``."""
    return ObservabilityMiddleware()
