"""Staffing of half-day blocks: the DESIGN.md definitions as a compact, bitmask model.

A *block* is (date, half).  A *slot* is (block, service) where the current schedule assigns at
least one person.  Its *requirement* is ``max(min_faculty, max_p ceil(residents of PGY p /
max_residents_per_faculty[p]))`` faculty.  A faculty member is *free* in a block when not
assigned in it, not on approved absence that date and not removed.  After removing a set S of
faculty, a slot's *deficit* is its requirement minus its remaining assigned faculty (never
below zero); the block *holds* when free qualified faculty, each used once, can cover every
deficit (a bipartite matching, :func:`block_holds`).

Choices where DESIGN.md is silent:

* People on approved absence are not counted even when the schedule assigns them (they are
  not there): an absent assigned faculty member does not staff the slot, an absent resident
  does not raise its requirement.
* A faculty member assigned to a slot counts for it whatever their qualifications (the
  schedule put them there); only *re*-assignment requires a qualification.
* Faculty assigned in a block are busy there: they are never moved to another slot of the
  same block, even when their own slot has surplus.

Faculty are numbered ``0..F-1`` (sorted ids) and sets of faculty are Python ints used as
bitmasks, which keeps the per-block work to a few integer operations.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from taskbroker.schedule.program import Program, Run, Service

__all__ = [
    "Block",
    "SlotState",
    "StaffingModel",
    "absent_dates",
    "bits",
    "block_holds",
    "block_units",
    "build_model",
    "cover_deficits",
    "match_units",
    "slot_requirement",
    "uncovered_slots",
]


def bits(mask: int) -> Iterator[int]:
    """The indices of the set bits of ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def slot_requirement(service: Service, residents_by_pgy: Mapping[int, int]) -> int:
    """Faculty a slot of ``service`` needs given how many residents of each PGY it holds."""
    need = service.min_faculty
    for pgy, count in residents_by_pgy.items():
        if count > 0:
            need = max(need, math.ceil(count / service.ratio_for(pgy)))
    return need


@dataclass(frozen=True, slots=True)
class SlotState:
    """One slot of a block: its service, requirement and present assigned faculty (bitmask)."""

    service: str
    requirement: int
    assigned: int
    residents: int = 0

    @property
    def surplus(self) -> int:
        """Assigned faculty minus requirement (negative: the slot is short before any loss)."""
        return self.assigned.bit_count() - self.requirement

    @property
    def deficit(self) -> int:
        """Faculty the slot still needs from the free pool."""
        return max(0, -self.surplus)


@dataclass(frozen=True, slots=True)
class Block:
    """A half-day block: its slots and the bitmask of its free faculty."""

    date: dt.date
    half: str
    slots: tuple[SlotState, ...]
    free: int

    @property
    def present(self) -> int:
        """Faculty present in the block (free or assigned)."""
        mask = self.free
        for s in self.slots:
            mask |= s.assigned
        return mask

    @property
    def label(self) -> str:
        """``YYYY-MM-DD AM`` style label."""
        return f"{self.date.isoformat()} {self.half}"


@dataclass(frozen=True)
class StaffingModel:
    """The blocks of a window of the current schedule, ready for staffing questions.

    Attributes:
        start, end: the window, inclusive.
        faculty: faculty ids; index ``i`` is bit ``1 << i`` in every mask.
        qual: service id -> bitmask of faculty qualified for it.
        blocks: blocks with at least one slot, in (date, half) order.
        services: service id -> :class:`Service`.
        present_by_date: date -> bitmask of faculty not on approved absence that date.
    """

    start: dt.date
    end: dt.date
    faculty: tuple[str, ...]
    qual: Mapping[str, int]
    blocks: tuple[Block, ...]
    services: Mapping[str, Service]
    present_by_date: Mapping[dt.date, int] = field(default_factory=dict)

    def ids(self, mask: int) -> list[str]:
        """Faculty ids of the bits set in ``mask``."""
        return [self.faculty[i] for i in bits(mask)]

    def mask(self, ids: Iterable[str]) -> int:
        """Bitmask of the faculty ``ids`` (unknown ids are ignored)."""
        index = {f: i for i, f in enumerate(self.faculty)}
        m = 0
        for f in ids:
            if f in index:
                m |= 1 << index[f]
        return m

    def dates(self) -> list[dt.date]:
        """Every date of the window."""
        return [self.start + dt.timedelta(days=i) for i in range((self.end - self.start).days + 1)]


def absent_dates(program: Program, start: dt.date, end: dt.date) -> dict[str, set[dt.date]]:
    """Person id -> dates in ``[start, end]`` covered by an approved absence."""
    out: dict[str, set[dt.date]] = defaultdict(set)
    for a in program.absences:
        if a.status != "approved":
            continue
        lo, hi = max(a.start, start), min(a.end, end)
        day = lo
        while day <= hi:
            out[a.person].add(day)
            day += dt.timedelta(days=1)
    return out


def build_model(
    program: Program, start: dt.date, days: int, run: Run | None = None
) -> StaffingModel:
    """Build the staffing model of ``days`` days from ``start`` of ``run`` (default current)."""
    end = start + dt.timedelta(days=days - 1)
    run = run if run is not None else program.current_run()
    faculty = tuple(sorted(p.id for p in program.people if p.kind == "faculty"))
    index = {f: i for i, f in enumerate(faculty)}
    people = {p.id: p for p in program.people}
    services = {s.id: s for s in program.services}
    qual: dict[str, int] = {s.id: 0 for s in program.services}
    for p in program.people:
        if p.kind == "faculty":
            for s in p.qualified:
                qual[s] |= 1 << index[p.id]
    absent = absent_dates(program, start, end)
    all_mask = (1 << len(faculty)) - 1
    present_by_date: dict[dt.date, int] = {}
    day = start
    while day <= end:
        m = all_mask
        for f, dates in absent.items():
            if day in dates and f in index:
                m &= ~(1 << index[f])
        present_by_date[day] = m
        day += dt.timedelta(days=1)

    # (date, half) -> service -> [assigned faculty mask, {pgy: residents}]
    grid: dict[tuple[dt.date, str], dict[str, list]] = defaultdict(dict)
    for a in run.assignments if run is not None else ():
        if a.date < start or a.date > end:
            continue
        slot = grid[(a.date, a.half)].setdefault(a.service, [0, defaultdict(int)])
        if a.date in absent.get(a.person, ()):
            continue  # the slot runs, but an absent person neither staffs nor loads it
        person = people[a.person]
        if person.kind == "faculty":
            slot[0] |= 1 << index[a.person]
        else:
            slot[1][person.pgy or 1] += 1
    blocks = []
    for (date, half) in sorted(grid):
        slots = []
        busy = 0
        for sid in sorted(grid[(date, half)]):
            fmask, res = grid[(date, half)][sid]
            busy |= fmask
            req = slot_requirement(services[sid], res)
            slots.append(SlotState(sid, req, fmask, sum(res.values())))
        blocks.append(Block(date, half, tuple(slots), present_by_date[date] & ~busy))
    return StaffingModel(start, end, faculty, qual, tuple(blocks), services, present_by_date)


def match_units(units: list[int], free: int) -> list[int]:
    """Match demand units (each a bitmask of acceptable faculty) to distinct free faculty.

    Kuhn's augmenting paths, units in order: a matched unit stays matched, so earlier units
    have priority and the result is a maximum matching.  Returns the faculty index chosen for
    each unit, -1 where none could be found.
    """
    owner: dict[int, int] = {}  # faculty -> unit

    def augment(u: int, seen: set[int]) -> bool:
        for f in bits(units[u] & free):
            if f in seen:
                continue
            seen.add(f)
            if f not in owner or augment(owner[f], seen):
                owner[f] = u
                return True
        return False

    for u in range(len(units)):
        augment(u, set())
    chosen = [-1] * len(units)
    for f, u in owner.items():
        chosen[u] = f
    return chosen


def cover_deficits(units: list[int], free: int) -> list[int] | None:
    """Like :func:`match_units`, but None unless every unit is covered."""
    chosen = match_units(units, free)
    return None if -1 in chosen else chosen


def block_units(block: Block, qual: Mapping[str, int], removed: int = 0) -> list[int]:
    """Demand units of ``block`` after removing ``removed``: a qual mask per missing faculty."""
    units: list[int] = []
    for s in block.slots:
        missing = s.requirement - (s.assigned & ~removed).bit_count()
        units.extend([qual.get(s.service, 0)] * max(0, missing))
    return units


def block_holds(block: Block, qual: Mapping[str, int], removed: int = 0) -> bool:
    """True when free, qualified, non-removed faculty can cover every deficit of ``block``."""
    units = block_units(block, qual, removed)
    return not units or cover_deficits(units, block.free & ~removed) is not None


def uncovered_slots(block: Block, qual: Mapping[str, int]) -> list[tuple[str, int]]:
    """(service, faculty missing) of the slots a maximum matching leaves short."""
    order = [s for s in block.slots for _ in range(s.deficit)]
    chosen = match_units([qual.get(s.service, 0) for s in order], block.free)
    missing: dict[str, int] = {}
    for s, f in zip(order, chosen, strict=True):
        if f < 0:
            missing[s.service] = missing.get(s.service, 0) + 1
    return sorted(missing.items())
