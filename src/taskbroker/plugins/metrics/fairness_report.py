"""``metrics_fairness_report``: weekly fairness of the current run, its trend and anomalies.

Weeks are non-overlapping 7-day periods ending on ``end_date`` (default today).  Each week's
value is the fairness metric (1 - Gini within cohorts) of the hours worked that week.  Weeks
with no assignment have no value and are left out of the trend.  The trend is the
least-squares slope of value against week number: ``improving`` when slope >
+TREND_THRESHOLD per week, ``declining`` when slope < -TREND_THRESHOLD, else ``stable``.
Anomalies are weeks whose value is below the fairness warning threshold.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.metrics import data
from taskbroker.plugins.metrics.computation import current_run_or_error
from taskbroker.plugins.metrics.fairness import cohort_fairness
from taskbroker.plugins.metrics.params import FairnessReportParams
from taskbroker.plugins.metrics.thresholds import FAIRNESS
from taskbroker.plugins.metrics.workload import Window, absent_days, window_assignments
from taskbroker.schedule.coverage import data_coverage
from taskbroker.schedule.program import Program

__all__ = ["TREND_THRESHOLD", "fairness_report", "least_squares_slope", "run", "trend"]

TREND_THRESHOLD = 0.005  # fairness points per week


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Slope of the least-squares line through (xs, ys); 0 with fewer than 2 distinct xs."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def trend(points: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """Slope and direction of ``(week number, value)`` points (weeks with a value only)."""
    rule = (f"improving if slope > {TREND_THRESHOLD}, declining if slope < "
            f"-{TREND_THRESHOLD}, else stable (fairness points per week)")
    if len(points) < 2:
        return {"slope_per_week": None, "direction": "insufficient_data",
                "threshold": TREND_THRESHOLD, "rule": rule, "weeks_used": len(points)}
    slope = least_squares_slope([p[0] for p in points], [p[1] for p in points])
    direction = ("improving" if slope > TREND_THRESHOLD
                 else "declining" if slope < -TREND_THRESHOLD else "stable")
    return {"slope_per_week": round(slope, 6), "direction": direction,
            "threshold": TREND_THRESHOLD, "rule": rule, "weeks_used": len(points)}


def _recommendations(weeks: list[dict[str, Any]], tr: dict[str, Any],
                     anomalies: list[dict[str, Any]]) -> list[str]:
    recs: list[str] = []
    if not any(w["value"] is not None for w in weeks):
        return ["No assignments in the report window: check that the current schedule run "
                "covers these weeks."]
    if tr["direction"] == "declining":
        recs.append(f"Fairness is declining by {abs(tr['slope_per_week']):.4f} per week; "
                    "review recent schedule runs for rules that concentrate hours.")
    if anomalies:
        worst = min(anomalies, key=lambda a: a["value"])
        cohort = worst["least_fair_cohort"]
        detail = worst["cohorts"].get(cohort, {})
        most = ", ".join(f"{r['person']} ({r['hours']} h)" for r in detail.get("most_loaded", []))
        least = ", ".join(f"{r['person']} ({r['hours']} h)"
                          for r in detail.get("least_loaded", []))
        recs.append(
            f"{len(anomalies)} week(s) below the warning threshold {FAIRNESS.warning_below}; "
            f"worst is the week of {worst['start_date']} ({worst['value']:.3f}), cohort "
            f"{cohort}: move hours from {most} to {least}.")
    empty = sum(1 for w in weeks if w["value"] is None)
    if empty:
        recs.append(f"{empty} of {len(weeks)} week(s) have no assignments and were not "
                    "assessed: choose end_date and weeks_back within the schedule, or load "
                    "the schedule for those weeks.")
    if not recs:
        recs.append("Fairness is within target every week; no action needed.")
    return recs


def fairness_report(
    program: Program, end: dt.date, weeks_back: int,
    *, tick: Callable[[], None] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """The report body: weekly values, overall, trend, anomalies, recommendations."""
    run_ = current_run_or_error(program)
    start = end - dt.timedelta(days=7 * weeks_back - 1)
    whole = Window(start, end)
    assignments = window_assignments(run_, whole)
    by_week: list[list[Any]] = [[] for _ in range(weeks_back)]
    for a in assignments:
        by_week[(a.date - start).days // 7].append(a)
    absences = absent_days(program, whole)
    weeks: list[dict[str, Any]] = []
    points: list[tuple[int, float]] = []
    for i in range(weeks_back):
        if tick:
            tick()
        if progress:
            progress(5 + 85 * i / weeks_back, f"week {i + 1} of {weeks_back}")
        w = Window(start + dt.timedelta(days=7 * i), start + dt.timedelta(days=7 * i + 6))
        row: dict[str, Any] = {"week": i + 1, "start_date": w.start.isoformat(),
                               "end_date": w.end.isoformat(), "assignments": len(by_week[i])}
        if not by_week[i]:
            weeks.append({**row, "value": None, "status": None, "least_fair_cohort": None,
                          "cohorts": {}, "note": "no assignments this week"})
            continue
        cf = cohort_fairness(program, w, by_week[i], absences)
        least = min(cf.cohorts, key=lambda k: cf.cohorts[k]["value"])
        points.append((i + 1, cf.value))
        weeks.append({**row, "value": round(cf.value, 4), "status": FAIRNESS.status(cf.value),
                      "least_fair_cohort": least, "cohorts": cf.cohorts})
    tr = trend(points)
    anomalies = [{k: w[k] for k in ("week", "start_date", "end_date", "value", "status",
                                    "least_fair_cohort", "cohorts")}
                 for w in weeks if w["value"] is not None and w["value"] < FAIRNESS.warning_below]
    overall = cohort_fairness(program, whole, assignments, absences)
    valued = [w["value"] for w in weeks if w["value"] is not None]
    covered = data_coverage(run_.assignments, whole.start, whole.end)
    empty = [w["week"] for w in weeks if w["value"] is None]
    warnings = covered.warnings() + ([f"{len(empty)} of {weeks_back} weeks have no "
                                      f"assignments (weeks {', '.join(map(str, empty))})"]
                                     if empty else [])
    return {
        "run_id": run_.id,
        "period": whole.as_dict(),
        "data_coverage": covered.as_dict(),
        "warnings": warnings,
        "weeks_back": weeks_back,
        "weekly": weeks,
        "overall_fairness": round(overall.value, 4),
        "mean_weekly_fairness": round(sum(valued) / len(valued), 4) if valued else None,
        "trend": tr,
        "anomaly_rule": f"weekly value < warning threshold {FAIRNESS.warning_below}",
        "thresholds": FAIRNESS.describe(),
        "anomalies": [{k: a[k] for k in a if k != "cohorts"} for a in anomalies],
        "recommendations": _recommendations(weeks, tr, anomalies),
    }


def run(params: FairnessReportParams, ctx: TaskContext) -> dict[str, Any]:
    """Handler of ``metrics_fairness_report``."""
    ctx.progress(0, "loading schedule")
    program = data.load_program()
    end = params.end_date or data.today(program)
    ctx.raise_if_cancelled()
    body = fairness_report(program, end, params.weeks_back, tick=ctx.raise_if_cancelled,
                           progress=ctx.progress)
    if params.detail != "full":
        # the recommendations and anomalies already name the people: each week keeps its
        # cohorts' values only
        for week in body["weekly"]:
            week["cohorts"] = {k: v["value"] for k, v in week["cohorts"].items()}
        body["omitted"] = {"weekly[].cohorts": "each week's cohorts are given by their values "
                           "only; detail='full' adds their sizes, mean hours and most and "
                           "least loaded people"}
    ctx.progress(100, "done")
    return {"timestamp": data.utcnow().isoformat(), **body}
