"""The residency program as data: the in-memory form every domain computation works on.

This is the shape of the program file (``taskbroker data load|export``) and what the store
returns.  It is plain pydantic, independent of the database, so algorithms and their tests
can build programs by hand.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Absence",
    "Assignment",
    "Person",
    "Program",
    "ProgramInfo",
    "Run",
    "Service",
]

Half = Literal["AM", "PM"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProgramInfo(_Model):
    """Name and time zone of the program."""

    name: str
    timezone: str = "UTC"


class Service(_Model):
    """A clinical service with its staffing rule.

    ``max_residents_per_faculty`` maps a PGY level ("1", "2", "3", ...) to how many residents of
    that level one supervising faculty member may cover; levels not listed use the highest
    level listed.
    """

    id: str
    name: str
    min_faculty: int = Field(ge=0)
    essential: bool = False
    max_residents_per_faculty: dict[str, int] = Field(default_factory=dict)

    def ratio_for(self, pgy: int) -> int:
        """Residents of PGY ``pgy`` one faculty member may supervise on this service."""
        table = self.max_residents_per_faculty
        if not table:
            return 2 if pgy <= 1 else 4
        if str(pgy) in table:
            return max(1, table[str(pgy)])
        return max(1, table[max(table, key=int)])


class Person(_Model):
    """A faculty member (``pgy`` None) or a resident (``pgy`` 1..)."""

    id: str
    name: str
    kind: Literal["faculty", "resident"]
    pgy: int | None = None
    qualified: tuple[str, ...] = ()


class Absence(_Model):
    """Leave for ``person`` from ``start`` to ``end`` inclusive; only "approved" removes them."""

    person: str
    start: dt.date
    end: dt.date
    type: str = "vacation"
    status: Literal["approved", "pending", "denied"] = "approved"


class Assignment(_Model):
    """One person working one half-day block on one service."""

    person: str
    date: dt.date
    half: Half
    service: str
    hours: float = Field(default=4.0, ge=0)


class Run(_Model):
    """A schedule version: a set of assignments produced by one scheduling run."""

    id: str
    created_at: dt.datetime
    status: Literal["success", "partial", "failed"] = "success"
    assignments: tuple[Assignment, ...] = ()


class Program(_Model):
    """A whole program: services, people, absences and schedule runs.

    Validation rejects unknown ids, a person twice in one block of a run, and a resident
    without a PGY level, naming the offending record.
    """

    program: ProgramInfo
    services: tuple[Service, ...] = ()
    people: tuple[Person, ...] = ()
    absences: tuple[Absence, ...] = ()
    runs: tuple[Run, ...] = ()

    @model_validator(mode="after")
    def _check_references(self) -> Program:
        service_ids = {s.id for s in self.services}
        person_ids = {p.id for p in self.people}
        for p in self.people:
            if p.kind == "resident" and p.pgy is None:
                raise ValueError(f"people[{p.id}]: a resident needs a pgy level")
            for s in p.qualified:
                if s not in service_ids:
                    raise ValueError(f"people[{p.id}].qualified: unknown service id {s!r}")
        for i, a in enumerate(self.absences):
            if a.person not in person_ids:
                raise ValueError(f"absences[{i}].person: unknown person id {a.person!r}")
            if a.end < a.start:
                raise ValueError(f"absences[{i}]: end {a.end} is before start {a.start}")
        for r in self.runs:
            seen: set[tuple[str, dt.date, str]] = set()
            for j, a in enumerate(r.assignments):
                where = f"runs[{r.id}].assignments[{j}]"
                if a.person not in person_ids:
                    raise ValueError(f"{where}.person: unknown person id {a.person!r}")
                if a.service not in service_ids:
                    raise ValueError(f"{where}.service: unknown service id {a.service!r}")
                key = (a.person, a.date, a.half)
                if key in seen:
                    raise ValueError(
                        f"{where}: person {a.person!r} is assigned twice in block "
                        f"{a.date} {a.half}"
                    )
                seen.add(key)
        return self

    def current_run(self) -> Run | None:
        """The newest run whose status is "success" (the current schedule), if any."""
        ok = [r for r in self.runs if r.status == "success"]
        return max(ok, key=lambda r: r.created_at) if ok else None

    def run(self, run_id: str) -> Run:
        """The run with id ``run_id``; ValueError naming it when there is none."""
        for r in self.runs:
            if r.id == run_id:
                return r
        raise ValueError(f"unknown schedule run id {run_id!r}")
