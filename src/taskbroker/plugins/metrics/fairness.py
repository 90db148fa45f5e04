"""Fairness: 1 - Gini of hours within comparable cohorts (faculty; residents by PGY level).

Gini is computed from the sorted loads ``x_1 <= ... <= x_n`` as
``G = 2 * sum(i * x_i) / (n * sum(x)) - (n + 1) / n`` (equal to the mean absolute difference
over all ordered pairs divided by twice the mean).  All-zero or empty cohorts have G = 0.
Available people with zero hours count as members with load 0.  The program value is the
mean of the cohort values weighted by cohort size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskbroker.plugins.metrics.thresholds import FAIRNESS, metric_result
from taskbroker.plugins.metrics.workload import (
    Window,
    available_people,
    cohorts,
    hours_by_person,
)
from taskbroker.schedule.program import Assignment, Program

__all__ = ["CohortFairness", "cohort_fairness", "fairness_index", "fairness_metric", "gini"]

_SHOWN = 3


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of non-negative ``values`` in [0, 1); 0 for empty or all-zero input."""
    if any(v < 0 for v in values):
        raise ValueError("gini() needs non-negative values")
    n = len(values)
    total = float(sum(values))
    if n == 0 or total <= 0:
        return 0.0
    weighted = sum(i * v for i, v in enumerate(sorted(values), start=1))
    g = 2.0 * weighted / (n * total) - (n + 1) / n
    return min(1.0, max(0.0, g))


def fairness_index(values: Sequence[float]) -> float:
    """``1 - gini(values)``: 1.0 when everyone carries the same load."""
    return 1.0 - gini(values)


@dataclass(frozen=True)
class CohortFairness:
    """Fairness of one window: the program value and the per-cohort breakdown."""

    value: float
    cohorts: dict[str, dict[str, Any]]
    people_counted: int


def cohort_fairness(
    program: Program,
    window: Window,
    assignments: Sequence[Assignment],
    absences: dict[str, set[dt.date]],
) -> CohortFairness:
    """Per-cohort 1 - Gini of hours in ``window`` and their size-weighted mean."""
    loads = hours_by_person(assignments)
    people = available_people(program, window, absences, loads)
    out: dict[str, dict[str, Any]] = {}
    weighted = 0.0
    for label, members in cohorts(people).items():
        ranked = sorted(members, key=lambda p: (loads.get(p.id, 0.0), p.id))
        values = [loads.get(p.id, 0.0) for p in ranked]
        g = gini(values)
        weighted += (1.0 - g) * len(members)

        def row(p: Any) -> dict[str, Any]:
            return {"person": p.id, "name": p.name, "hours": round(loads.get(p.id, 0.0), 2)}

        out[label] = {
            "value": round(1.0 - g, 4),
            "gini": round(g, 4),
            "people": len(members),
            "unloaded_people": sum(1 for v in values if v == 0),
            "mean_hours": round(sum(values) / len(values), 2),
            "most_loaded": [row(p) for p in reversed(ranked[-_SHOWN:])],
            "least_loaded": [row(p) for p in ranked[:_SHOWN]],
        }
    value = weighted / len(people) if people else 1.0
    return CohortFairness(value=value, cohorts=out, people_counted=len(people))


def fairness_metric(
    program: Program,
    window: Window,
    assignments: Sequence[Assignment],
    absences: dict[str, set[dt.date]],
) -> dict[str, Any]:
    """The fairness metric (value, status, thresholds, benchmark, details)."""
    cf = cohort_fairness(program, window, assignments, absences)
    worst = min(cf.cohorts.items(), key=lambda kv: kv[1]["value"], default=None)
    return metric_result(FAIRNESS, cf.value, {
        "method": "1 - Gini of hours per person within each cohort (faculty; residents by "
        "PGY level); available people with zero hours count; program value = cohort values "
        "weighted by cohort size",
        "people_counted": cf.people_counted,
        "cohorts": cf.cohorts,
        "least_fair_cohort": worst[0] if worst else None,
        "note": None if assignments else "no assignments in the window: nobody carries load, "
        "so loads are trivially equal (value 1)",
    })
