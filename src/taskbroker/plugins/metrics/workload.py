"""Workload in a date window: who is available, hours per person, comparable cohorts."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from taskbroker.schedule.program import Assignment, Person, Program, Run

__all__ = [
    "Window",
    "absent_days",
    "available_people",
    "cohort_label",
    "cohorts",
    "hours_by_person",
    "window_assignments",
    "workload_summary",
]


@dataclass(frozen=True)
class Window:
    """An inclusive date range ``start`` .. ``end``."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"end_date {self.end} is before start_date {self.start}")

    @property
    def days(self) -> int:
        """Number of days in the window (both ends included)."""
        return (self.end - self.start).days + 1

    def __contains__(self, day: object) -> bool:
        return isinstance(day, dt.date) and self.start <= day <= self.end

    def as_dict(self) -> dict[str, Any]:
        """ISO start/end and length, for results."""
        return {"start_date": self.start.isoformat(), "end_date": self.end.isoformat(),
                "days": self.days}


def window_assignments(run: Run | None, window: Window) -> list[Assignment]:
    """The run's assignments dated inside ``window``."""
    if run is None:
        return []
    start, end = window.start, window.end
    return [a for a in run.assignments if start <= a.date <= end]


def absent_days(program: Program, window: Window) -> dict[str, set[dt.date]]:
    """Per person, the days of ``window`` covered by an *approved* absence."""
    out: dict[str, set[dt.date]] = defaultdict(set)
    for ab in program.absences:
        if ab.status != "approved":
            continue
        first, last = max(ab.start, window.start), min(ab.end, window.end)
        for k in range((last - first).days + 1):
            out[ab.person].add(first + dt.timedelta(days=k))
    return out


def available_people(
    program: Program,
    window: Window,
    absences: dict[str, set[dt.date]],
    loads: dict[str, float],
) -> list[Person]:
    """People who count in fairness: not on approved absence for the whole window, or loaded.

    A person absent every day of the window cannot be given work, so a zero load says
    nothing about fairness; anyone else with zero hours counts as an unloaded member.
    ``absences`` may cover more than ``window`` (a report's weeks share the absences of its
    whole period): only the days inside ``window`` count.
    """
    def away_all_window(person_id: str) -> bool:
        # only the absence days inside this window count (absences may cover a longer one)
        days = absences.get(person_id, ())
        return sum(1 for d in days if window.start <= d <= window.end) >= window.days

    return [p for p in program.people
            if loads.get(p.id, 0.0) > 0 or not away_all_window(p.id)]


def hours_by_person(assignments: Iterable[Assignment]) -> dict[str, float]:
    """Total hours per person id."""
    out: dict[str, float] = defaultdict(float)
    for a in assignments:
        out[a.person] += a.hours
    return dict(out)


def cohort_label(person: Person) -> str:
    """Comparable cohort of a person: ``faculty`` or ``pgy<level>`` for residents."""
    return "faculty" if person.kind == "faculty" else f"pgy{person.pgy}"


def cohorts(people: Iterable[Person]) -> dict[str, list[Person]]:
    """People grouped by :func:`cohort_label`, cohorts sorted by label."""
    out: dict[str, list[Person]] = defaultdict(list)
    for p in people:
        out[cohort_label(p)].append(p)
    return {k: out[k] for k in sorted(out)}


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "min": 0.0, "max": 0.0, "stdev": 0.0, "total": 0.0}
    return {
        "mean": round(statistics.fmean(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "stdev": round(statistics.pstdev(values), 2),
        "total": round(sum(values), 2),
    }


def workload_summary(
    program: Program, window: Window, assignments: Sequence[Assignment],
    absences: dict[str, set[dt.date]],
) -> dict[str, Any]:
    """Hours per cohort (mean/min/max/stdev/total over available people) and overall totals."""
    loads = hours_by_person(assignments)
    people = available_people(program, window, absences, loads)
    by_cohort = {
        label: {"people": len(members),
                "unloaded_people": sum(1 for p in members if loads.get(p.id, 0.0) == 0),
                **_stats([loads.get(p.id, 0.0) for p in members])}
        for label, members in cohorts(people).items()
    }
    weeks = window.days / 7
    return {
        "assignments": len(assignments),
        "total_hours": round(sum(loads.values()), 2),
        "people_counted": len(people),
        "people_fully_absent": len(program.people) - len(people),
        "hours_per_week_basis": round(weeks, 3),
        "by_cohort": by_cohort,
        "note": "hours are summed over the window; people on approved absence for the whole "
        "window and not assigned are left out",
    }
