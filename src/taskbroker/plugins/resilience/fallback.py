"""``resilience_fallback_precompute``: the seven named scenarios, repaired and stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

from taskbroker.core.contract.tasktype import TaskCancelled, TaskContext
from taskbroker.plugins.resilience._common import (
    DaysAheadParams,
    now_iso,
    period,
    require_schedule,
    resolve_store,
    window_coverage,
    window_start,
)
from taskbroker.schedule.contingency import analyse
from taskbroker.schedule.fallback import SCENARIOS, build_scenario, repair
from taskbroker.schedule.staffing import build_model
from taskbroker.schedule.store import ScheduleStore

__all__ = ["run"]


def run(params: DaysAheadParams, ctx: TaskContext, *,
        store: ScheduleStore | None = None) -> dict[str, Any]:
    """Build, repair and store a fallback schedule for every scenario."""
    days = params.days_ahead
    st = resolve_store(store)
    ctx.progress(0, "loading the schedule")
    program = st.load_program()
    require_schedule(program)
    start = window_start(params.start_date, program)
    end = start + dt.timedelta(days=days - 1)
    ctx.raise_if_cancelled()
    ctx.progress(5, "contingency analysis (to pick the worst losses)")
    contingency = analyse(build_model(program, start, days),
                          on_block=lambda d, t: ctx.raise_if_cancelled())
    current = program.current_run()
    computed: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for i, name in enumerate(SCENARIOS):
        ctx.raise_if_cancelled()
        ctx.progress(10 + 85 * i / len(SCENARIOS), f"scenario {name}")
        try:
            scenario = build_scenario(name, program, start, days, contingency)
            plan = repair(program, scenario, start, days)
            saved = st.save_fallback(
                scenario=name, description=scenario.description,
                coverage_rate=plan.coverage_rate, valid_from=start, valid_until=end,
                services_reduced=plan.services_reduced,
                removed_people=sorted(scenario.removed),
                run_id=current.id if current else None,
                details={"required": plan.required, "staffed": plan.staffed,
                         "reassigned": plan.reassigned,
                         "moved_from_non_essential": plan.moved_from_non_essential,
                         "short_slots_count": len(plan.short_slots),
                         "short_slots": plan.short_slots[:50]},
                assignments=[[a.person, a.date.isoformat(), a.half, a.service, a.hours]
                             for a in plan.assignments],
            )
        except TaskCancelled:
            raise
        except Exception as exc:  # one scenario failing must not lose the others
            ctx.log.exception("fallback scenario %s failed", name)
            failed.append({"scenario": name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        computed.append({
            "scenario": name, "description": scenario.description,
            "coverage_rate": plan.coverage_rate, "services_reduced": plan.services_reduced,
            "removed_people": sorted(scenario.removed), "reassigned": plan.reassigned,
            "short_slots_count": len(plan.short_slots), "valid_until": saved["valid_until"],
            "fallback_id": saved["id"],
        })
    ctx.progress(100, "done")
    coverage = window_coverage(program, start, days)
    return {
        "timestamp": now_iso(),
        "period": period(start, days),
        "data_coverage": coverage.as_dict(),
        # coverage rates only speak for the days with schedule data
        "warnings": coverage.warnings(),
        "run_id": current.id if current else None,
        "scenarios_computed": len(computed),
        "scenarios_failed": len(failed),
        "scenarios": computed,
        "failures": failed,
    }
