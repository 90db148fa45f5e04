"""Tiny hand-built programs for the schedule and resilience tests."""

from __future__ import annotations

import datetime as dt

from taskbroker.schedule.program import (
    Absence,
    Assignment,
    Person,
    Program,
    ProgramInfo,
    Run,
    Service,
)

DAY = dt.date(2030, 1, 7)  # a Monday
CREATED = dt.datetime(2030, 1, 1, 8, 0, tzinfo=dt.UTC)


def day(n: int) -> dt.date:
    """``DAY`` plus ``n`` days."""
    return DAY + dt.timedelta(days=n)


def fac(pid: str, *quals: str) -> Person:
    """A faculty member qualified for ``quals``."""
    return Person(id=pid, name=pid, kind="faculty", qualified=quals)


def res(pid: str, pgy: int = 1) -> Person:
    """A resident of PGY ``pgy``."""
    return Person(id=pid, name=pid, kind="resident", pgy=pgy)


def svc(sid: str, min_faculty: int = 1, essential: bool = False, **ratios: int) -> Service:
    """A service; ``ratios`` like ``p1=2`` set max residents per faculty for PGY 1."""
    return Service(id=sid, name=sid, min_faculty=min_faculty, essential=essential,
                   max_residents_per_faculty={k[1:]: v for k, v in ratios.items()})


def at(person: str, n: int, half: str, service: str) -> Assignment:
    """``person`` on day ``n`` ``half`` on ``service``."""
    return Assignment(person=person, date=day(n), half=half, service=service)


def program(services, people, assignments, absences=()) -> Program:
    """A program with one successful run holding ``assignments``."""
    return Program(program=ProgramInfo(name="tiny"), services=tuple(services),
                   people=tuple(people), absences=tuple(absences),
                   runs=(Run(id="run-1", created_at=CREATED, assignments=tuple(assignments)),))


def away(person: str, first: int, last: int | None = None, status: str = "approved") -> Absence:
    """An absence of ``person`` from day ``first`` to ``last`` (inclusive)."""
    return Absence(person=person, start=day(first), end=day(first if last is None else last),
                   status=status)
