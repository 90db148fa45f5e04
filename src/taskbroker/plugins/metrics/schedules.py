"""The metrics plugin's periodic runs (the seed's beat schedule), through the public hook.

Times are UTC.  Each entry is named after its task type; ``TASKBROKER_SCHEDULES`` overrides or
disables it by that name, e.g. ``{"metrics_snapshot": "off"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.schedules import crontab

from taskbroker import hookimpl

__all__ = ["SCHEDULES", "taskbroker_register_schedules"]

#: (entry name, task type, schedule); every run uses the task type's default parameters
SCHEDULES: tuple[tuple[str, str, Any], ...] = (
    # hourly on weekdays, 08:00-18:00
    ("metrics_snapshot", "metrics_snapshot",
     crontab(minute="0", hour="8-18", day_of_week="mon-fri")),
    # daily
    ("metrics_computation", "metrics_computation", crontab(minute="0", hour="1")),
    ("metrics_cleanup", "metrics_cleanup", crontab(minute="0", hour="5")),
    # weekly, Monday morning
    ("metrics_fairness_report", "metrics_fairness_report",
     crontab(minute="0", hour="6", day_of_week="mon")),
)


@hookimpl
def taskbroker_register_schedules(register: Callable[..., None]) -> None:
    """Ask beat for the metrics snapshot, computation, cleanup and fairness report runs."""
    for name, task_type, schedule in SCHEDULES:
        register(name, task_type, schedule)
