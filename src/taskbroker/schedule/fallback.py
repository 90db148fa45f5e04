"""Fallback schedules: named loss scenarios, each repaired by reassignment.

A scenario removes faculty (for all or only the first days of the window), suspends services
and may raise demand.  :func:`repair` then rebuilds every block of the window:

1. assignments of removed faculty are dropped; slots of suspended services are dropped
   (their faculty become free; their residents are released and not rescheduled);
2. slot requirements are recomputed (times the scenario's surge factor);
3. deficits are covered by a maximum matching of *free* faculty - present that date (no
   approved absence), not removed, not already assigned in the block, qualified for the
   service - essential services' units first;
4. essential units still open take qualified faculty from non-essential slots of the block.

Nobody is ever assigned twice in a block, while absent, or to a service they are not
qualified for (step 4 moves a person, it does not duplicate them).

``coverage_rate`` = staffed required faculty positions / required positions of the services
that still run; ``services_reduced`` = suspended services plus services left with a slot
below requirement.  The scenario choices (which people) are deterministic:

* ``1_faculty_loss``: the faculty member whose loss breaks the most blocks (N-1), else the
  most-loaded one;
* ``2_faculty_loss``: the worst fatal pair (N-2), else the two most-loaded;
* ``pcs_season_50_percent``: half the faculty (every second by load rank) leave;
* ``holiday_skeleton``: non-essential services suspended, a third of the faculty away;
* ``pandemic_essential_only``: non-essential services suspended, 30 % of faculty out sick;
* ``mass_casualty_event``: non-essential services suspended, essential demand +50 %;
* ``weather_emergency``: 40 % of faculty cannot come in and non-essential services are
  suspended for the first three days.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from taskbroker.schedule.contingency import ContingencyResult
from taskbroker.schedule.program import Assignment, Program
from taskbroker.schedule.staffing import absent_dates, match_units, slot_requirement

__all__ = ["SCENARIOS", "FallbackPlan", "Scenario", "build_scenario", "repair"]

SCENARIOS: tuple[str, ...] = (
    "1_faculty_loss",
    "2_faculty_loss",
    "pcs_season_50_percent",
    "holiday_skeleton",
    "pandemic_essential_only",
    "mass_casualty_event",
    "weather_emergency",
)


@dataclass(frozen=True)
class Scenario:
    """What a scenario takes away: faculty, services, for how many days, and demand surge."""

    name: str
    description: str
    removed: frozenset[str] = frozenset()
    suspended: frozenset[str] = frozenset()
    surge: float = 1.0
    first_days: int | None = None


@dataclass
class FallbackPlan:
    """A repaired schedule for one scenario and its coverage figures."""

    scenario: Scenario
    assignments: list[Assignment]
    required: int
    staffed: int
    services_reduced: list[str]
    reassigned: int
    moved_from_non_essential: int
    short_slots: list[dict[str, object]] = field(default_factory=list)

    @property
    def coverage_rate(self) -> float:
        """Staffed / required faculty positions of the services that still run."""
        return 1.0 if self.required == 0 else round(self.staffed / self.required, 4)


def _load(program: Program, start: dt.date, end: dt.date) -> Counter[str]:
    run = program.current_run()
    fac = {p.id for p in program.people if p.kind == "faculty"}
    return Counter(a.person for a in (run.assignments if run else ())
                   if a.person in fac and start <= a.date <= end)


def build_scenario(name: str, program: Program, start: dt.date, days: int,
                   contingency: ContingencyResult | None = None) -> Scenario:
    """The concrete :class:`Scenario` ``name`` for this program and window."""
    end = start + dt.timedelta(days=days - 1)
    faculty = sorted(p.id for p in program.people if p.kind == "faculty")
    load = _load(program, start, end)
    by_load = sorted(faculty, key=lambda f: (-load[f], f))
    non_essential = frozenset(s.id for s in program.services if not s.essential)
    rng = random.Random(name)

    def share(fraction: float) -> frozenset[str]:
        return frozenset(rng.sample(faculty, k=math.floor(len(faculty) * fraction)))

    if name == "1_faculty_loss":
        if contingency and contingency.n1:
            who = max(contingency.n1, key=lambda f: (len(contingency.n1[f]), f))
            why = f"loss of {who}, the faculty member whose absence breaks the most blocks"
        else:
            who = by_load[0] if by_load else ""
            why = f"loss of {who}, the most-loaded faculty member"
        return Scenario(name, why, removed=frozenset({who} - {""}))
    if name == "2_faculty_loss":
        if contingency and contingency.n2_counts:
            pair = max(contingency.n2_counts, key=lambda p: (contingency.n2_counts[p], p))
            why = f"loss of {pair[0]} and {pair[1]}, the worst fatal pair"
        else:
            pair = tuple(by_load[:2])
            why = f"loss of {' and '.join(pair)}, the two most-loaded faculty"
        return Scenario(name, why, removed=frozenset(pair))
    if name == "pcs_season_50_percent":
        return Scenario(name, "PCS season: half of the faculty transfer out",
                        removed=frozenset(by_load[1::2]))
    if name == "holiday_skeleton":
        return Scenario(name, "holiday skeleton crew: essential services only, a third away",
                        removed=share(1 / 3), suspended=non_essential)
    if name == "pandemic_essential_only":
        return Scenario(name, "pandemic: essential services only, 30% of faculty out sick",
                        removed=share(0.3), suspended=non_essential)
    if name == "mass_casualty_event":
        return Scenario(name, "mass casualty: essential demand +50%, non-essential suspended",
                        suspended=non_essential, surge=1.5)
    if name == "weather_emergency":
        return Scenario(name, "weather emergency: 40% of faculty cannot come in for 3 days, "
                        "non-essential services suspended meanwhile",
                        removed=share(0.4), suspended=non_essential, first_days=3)
    raise ValueError(f"unknown fallback scenario {name!r}; known: {', '.join(SCENARIOS)}")


def repair(program: Program, scenario: Scenario, start: dt.date, days: int) -> FallbackPlan:
    """Apply ``scenario`` to the current schedule's window and repair it by reassignment."""
    end = start + dt.timedelta(days=days - 1)
    run = program.current_run()
    people = {p.id: p for p in program.people}
    services = {s.id: s for s in program.services}
    faculty = sorted(p.id for p in program.people if p.kind == "faculty")
    index = {f: i for i, f in enumerate(faculty)}
    qual: dict[str, int] = defaultdict(int)
    for f in faculty:
        for s in people[f].qualified:
            qual[s] |= 1 << index[f]
    away = absent_dates(program, start, end)
    removed_mask = sum(1 << index[f] for f in scenario.removed if f in index)
    cells: dict[tuple[dt.date, str], dict[str, list[Assignment]]] = defaultdict(
        lambda: defaultdict(list))
    for a in run.assignments if run else ():
        if start <= a.date <= end:
            group = cells[(a.date, a.half)][a.service]  # the slot runs even if all are away
            if a.date not in away.get(a.person, ()):
                group.append(a)

    plan = FallbackPlan(scenario, [], 0, 0, [], 0, 0)
    reduced: set[str] = set()
    for (date, half) in sorted(cells):
        active = scenario.first_days is None or (date - start).days < scenario.first_days
        removed = removed_mask if active else 0
        suspended = scenario.suspended if active else frozenset()
        surge = scenario.surge if active else 1.0
        present = 0
        for f in faculty:
            if date not in away.get(f, ()):
                present |= 1 << index[f]
        original = {(a.person, sid): a for sid, group in cells[(date, half)].items()
                    for a in group}
        staff: dict[str, list[str]] = {}
        need: dict[str, int] = {}
        residents: dict[str, list[Assignment]] = {}
        for sid, group in sorted(cells[(date, half)].items()):
            if sid in suspended:
                continue
            counts: Counter[int] = Counter()
            fac_here = []
            for a in group:
                person = people[a.person]
                if person.kind == "resident":
                    counts[person.pgy or 1] += 1
                elif not (removed >> index[a.person]) & 1:
                    fac_here.append(a.person)
            residents[sid] = [a for a in group if people[a.person].kind == "resident"]
            staff[sid] = fac_here
            need[sid] = math.ceil(slot_requirement(services[sid], counts) * surge)
        busy = sum(1 << index[f] for fs in staff.values() for f in fs)
        free = present & ~removed & ~busy
        order = sorted(staff, key=lambda s: (not services[s].essential, s))
        units = [s for s in order for _ in range(max(0, need[s] - len(staff[s])))]
        chosen = match_units([qual[s] for s in units], free)
        for sid, f in zip(units, chosen, strict=True):
            if f >= 0:
                staff[sid].append(faculty[f])
                plan.reassigned += 1
        # essential units still open: move qualified faculty off non-essential slots
        for sid in order:
            if not services[sid].essential:
                continue
            while len(staff[sid]) < need[sid]:
                donor = next(((d, f) for d in order if not services[d].essential
                              for f in staff[d] if sid in people[f].qualified), None)
                if donor is None:
                    break
                staff[donor[0]].remove(donor[1])
                staff[sid].append(donor[1])
                plan.moved_from_non_essential += 1
        for sid in order:
            plan.required += need[sid]
            plan.staffed += min(need[sid], len(staff[sid]))
            if len(staff[sid]) < need[sid]:
                reduced.add(sid)
                plan.short_slots.append({"block": f"{date.isoformat()} {half}", "service": sid,
                                         "required": need[sid], "staffed": len(staff[sid])})
            for f in staff[sid]:
                kept = original.get((f, sid))
                plan.assignments.append(kept or Assignment(person=f, date=date, half=half,
                                                           service=sid, hours=4.0))
            plan.assignments.extend(residents[sid])
        reduced.update(s for s in cells[(date, half)] if s in suspended)
    plan.services_reduced = sorted(reduced)
    return plan
