"""Coverage: percent of required slots staffed with enough faculty.

A slot is (date, half, service) in which the run assigns at least one person.  Its
requirement (DESIGN.md) is ``max(min_faculty, max over PGY p of ceil(residents of PGY p /
ratio_for(p)))`` faculty.  Only people present count: an assignment on a day of approved
absence neither supervises nor needs supervision.  A slot is *required* when its requirement
is at least 1, and *staffed* when its present faculty meet the requirement.  The requirement
is :func:`taskbroker.schedule.staffing.slot_requirement`, shared with the resilience plugin.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from taskbroker.plugins.metrics.thresholds import COVERAGE, metric_result
from taskbroker.schedule.program import Assignment, Program
from taskbroker.schedule.staffing import slot_requirement

__all__ = ["coverage_metric", "slot_requirement"]

UNSTAFFED_SHOWN = 50


def coverage_metric(
    program: Program,
    assignments: Sequence[Assignment],
    absences: dict[str, set[dt.date]],
    tick: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The coverage metric over ``assignments`` (already restricted to the window)."""
    people = {p.id: p for p in program.people}
    services = {s.id: s for s in program.services}
    faculty: dict[tuple[dt.date, str, str], int] = defaultdict(int)
    residents: dict[tuple[dt.date, str, str], dict[int, int]] = defaultdict(
        lambda: defaultdict(int))
    absent_assignments = 0
    for a in assignments:
        key = (a.date, a.half, a.service)
        slot_residents = residents[key]  # the slot exists even if everyone in it is absent
        if a.date in absences.get(a.person, ()):
            absent_assignments += 1
            continue
        p = people[a.person]
        if p.kind == "faculty":
            faculty[key] += 1
        else:
            slot_residents[p.pgy or 1] += 1
    if tick:
        tick()
    required = staffed = 0
    unstaffed: list[dict[str, Any]] = []
    deficit_total = 0
    for key in sorted(residents):
        day, half, service_id = key
        need = slot_requirement(services[service_id], residents[key])
        if need <= 0:
            continue
        required += 1
        have = faculty.get(key, 0)
        if have >= need:
            staffed += 1
        else:
            deficit_total += need - have
            unstaffed.append({"date": day.isoformat(), "half": half, "service": service_id,
                              "required_faculty": need, "present_faculty": have,
                              "deficit": need - have})
    value = 100.0 * staffed / required if required else 100.0
    return metric_result(COVERAGE, value, {
        "method": "slot requirement = max(min_faculty, max over PGY p of ceil(residents of "
        "PGY p / max residents per faculty for p)); staffed when present faculty >= "
        "requirement; people on approved absence are not present",
        "slots": len(residents),
        "required_slots": required,
        "staffed_slots": staffed,
        "unstaffed_total": len(unstaffed),
        "faculty_deficit_total": deficit_total,
        "assignments_on_approved_absence": absent_assignments,
        "unstaffed_slots": unstaffed[:UNSTAFFED_SHOWN],
        "unstaffed_shown": min(len(unstaffed), UNSTAFFED_SHOWN),
        "note": None if required else "no slot in the window needs faculty; value is 100",
    })
