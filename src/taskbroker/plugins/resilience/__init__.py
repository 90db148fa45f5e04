"""The built-in ``resilience`` plugin: does the residency schedule survive losing people?

Registered through the public hook exactly like a third-party plugin.  Six task types:

========================================  ==================================================
``resilience_health_check``               next 7 days: utilization, N-1, unstaffed slots,
                                          crisis -> healthy/warning/degraded/critical/emergency
``resilience_contingency``                N-1 / N-2 over ``days_ahead`` (default 90)
``resilience_fallback_precompute``        seven loss scenarios repaired and stored
``resilience_utilization_forecast``       per-day utilization and high-risk periods
``resilience_crisis_activation``          admin: record a crisis, its defense level, actions
``resilience_crisis_deactivation``        admin: end the active crisis
========================================  ==================================================

Choices where DESIGN.md is silent (also in this package's README.md):

* The window starts today (UTC date) unless ``start_date`` is given (an added, optional
  parameter); only the current run (newest successful) is analysed.
* Staffing (see :mod:`taskbroker.schedule.staffing`): people on approved absence do not
  count even when assigned; assigned faculty count for their slot whatever their
  qualifications and are never moved within their block; only free, present, qualified
  faculty are reassigned.  Pending and denied absences remove nobody.
* N-1 / N-2 count faculty (residents are the demand, not the supply).  Worst cases are the
  ten faculty / pairs breaking the most blocks, each with up to five example blocks and the
  services of the bottleneck (the smallest set of slots whose qualified free faculty fall
  short) - "why" names those services.
* Utilization levels compare exactly (fractions): 0.70 is YELLOW, 0.95 is BLACK.  A day with
  no faculty available but work to do is BLACK.
* Health status is the worst signal (see :mod:`.health`); defense levels 1 PREVENTION,
  2 CONTROL, 3 SAFETY_SYSTEMS, 4 CONTAINMENT, 5 EMERGENCY; crisis severities minor..critical
  map to 2..5 with cumulative load-shedding actions.
* Crisis state lives only in the store (history rows); activating while a crisis is active
  supersedes it; deactivating with none active fails with a clear error.  The approver is
  ``ctx.owner`` (the authenticated caller); ``approved_by`` is the type's ``caller_param``.
* Fallbacks: scenario definitions and coverage are in :mod:`taskbroker.schedule.fallback`;
  one stored fallback per scenario (recomputing replaces it), valid until the window's end,
  tagged with the run it was computed from.

Handlers take an optional ``store`` keyword; :func:`task_types` binds one (tests, embedding),
otherwise each run uses :func:`taskbroker.plugins.data.schedule_store` (the ledger's
database).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from taskbroker import TaskType, hookimpl
from taskbroker.plugins.data.params import ADMIN_ROLE, PLANNER_ROLE
from taskbroker.plugins.resilience import (
    contingency,
    crisis_activation,
    crisis_deactivation,
    fallback,
    health,
    utilization,
)
from taskbroker.plugins.resilience._common import DaysAheadParams, HealthParams
from taskbroker.plugins.resilience.schedules import taskbroker_register_schedules  # noqa: F401
from taskbroker.schedule.store import ScheduleStore

__all__ = ["task_types", "taskbroker_register_task_types"]

def _bind(handler: Callable[..., Any], store: ScheduleStore | None) -> Callable[..., Any]:
    return handler if store is None else functools.partial(handler, store=store)


def task_types(store: ScheduleStore | None = None) -> list[TaskType]:
    """The six resilience task types, their handlers bound to ``store`` when given."""
    return [
        TaskType(
            name="resilience_health_check",
            description="Health of the next 7 days: utilization, single points of failure, "
            "unstaffed slots and crisis state, with recommended actions.",
            run=_bind(health.run, store), params=HealthParams,
            estimated_duration="1-2 minutes"),
        TaskType(
            name="resilience_contingency",
            description="N-1/N-2 contingency analysis: which single faculty losses and which "
            "pairs of losses leave a half-day block unstaffable, even after reassignment.",
            run=_bind(contingency.run, store), params=DaysAheadParams,
            estimated_duration="2-5 minutes"),
        TaskType(
            name="resilience_fallback_precompute",
            description="Precompute and store fallback schedules for seven loss scenarios, "
            "each repaired by reassignment, with coverage rates.",
            run=_bind(fallback.run, store), params=DaysAheadParams,
            estimated_duration="5-10 minutes", required_role=PLANNER_ROLE, mutates=True),
        TaskType(
            name="resilience_utilization_forecast",
            description="Per-day faculty utilization with approved absences, risk levels "
            "GREEN..BLACK and high-risk periods with their drivers.",
            run=_bind(utilization.run, store), params=DaysAheadParams,
            estimated_duration="1-3 minutes"),
        TaskType(
            name="resilience_crisis_activation",
            description="Activate crisis response: defense level and load-shedding actions "
            "for a severity, recorded with the approving admin.",
            run=_bind(crisis_activation.run, store),
            params=crisis_activation.CrisisActivationParams,
            estimated_duration="30 seconds", required_role=ADMIN_ROLE, mutates=True,
            caller_param="approved_by", idempotent=False, max_retries=0),
        TaskType(
            name="resilience_crisis_deactivation",
            description="End the active crisis, recorded with the deactivating admin.",
            run=_bind(crisis_deactivation.run, store),
            params=crisis_deactivation.CrisisDeactivationParams,
            estimated_duration="30 seconds", required_role=ADMIN_ROLE, mutates=True,
            idempotent=False, max_retries=0),
    ]


@hookimpl
def taskbroker_register_task_types(register: Callable[[TaskType], None]) -> None:
    """Register the resilience task types."""
    for task_type in task_types():
        register(task_type)
