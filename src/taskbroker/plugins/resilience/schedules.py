"""The resilience plugin's periodic runs (the seed's beat schedule), through the public hook.

Times are UTC.  Each entry is named after its task type; ``TASKBROKER_SCHEDULES`` overrides or
disables it by that name, e.g. ``{"resilience_contingency": "0 3 * * *"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.schedules import crontab

from taskbroker import hookimpl

__all__ = ["SCHEDULES", "taskbroker_register_schedules"]

#: (entry name, task type, schedule); every run uses the task type's default parameters
SCHEDULES: tuple[tuple[str, str, Any], ...] = (
    # every 15 minutes
    ("resilience_health_check", "resilience_health_check", crontab(minute="*/15")),
    # daily: contingency at 02:00, the utilization forecast at 04:00
    ("resilience_contingency", "resilience_contingency", crontab(minute="0", hour="2")),
    ("resilience_utilization_forecast", "resilience_utilization_forecast",
     crontab(minute="0", hour="4")),
    # weekly, Sunday night
    ("resilience_fallback_precompute", "resilience_fallback_precompute",
     crontab(minute="0", hour="3", day_of_week="sun")),
)


@hookimpl
def taskbroker_register_schedules(register: Callable[..., None]) -> None:
    """Ask beat for the health check, contingency, fallback and forecast runs."""
    for name, task_type, schedule in SCHEDULES:
        register(name, task_type, schedule)
