"""``resilience_utilization_forecast``: per-day utilization, levels and high-risk periods."""

from __future__ import annotations

from collections import Counter
from typing import Any

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.data.budget import cap
from taskbroker.plugins.resilience._common import (
    DaysAheadParams,
    load_window,
    now_iso,
    period,
    window_coverage,
)
from taskbroker.schedule.store import ScheduleStore
from taskbroker.schedule.utilization import (
    HIGH_RISK,
    NO_DATA,
    high_risk_periods,
    mark_days_without_data,
    utilization_by_day,
)

__all__ = ["DAYS_SHOWN", "PERIODS_SHOWN", "run"]

#: with detail="summary": the first this many days (and high-risk days); all levels are counted
DAYS_SHOWN = 60
PERIODS_SHOWN = 10
PEOPLE_SHOWN = 20


def run(params: DaysAheadParams, ctx: TaskContext, *,
        store: ScheduleStore | None = None) -> dict[str, Any]:
    """Forecast faculty utilization for ``params.days_ahead`` days with approved absences."""
    program, start, model = load_window(params, ctx, store, model_progress=30)
    coverage = window_coverage(program, start, params.days_ahead)
    ctx.progress(60, "computing utilization")
    days = mark_days_without_data(utilization_by_day(model), coverage.has)
    ctx.raise_if_cancelled()
    ctx.progress(85, "finding high-risk periods")
    levels = Counter(d.level for d in days)
    # averages and maxima over the days with data only (a day without data is unknown, not 0)
    utils = [d.utilization for d in days
             if d.level != NO_DATA and d.utilization != float("inf")]
    high = [d.as_dict() for d in days if d.level in HIGH_RISK]
    result: dict[str, Any] = {
        "timestamp": now_iso(),
        "period": period(start, params.days_ahead),
        "data_coverage": coverage.as_dict(),
        "warnings": coverage.warnings(),
        "total_faculty": len(model.faculty),
        "average_utilization": round(sum(utils) / len(utils), 4) if utils else None,
        "max_utilization": round(max(utils), 4) if utils else None,
        "level_counts": {lvl: levels.get(lvl, 0)
                         for lvl in ("GREEN", "YELLOW", "ORANGE", "RED", "BLACK", NO_DATA)},
        "high_risk_days_count": len(high),
        "high_risk_days": high,
        "high_risk_periods": high_risk_periods(days, program, model),
        "days": [d.as_dict() for d in days],
    }
    cap(result, "high_risk_days", DAYS_SHOWN, detail=params.detail, what="high-risk days")
    cap(result, "high_risk_periods", PERIODS_SHOWN, detail=params.detail,
        what="high-risk periods")
    for entry in result["high_risk_periods"]:
        cap(entry, "absent_faculty", PEOPLE_SHOWN, detail=params.detail,
            what="absent faculty")
    cap(result, "days", DAYS_SHOWN, detail=params.detail, what="days (the first ones)")
    return result
