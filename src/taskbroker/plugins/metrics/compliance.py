"""Compliance: percent of residents meeting the ACGME duty-hour rules over a window.

Rules are checked on periods of 4 consecutive 7-day weeks ("averaged over 4 weeks"):

* ``max_80_hours_per_week``: hours in the period / 4 <= 80;
* ``one_day_in_seven_free``: days without any duty hours in the period >= 4 (one per week).

Periods start on the window's first day and step by one week while they fit; when days are
left over at the end, one more period ends exactly on the window's last day, so every day is
in some period.  A window of 7 to 27 days is checked as one period of its complete weeks
(averaged over those weeks, flagged ``short_window``); a window under 7 days is not checked.
Every violating (resident, rule, period) is listed with the period's weeks and the excess.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

from taskbroker.plugins.metrics.thresholds import COMPLIANCE, metric_result
from taskbroker.plugins.metrics.workload import Window
from taskbroker.schedule.program import Assignment, Person, Program

__all__ = ["MAX_WEEKLY_HOURS", "PERIOD_WEEKS", "compliance_metric", "periods"]

MAX_WEEKLY_HOURS = 80.0
PERIOD_WEEKS = 4
_EPS = 1e-9


def periods(days: int) -> tuple[int, list[int]]:
    """``(weeks per period, day offsets where periods start)`` for a window of ``days`` days."""
    n_weeks = min(PERIOD_WEEKS, days // 7)
    if n_weeks == 0:
        return 0, []
    length = 7 * n_weeks
    starts = list(range(0, days - length + 1, 7))
    if starts[-1] + length < days:
        starts.append(days - length)
    return n_weeks, starts


def compliance_metric(
    program: Program,
    window: Window,
    assignments: Sequence[Assignment],
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The compliance metric: share of residents with no violation, and every violation."""
    residents = [p for p in program.people if p.kind == "resident"]
    resident_ids = {p.id for p in residents}
    daily: dict[str, list[float]] = defaultdict(lambda: [0.0] * window.days)
    for a in assignments:
        if a.person in resident_ids and a.hours > 0:
            daily[a.person][(a.date - window.start).days] += a.hours
    n_weeks, starts = periods(window.days)
    length = 7 * n_weeks
    violations: list[dict[str, Any]] = []
    violators: set[str] = set()
    for i, p in enumerate(residents):
        if tick and i % 16 == 0:
            tick()
        days = daily.get(p.id)
        if days is None or not starts:
            continue  # no duty at all (or nothing to check): compliant
        hours_acc = [0.0, *accumulate(days)]
        duty_acc = [0, *accumulate(1 if h > 0 else 0 for h in days)]
        for s in starts:
            avg = (hours_acc[s + length] - hours_acc[s]) / n_weeks
            free = length - (duty_acc[s + length] - duty_acc[s])
            if avg > MAX_WEEKLY_HOURS + _EPS:
                violations.append({
                    **_who(p), **_span(window, s, n_weeks), "rule": "max_80_hours_per_week",
                    "measured": round(avg, 2), "limit": MAX_WEEKLY_HOURS,
                    "excess": round(avg - MAX_WEEKLY_HOURS, 2),
                    "unit": "average hours per week over the period"})
                violators.add(p.id)
            if free < n_weeks:
                violations.append({
                    **_who(p), **_span(window, s, n_weeks), "rule": "one_day_in_seven_free",
                    "measured": free, "limit": n_weeks, "excess": n_weeks - free,
                    "unit": "duty-free days in the period (excess = days missing)"})
                violators.add(p.id)
    total = len(residents)
    value = 100.0 * (total - len(violators)) / total if total else 100.0
    note = None
    if not starts:
        note = "window shorter than 7 days: duty-hour rules not checked"
    elif n_weeks < PERIOD_WEEKS:
        note = f"window shorter than 4 weeks: averaged over its {n_weeks} complete week(s)"
    return metric_result(COMPLIANCE, value, {
        "method": "periods of 4 consecutive 7-day weeks stepping by one week from the window "
        "start (plus one ending on the window end); in each: average weekly hours <= 80 and "
        "at least one duty-free day per week",
        "rules": {"max_80_hours_per_week": MAX_WEEKLY_HOURS,
                  "one_day_in_seven_free": "duty-free days >= weeks in the period"},
        "residents": total,
        "compliant_residents": total - len(violators),
        "residents_with_violations": sorted(violators),
        "periods_checked": len(starts),
        "weeks_per_period": n_weeks,
        "short_window": window.days < 7 * PERIOD_WEEKS,
        "note": note,
        "violation_count": len(violations),
        "violations": violations,
    })


def _who(p: Person) -> dict[str, Any]:
    return {"person": p.id, "name": p.name, "pgy": p.pgy}


def _span(window: Window, start: int, n_weeks: int) -> dict[str, Any]:
    first = window.start + dt.timedelta(days=start)
    return {
        "period_start": first.isoformat(),
        "period_end": (first + dt.timedelta(days=7 * n_weeks - 1)).isoformat(),
        "weeks": [(first + dt.timedelta(days=7 * k)).isoformat() for k in range(n_weeks)],
    }
