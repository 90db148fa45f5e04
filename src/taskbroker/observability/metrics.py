"""Prometheus metrics of the server and workers (issue 6)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["render_metrics"]


def render_metrics() -> tuple[bytes, str]:
    """The current metrics in the Prometheus text format, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
