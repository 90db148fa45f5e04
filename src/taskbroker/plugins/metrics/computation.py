"""``metrics_computation``: fairness, coverage, compliance, workload and stability of a window."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.data.budget import cap
from taskbroker.plugins.metrics import data
from taskbroker.plugins.metrics.churn import diff_assignments
from taskbroker.plugins.metrics.compliance import compliance_metric
from taskbroker.plugins.metrics.coverage import coverage_metric
from taskbroker.plugins.metrics.fairness import fairness_metric
from taskbroker.plugins.metrics.params import ComputationParams
from taskbroker.plugins.metrics.workload import (
    Window,
    absent_days,
    window_assignments,
    workload_summary,
)
from taskbroker.schedule.coverage import data_coverage
from taskbroker.schedule.program import Program, Run

__all__ = ["NO_DATA_STATUS", "STABILITY_LEVELS", "analyze", "compute_metrics", "previous_run",
           "run", "stability"]

Progress = Callable[[float, str], None]
Tick = Callable[[], None]

#: with detail="summary": at most this many violations and residents are listed
VIOLATIONS_SHOWN = 25
PEOPLE_SHOWN = 100
#: the status of a metric computed over a window the schedule has no data for
NO_DATA_STATUS = "no_data"
STABILITY_LEVELS = {"stable": "churn_rate < 0.10", "moderate": "0.10 <= churn_rate < 0.25",
                    "unstable": "churn_rate >= 0.25"}


def _noop_progress(_pct: float, _msg: str) -> None:
    return None


def current_run_or_error(program: Program) -> Run:
    """The current run (newest successful); ValueError when the program has none."""
    run_ = program.current_run()
    if run_ is None:
        raise ValueError("the program has no successful schedule run to analyse")
    return run_


def previous_run(program: Program, run_: Run) -> Run | None:
    """The newest successful run created before ``run_``."""
    older = [r for r in program.runs
             if r.status == "success" and r.created_at < run_.created_at and r.id != run_.id]
    return max(older, key=lambda r: r.created_at) if older else None


def compute_metrics(
    program: Program, run_: Run | None, window: Window,
    *, tick: Tick | None = None, progress: Progress = _noop_progress, base: float = 0.0,
    span: float = 100.0, detail: str = "summary",
) -> dict[str, Any]:
    """The three metrics and the workload summary of ``run_`` within ``window`` (long lists
    cut unless ``detail`` is ``full``)."""
    assignments = window_assignments(run_, window)
    absences = absent_days(program, window)
    progress(base + 0.1 * span, "fairness")
    fairness = fairness_metric(program, window, assignments, absences)
    if tick:
        tick()
    progress(base + 0.35 * span, "coverage")
    coverage = coverage_metric(program, assignments, absences, tick)
    progress(base + 0.6 * span, "ACGME compliance")
    compliance = compliance_metric(program, window, assignments, tick)
    progress(base + 0.85 * span, "workload")
    workload = workload_summary(program, window, assignments, absences)
    cap(compliance["details"], "violations", VIOLATIONS_SHOWN, detail=detail,
        what="violations (residents in order, then periods)")
    cap(compliance["details"], "residents_with_violations", PEOPLE_SHOWN, detail=detail,
        what="residents with violations")
    metrics = {"fairness": fairness, "coverage": coverage, "compliance": compliance}
    covered = data_coverage(run_.assignments if run_ else (), window.start, window.end)
    if not covered.with_data:
        # computed over no schedule at all: the values are vacuous, their statuses say so
        for metric in metrics.values():
            metric["status"] = NO_DATA_STATUS
    return {"metrics": metrics, "workload": workload, "data_coverage": covered.as_dict(),
            "warnings": covered.warnings()}


def stability(program: Program, run_: Run, window: Window) -> dict[str, Any]:
    """Churn of ``run_`` against the previous successful run, within ``window``."""
    prev = previous_run(program, run_)
    if prev is None:
        return {"previous_run_id": None, "current_run_id": run_.id, "churn_rate": 0.0,
                "status": "stable", "levels": STABILITY_LEVELS,
                "note": "no earlier successful run to compare with"}
    diff = diff_assignments(window_assignments(prev, window), window_assignments(run_, window))
    rate = diff.churn_rate
    level = "stable" if rate < 0.10 else "moderate" if rate < 0.25 else "unstable"
    return {"previous_run_id": prev.id, "current_run_id": run_.id,
            "added": len(diff.added), "removed": len(diff.removed),
            "changed": len(diff.changed), "unchanged": diff.unchanged,
            "churn_rate": round(rate, 4), "people_affected": len(diff.per_person()),
            "most_churned_people": diff.per_person()[:10],
            "status": level, "levels": STABILITY_LEVELS,
            "definition": "per (person, date, half): added, removed, or changed (same block, "
            "different service or hours); churn_rate = differing / all keys in either run"}


def analyze(
    program: Program, window: Window, *, tick: Tick | None = None,
    progress: Progress = _noop_progress, detail: str = "summary",
) -> dict[str, Any]:
    """The ``schedule_analysis`` of the current run over ``window``."""
    run_ = current_run_or_error(program)
    out = compute_metrics(program, run_, window, tick=tick, progress=progress, base=5, span=85,
                          detail=detail)
    if tick:
        tick()
    progress(92, "stability")
    return {"run_id": run_.id, "period": window.as_dict(), **out,
            "stability": stability(program, run_, window)}


def run(params: ComputationParams, ctx: TaskContext) -> dict[str, Any]:
    """Handler of ``metrics_computation``."""
    ctx.progress(0, "loading schedule")
    program = data.load_program()
    window = params.window(data.today(program))
    ctx.raise_if_cancelled()
    analysis = analyze(program, window, tick=ctx.raise_if_cancelled, progress=ctx.progress,
                       detail=params.detail)
    ctx.progress(100, "done")
    return {"timestamp": data.utcnow().isoformat(), "period": window.as_dict(),
            "schedule_analysis": analysis}
