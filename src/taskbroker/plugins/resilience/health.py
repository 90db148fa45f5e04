"""``resilience_health_check``: the next 7 days at a glance.

Status is the worst of these signals (healthy < warning < degraded < critical < emergency):

* utilization: ORANGE -> warning, RED -> degraded, BLACK -> critical (GREEN/YELLOW: healthy);
* N-1: any vulnerability -> warning;
* unstaffed slots: any -> degraded, 10 % of slots or more -> critical;
* crisis: minor -> warning, moderate -> degraded, severe -> critical, critical -> emergency;
* days without schedule data -> at least warning (their health is unknown); with no data on
  any of the 7 days the status is ``unknown`` (nothing was assessed).

The defense level is that of the status (healthy 1 ... emergency 5) or of the active crisis,
whichever is higher.
"""

from __future__ import annotations

from typing import Any

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.resilience._common import (
    DEFENSE_LEVELS,
    HealthParams,
    now_iso,
    period,
    require_schedule,
    resolve_store,
    window_coverage,
    window_start,
)
from taskbroker.schedule.contingency import analyse
from taskbroker.schedule.staffing import build_model, uncovered_slots
from taskbroker.schedule.store import ScheduleStore
from taskbroker.schedule.utilization import NO_DATA, mark_days_without_data, utilization_by_day

__all__ = ["STATUSES", "run"]

STATUSES = ("healthy", "warning", "degraded", "critical", "emergency")
WINDOW_DAYS = 7
_UTIL_RANK = {"GREEN": 0, "YELLOW": 0, "ORANGE": 1, "RED": 2, "BLACK": 3}
_CRISIS_RANK = {"minor": 1, "moderate": 2, "severe": 3, "critical": 4}
_LEVEL_ORDER = ("GREEN", "YELLOW", "ORANGE", "RED", "BLACK")


def run(params: HealthParams, ctx: TaskContext, *,
        store: ScheduleStore | None = None) -> dict[str, Any]:
    """Combine utilization, N-1, unstaffed slots and crisis state into one status."""
    st = store if store is not None else resolve_store(None)
    ctx.progress(0, "loading the schedule")
    program = st.load_program()
    require_schedule(program)
    start = window_start(params.start_date, program)
    ctx.raise_if_cancelled()
    model = build_model(program, start, WINDOW_DAYS)
    coverage = window_coverage(program, start, WINDOW_DAYS)
    ctx.progress(20, "utilization")
    days = mark_days_without_data(utilization_by_day(model), coverage.has)
    ctx.raise_if_cancelled()
    ctx.progress(40, "N-1 analysis")
    n1 = analyse(model, n2=False, on_block=lambda d, t: ctx.raise_if_cancelled())
    ctx.progress(70, "unstaffed slots")
    unstaffed: list[dict[str, Any]] = []
    slots_total = 0
    for block in model.blocks:
        slots_total += len(block.slots)
        for service, missing in uncovered_slots(block, model.qual):
            unstaffed.append({"block": block.label, "service": service, "missing": missing})
    ctx.raise_if_cancelled()
    crisis = st.active_crisis()
    ctx.progress(90, "assessing")

    known = [d for d in days if d.level != NO_DATA]
    worst = max((d.level for d in known), key=_LEVEL_ORDER.index, default=None)
    rank = _UTIL_RANK[worst] if worst else 0
    actions: list[str] = []
    if not coverage.complete:
        # days nobody is scheduled for are a risk in themselves, never "healthy"
        rank = max(rank, 1)
        missing = coverage.requested_days - coverage.days_with_data
        actions.append(f"No schedule data for {missing} of the next {WINDOW_DAYS} days: their "
                       "health is unknown; load the schedule for them.")
    if worst and _UTIL_RANK[worst]:
        hot = [d.date.isoformat() for d in known if _UTIL_RANK[d.level] >= _UTIL_RANK[worst]]
        actions.append(f"Utilization reaches {worst} on {', '.join(hot)}: defer leave and "
                       "non-clinical time on those days.")
    if n1.n1:
        rank = max(rank, 1)
        actions.append(f"Arrange backup for {len(n1.n1)} single point(s) of failure: "
                       f"{', '.join(sorted(n1.n1)[:5])}.")
    if unstaffed:
        rank = max(rank, 3 if len(unstaffed) >= 0.1 * max(1, slots_total) else 2)
        actions.append(f"Fill {len(unstaffed)} unstaffed slot(s), first {unstaffed[0]['block']}"
                       f" {unstaffed[0]['service']}.")
    if crisis:
        rank = max(rank, _CRISIS_RANK.get(crisis["severity"], 1))
        actions.append(f"Crisis active since {crisis['activated_at']} ({crisis['severity']}): "
                       "follow its load-shedding actions; deactivate when resolved.")
    if not actions:
        actions.append("No action needed.")
    level = max(rank + 1, crisis["defense_level"] if crisis else 1)
    utils = [d.utilization for d in known if d.utilization != float("inf")]
    return {
        "timestamp": now_iso(),
        "status": STATUSES[rank] if known else "unknown",
        "period": period(start, WINDOW_DAYS),
        "data_coverage": coverage.as_dict(),
        "warnings": coverage.warnings(),
        "defense_level": level,
        "defense_level_name": DEFENSE_LEVELS[level],
        "utilization": {
            "average": round(sum(utils) / len(utils), 4) if utils else None,
            "max": round(max(utils), 4) if utils else None,
            "max_level": worst,
            "days": [d.as_dict() for d in days],
        },
        "n1_pass": n1.n1_pass,
        "n1_vulnerabilities_count": len(n1.n1),
        "n1_vulnerabilities": sorted(n1.n1),
        "unstaffed_slots_count": len(unstaffed),
        "unstaffed_slots": unstaffed[:20],
        "crisis_active": crisis is not None,
        "crisis": crisis,
        "actions": actions,
    }
