"""A seeded generator of realistic synthetic residency programs.

What it makes (deterministic for a seed):

* services: inpatient wards, ICU, emergency (essential), clinics, consults and one niche
  service with only three qualified faculty (a deliberate weak spot);
* faculty qualified for a home service plus one to three others; residents PGY 1-3 on
  four-week rotations, working weekdays and one weekend day on essential services;
* absences (vacation, conference, sick, parental) at about ``absence_rate`` of person-days,
  80 % approved, 15 % pending, 5 % denied, plus a few "department conference" clusters where
  a third of the faculty is away at once (days that run hot and lose coverage);
* a schedule that staffs each slot to its requirement with the least-loaded free qualified
  faculty (sometimes one spare), leaving slots short only when nobody is left;
* three runs: an older successful version, a failed attempt, and the current successful one,
  so version comparisons have something to compare.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections import defaultdict

from taskbroker.schedule.program import (
    Absence,
    Assignment,
    Person,
    Program,
    ProgramInfo,
    Run,
    Service,
)
from taskbroker.schedule.staffing import slot_requirement

__all__ = ["GENERATED_TIMEZONE", "generate_program"]

#: the time zone of generated programs (their dates start on today there)
GENERATED_TIMEZONE = "America/New_York"

_SERVICES = [
    ("inpatient", "Inpatient Medicine", True, {"1": 2, "2": 4, "3": 4}),
    ("icu", "Intensive Care Unit", True, {"1": 1, "2": 2, "3": 3}),
    ("emergency", "Emergency Department", True, {"1": 2, "2": 3, "3": 4}),
    ("clinic", "Continuity Clinic", False, {"1": 2, "2": 4, "3": 4}),
    ("consults", "Consult Service", False, {"1": 2, "2": 4, "3": 4}),
    ("procedures", "Procedures", False, {"1": 1, "2": 2, "3": 4}),
    ("cardiology", "Cardiology", False, {"1": 2, "2": 4, "3": 4}),
    ("oncology", "Oncology", False, {"1": 2, "2": 4, "3": 4}),
]
_NICHE = ("nuclear", "Nuclear Medicine", False, {"1": 1, "2": 2, "3": 2})
_ABSENCE_TYPES = [("vacation", 5, 0.45), ("conference", 3, 0.25), ("sick", 1, 0.25),
                  ("parental", 14, 0.05)]
_TARGET_UTILIZATION = 0.58


def _services(count: int, faculty: int) -> list[Service]:
    specs = list(_SERVICES[: max(0, count - 1)])
    i = 2
    while len(specs) < count - 1:
        base = _SERVICES[len(specs) % len(_SERVICES)]
        specs.append((f"{base[0]}-{i}", f"{base[1]} {i}", base[2], base[3]))
        i += 1
    if count >= 1:
        specs.append(_NICHE)
    weights = [3 if essential else 2 for _, _, essential, _ in specs[:-1]]
    total = sum(weights) or 1
    out = []
    for j, (sid, name, essential, ratios) in enumerate(specs):
        if j == len(specs) - 1:
            min_fac = 1
        else:
            min_fac = max(1, round(_TARGET_UTILIZATION * faculty * weights[j] / total * 0.9))
        out.append(Service(id=sid, name=name, min_faculty=min_fac, essential=essential,
                           max_residents_per_faculty=dict(ratios)))
    return out


def _absences(rng: random.Random, people: list[Person], start: dt.date, days: int,
              rate: float) -> list[Absence]:
    out: list[Absence] = []
    types, lengths, weights = zip(*[(t, n, w) for t, n, w in _ABSENCE_TYPES], strict=True)
    for p in people:
        target = rate * days
        used = 0
        while used < target:
            k = rng.choices(range(len(types)), weights=weights)[0]
            length = max(1, lengths[k] + rng.randint(-1, 1))
            first = start + dt.timedelta(days=rng.randrange(max(1, days)))
            status = rng.choices(["approved", "pending", "denied"], weights=[80, 15, 5])[0]
            out.append(Absence(person=p.id, start=first,
                               end=first + dt.timedelta(days=length - 1),
                               type=types[k], status=status))
            used += length
    faculty = [p for p in people if p.kind == "faculty"]
    for offset in range(min(20, days // 2), days - 2, 45) if days >= 6 else ():
        first = start + dt.timedelta(days=offset)
        for p in rng.sample(faculty, k=max(1, len(faculty) // 3)):
            out.append(Absence(person=p.id, start=first, end=first + dt.timedelta(days=2),
                               type="conference", status="approved"))
    return out


def _schedule(rng: random.Random, program_services: list[Service], people: list[Person],
              absences: list[Absence], start: dt.date, days: int) -> list[Assignment]:
    away: dict[str, set[dt.date]] = defaultdict(set)
    for a in absences:
        if a.status == "approved":
            d = a.start
            while d <= a.end:
                away[a.person].add(d)
                d += dt.timedelta(days=1)
    faculty = [p for p in people if p.kind == "faculty"]
    residents = [p for p in people if p.kind == "resident"]
    niche = program_services[-1]
    rotating = [s for s in program_services if s is not niche] or program_services
    load: dict[str, int] = defaultdict(int)
    out: list[Assignment] = []
    for day_no in range(days):
        date = start + dt.timedelta(days=day_no)
        weekend = date.weekday() >= 5
        for half in ("AM", "PM"):
            cells: dict[str, list[Person]] = defaultdict(list)
            for r_no, r in enumerate(residents):
                svc = rotating[(r_no + day_no // 28) % len(rotating)]
                if date in away[r.id]:
                    continue
                if weekend and (not svc.essential or (date.weekday() - 5) != r_no % 2):
                    continue
                cells[svc.id].append(r)
            running = [s for s in rotating if s.essential or not weekend]
            if niche is not rotating[0] and not weekend and half == "AM":
                running.append(niche)
            busy: set[str] = set()
            for r_list in cells.values():
                busy.update(r.id for r in r_list)
            # the niche service first: it has the fewest qualified people
            for svc in sorted(running, key=lambda s: (s is not niche, s.id)):
                counts: dict[int, int] = defaultdict(int)
                for r in cells.get(svc.id, []):
                    counts[r.pgy or 1] += 1
                need = slot_requirement(svc, counts)
                if rng.random() < 0.3:
                    need += 1
                pool = [f for f in faculty if svc.id in f.qualified and f.id not in busy
                        and date not in away[f.id]]
                pool.sort(key=lambda f: (load[f.id], rng.random()))
                chosen = pool[:need]
                if not chosen and not cells.get(svc.id):
                    continue
                for f in chosen:
                    busy.add(f.id)
                    load[f.id] += 1
                    out.append(Assignment(person=f.id, date=date, half=half,
                                          service=svc.id, hours=4.0))
                for r in cells.get(svc.id, []):
                    out.append(Assignment(person=r.id, date=date, half=half,
                                          service=svc.id, hours=5.0 if half == "PM" else 4.0))
    return out


def generate_program(
    *,
    seed: int = 0,
    faculty: int = 40,
    residents: int = 60,
    days: int = 90,
    services: int = 6,
    absence_rate: float = 0.05,
    start: dt.date | None = None,
) -> Program:
    """A realistic synthetic program of ``days`` days from ``start`` (default today in the
    program's time zone, :data:`GENERATED_TIMEZONE`).

    Deterministic for a given argument set; see the module docstring for what it contains.
    """
    if faculty < 1 or residents < 0 or days < 1 or services < 1:
        raise ValueError("faculty, days and services must be >= 1, residents >= 0")
    info = ProgramInfo(name=f"Synthetic Residency Program (seed {seed})",
                       timezone=GENERATED_TIMEZONE)
    start = start or info.today()  # today where the program is, not on this machine
    rng = random.Random(seed)
    svcs = _services(services, faculty)
    ids = [s.id for s in svcs]
    niche = ids[-1]
    people: list[Person] = []
    for i in range(faculty):
        home = ids[i % max(1, len(ids) - 1)] if len(ids) > 1 else ids[0]
        others = [s for s in ids[:-1] if s != home]
        quals = [home, *rng.sample(others, k=min(len(others), rng.randint(1, 3)))]
        if i < 3 and niche not in quals:
            quals.append(niche)
        people.append(Person(id=f"fac-{i + 1:03d}", name=f"Dr. Faculty {i + 1}",
                             kind="faculty", qualified=tuple(quals)))
    for i in range(residents):
        people.append(Person(id=f"res-{i + 1:03d}", name=f"Resident {i + 1}", kind="resident",
                             pgy=1 + i % 3, qualified=tuple(ids)))
    absences = _absences(rng, people, start, days, absence_rate)
    created = dt.datetime.combine(start, dt.time(6, 0), tzinfo=dt.UTC)
    old_rng = random.Random(seed + 1_000_003)
    older = Run(id=str(uuid.UUID(int=rng.getrandbits(128))),
                created_at=created - dt.timedelta(days=7), status="success",
                assignments=tuple(_schedule(old_rng, svcs, people, absences, start, days)))
    failed = Run(id=str(uuid.UUID(int=rng.getrandbits(128))),
                 created_at=created - dt.timedelta(days=1), status="failed")
    current = Run(id=str(uuid.UUID(int=rng.getrandbits(128))), created_at=created,
                  status="success",
                  assignments=tuple(_schedule(rng, svcs, people, absences, start, days)))
    return Program(program=info,
                   services=tuple(svcs), people=tuple(people), absences=tuple(absences),
                   runs=(older, failed, current))
