"""``resilience_utilization_forecast``: per-day utilization, levels and high-risk periods."""

from __future__ import annotations

from collections import Counter
from typing import Any

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.resilience._common import (
    DaysAheadParams,
    load_window,
    now_iso,
    period,
)
from taskbroker.schedule.store import ScheduleStore
from taskbroker.schedule.utilization import HIGH_RISK, high_risk_periods, utilization_by_day

__all__ = ["run"]


def run(params: DaysAheadParams, ctx: TaskContext, *,
        store: ScheduleStore | None = None) -> dict[str, Any]:
    """Forecast faculty utilization for ``params.days_ahead`` days with approved absences."""
    program, start, model = load_window(params, ctx, store, model_progress=30)
    ctx.progress(60, "computing utilization")
    days = utilization_by_day(model)
    ctx.raise_if_cancelled()
    ctx.progress(85, "finding high-risk periods")
    levels = Counter(d.level for d in days)
    utils = [d.utilization for d in days if d.utilization != float("inf")]
    high = [d.as_dict() for d in days if d.level in HIGH_RISK]
    return {
        "timestamp": now_iso(),
        "period": period(start, params.days_ahead),
        "total_faculty": len(model.faculty),
        "average_utilization": round(sum(utils) / len(utils), 4) if utils else 0.0,
        "max_utilization": round(max(utils), 4) if utils else 0.0,
        "level_counts": {lvl: levels.get(lvl, 0)
                         for lvl in ("GREEN", "YELLOW", "ORANGE", "RED", "BLACK")},
        "high_risk_days_count": len(high),
        "high_risk_days": high,
        "high_risk_periods": high_risk_periods(days, program, model),
        "days": [d.as_dict() for d in days],
    }
