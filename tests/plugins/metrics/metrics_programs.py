"""Hand-made programs for the metrics tests (imported by the test modules of this folder)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from taskbroker.schedule.program import (
    Absence,
    Assignment,
    Person,
    Program,
    ProgramInfo,
    Run,
    Service,
)

D0 = dt.date(2025, 1, 6)  # a Monday; the 3-person window is D0 .. D0 + 27 (4 whole weeks)
MED = Service(id="med", name="Medicine", min_faculty=1,
              max_residents_per_faculty={"1": 2, "2": 4, "3": 4})
SURG = Service(id="surg", name="Surgery", min_faculty=1,
               max_residents_per_faculty={"1": 2, "2": 4, "3": 4})
F = Person(id="F", name="Dr F", kind="faculty", qualified=("med", "surg"))
R1 = Person(id="R1", name="Res One", kind="resident", pgy=1, qualified=("med", "surg"))
R2 = Person(id="R2", name="Res Two", kind="resident", pgy=1, qualified=("med", "surg"))


def day(k: int) -> dt.date:
    """D0 + k days."""
    return D0 + dt.timedelta(days=k)


def asg(person: str, date: dt.date, half: str, hours: float, service: str = "med") -> Assignment:
    """One assignment."""
    return Assignment(person=person, date=date, half=half, service=service,  # type: ignore[arg-type]
                      hours=hours)


def make_program(
    runs: Iterable[Run],
    *,
    people: Iterable[Person] = (F, R1, R2),
    absences: Iterable[Absence] = (),
    services: Iterable[Service] = (MED, SURG),
) -> Program:
    """A program around the given runs."""
    return Program(program=ProgramInfo(name="test"), services=tuple(services),
                   people=tuple(people), absences=tuple(absences), runs=tuple(runs))


def make_run(run_id: str, assignments: Iterable[Assignment], *, hours_ago: int = 0,
             status: str = "success") -> Run:
    """A run created ``hours_ago`` hours before 2025-01-01T12:00Z."""
    created = dt.datetime(2025, 1, 1, 12, tzinfo=dt.UTC) - dt.timedelta(hours=hours_ago)
    return Run(id=run_id, created_at=created, status=status,  # type: ignore[arg-type]
               assignments=tuple(assignments))


def three_person_assignments() -> list[Assignment]:
    """The 3-person schedule over D0 .. D0+27 (4 weeks, Monday to Sunday).

    * R1 (PGY-1): every day except Sundays (24 days), AM 7.5 h + PM 7.5 h = 15 h/day
      -> 360 h, 90 h/week, 4 free days.
    * R2 (PGY-1): every day (28 days), AM only, 10 h -> 280 h, 70 h/week, 0 free days.
    * F (faculty): AM Monday to Friday (20 days), 4 h -> 80 h; on approved absence on D0.
    """
    out: list[Assignment] = []
    for k in range(28):
        d = day(k)
        if d.weekday() != 6:
            out += [asg("R1", d, "AM", 7.5), asg("R1", d, "PM", 7.5)]
        out.append(asg("R2", d, "AM", 10))
        if d.weekday() < 5:
            out.append(asg("F", d, "AM", 4))
    return out


def three_person_program() -> Program:
    """The 3-person program: one successful run of :func:`three_person_assignments`."""
    return make_program(
        [make_run("run-3p", three_person_assignments())],
        absences=[Absence(person="F", start=D0, end=D0, type="conference")],
    )
