"""Periodic work: plugins' ``taskbroker_register_schedules`` entries, run by Celery beat."""

from __future__ import annotations

from celery import Celery

from taskbroker.core.settings import Settings

__all__ = ["register_beat_task", "run_beat"]


def register_beat_task(app: Celery, settings: Settings) -> None:
    """Register the worker-side task beat sends (placeholder)."""


def run_beat(settings: Settings) -> None:
    """Run Celery beat with the plugins' schedules (placeholder)."""
    raise SystemExit("taskbroker beat: not implemented yet")
