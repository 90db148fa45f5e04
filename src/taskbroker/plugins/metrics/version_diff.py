"""``metrics_version_diff``: compare two schedule runs' own assignments and their metrics.

Edits are defined in :mod:`taskbroker.plugins.metrics.churn` (added / removed / changed per
(person, date, half)).  Both runs are measured over the same window: the first to the last
date assigned in either run.  Deltas are run_id_2 minus run_id_1.

Summary rules:

* a metric *improved* / *declined* when its delta exceeds its tolerance
  (fairness 0.01, coverage and compliance 1 percentage point) up / down;
* ``improved``: at least one metric improved and none declined;
* ``significant_change``: churn_rate >= 0.10, or any |delta| >= its significance level
  (fairness 0.05, coverage and compliance 5 percentage points).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.data.budget import cap
from taskbroker.plugins.metrics import data
from taskbroker.plugins.metrics.churn import diff_assignments
from taskbroker.plugins.metrics.computation import compute_metrics
from taskbroker.plugins.metrics.params import VersionDiffParams
from taskbroker.plugins.metrics.workload import Window
from taskbroker.schedule.program import Assignment, Program

__all__ = ["SIGNIFICANCE", "SIGNIFICANT_CHURN", "TOLERANCE", "compare_runs", "run"]

TOLERANCE = {"fairness": 0.01, "coverage": 1.0, "compliance": 1.0}
SIGNIFICANCE = {"fairness": 0.05, "coverage": 5.0, "compliance": 5.0}
SIGNIFICANT_CHURN = 0.10
#: with detail="summary": edits listed per kind, people listed in per_person_churn
EDITS_SHOWN = 25
PEOPLE_SHOWN = 50


def _span(program: Program, *runs: Iterable[Assignment]) -> Window:
    dates = [a.date for r in runs for a in r]
    if not dates:
        today = data.today(program)
        return Window(today, today)
    return Window(min(dates), max(dates))


def compare_runs(program: Program, run_id_1: str, run_id_2: str,
                 *, ctx: TaskContext | None = None, detail: str = "summary") -> dict[str, Any]:
    """Diff and metric deltas of ``run_id_2`` against ``run_id_1`` (ValueError: unknown id)."""
    r1, r2 = program.run(run_id_1), program.run(run_id_2)
    tick = ctx.raise_if_cancelled if ctx else None
    progress = ctx.progress if ctx else (lambda _p, _m: None)
    progress(10, "diffing assignments")
    diff = diff_assignments(r1.assignments, r2.assignments)
    if tick:
        tick()
    window = _span(program, r1.assignments, r2.assignments)
    m1 = compute_metrics(program, r1, window, tick=tick, progress=progress, base=20, span=35,
                         detail=detail)
    m2 = compute_metrics(program, r2, window, tick=tick, progress=progress, base=55, span=35,
                         detail=detail)
    deltas: dict[str, Any] = {}
    improved_any = declined_any = significant = False
    # a run with no assignments in the window has vacuous metrics (coverage of zero slots is
    # 100 %): nothing is compared with it, and it is never "improved"
    empty = [rid for rid, m in ((r1.id, m1), (r2.id, m2))
             if not m["data_coverage"]["days_with_data"]]
    warnings = [f"run {rid} has no assignments in the compared period: its metrics are not "
                "comparable" for rid in empty]
    for name in ("fairness", "coverage", "compliance"):
        before = m1["metrics"][name]["value"]
        after = m2["metrics"][name]["value"]
        delta = round(after - before, 4)
        direction = ("not comparable" if empty
                     else "improved" if delta > TOLERANCE[name]
                     else "declined" if delta < -TOLERANCE[name] else "unchanged")
        improved_any |= direction == "improved"
        declined_any |= direction == "declined"
        significant |= abs(delta) >= SIGNIFICANCE[name]
        deltas[name] = {"run_1": before, "run_2": after, "delta": delta,
                        "status_1": m1["metrics"][name]["status"],
                        "status_2": m2["metrics"][name]["status"], "direction": direction}
    significant |= diff.churn_rate >= SIGNIFICANT_CHURN
    result: dict[str, Any] = {
        "run_id_1": r1.id,
        "run_id_2": r2.id,
        "period": window.as_dict(),
        "warnings": warnings,
        "changes": {**diff.as_dict(shown=None),
                    "definition": "per (person, date, half): added = only in run 2, removed = "
                    "only in run 1, changed = in both with a different service or hours"},
        "per_person_churn": diff.per_person(),
        "metric_deltas": deltas,
        "summary": {
            "improved": improved_any and not declined_any and not empty,
            "comparable": not empty,
            "significant_change": significant,
            "churn_rate": round(diff.churn_rate, 4),
            "rules": {
                "tolerance": TOLERANCE,
                "significance": SIGNIFICANCE,
                "significant_churn": SIGNIFICANT_CHURN,
                "improved": "at least one metric delta above its tolerance and none below "
                "minus its tolerance",
                "significant_change": f"churn_rate >= {SIGNIFICANT_CHURN} or any |delta| >= "
                "its significance level",
            },
        },
    }
    changes = result["changes"]
    changes.pop("listing_cap", None)
    for kind in ("added", "removed", "changed"):
        cap(changes, kind, EDITS_SHOWN, detail=detail, what=f"{kind} edits (in key order)")
    cap(result, "per_person_churn", PEOPLE_SHOWN, detail=detail,
        what="people (most churned first)")
    return result


def run(params: VersionDiffParams, ctx: TaskContext) -> dict[str, Any]:
    """Handler of ``metrics_version_diff``."""
    ctx.progress(0, "loading schedule")
    program = data.load_program()
    for run_id in (params.run_id_1, params.run_id_2):
        program.run(run_id)  # ValueError naming a missing id, before any work
    ctx.raise_if_cancelled()
    body = compare_runs(program, params.run_id_1, params.run_id_2, ctx=ctx,
                        detail=params.detail)
    ctx.progress(100, "done")
    return {"timestamp": data.utcnow().isoformat(), **body}
