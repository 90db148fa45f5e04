"""Worker-side observability: signal handlers for metrics, tracing, logs (issue 6)."""

from __future__ import annotations

from celery import Celery

from taskbroker.core.settings import Settings

__all__ = ["install_worker_observability"]


def install_worker_observability(app: Celery, settings: Settings) -> None:
    """Connect the worker's signal handlers (placeholder: nothing yet)."""
