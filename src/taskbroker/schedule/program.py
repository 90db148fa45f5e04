"""The residency program as data: the in-memory form every domain computation works on.

This is the shape of the program file (``taskbroker data load|export``) and what the store
returns.  It is plain pydantic, independent of the database, so algorithms and their tests
can build programs by hand.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
    """Name and time zone of the program.

    The time zone (an IANA name) is where "today" is: every default date window of every
    task type starts on :meth:`today`.
    """

    name: str
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; accepted: an IANA time zone name "
                             "such as 'America/New_York' or 'UTC'") from None
        return value

    def zone(self) -> ZoneInfo:
        """The program's time zone."""
        return ZoneInfo(self.timezone)

    def today(self, now: dt.datetime | None = None) -> dt.date:
        """The date in the program's time zone at ``now`` (default: the current time)."""
        return (now or dt.datetime.now(dt.UTC)).astimezone(self.zone()).date()


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

    Validation rejects duplicate and unknown ids, a person twice in one block of a run, and
    a resident without a PGY level, naming the offending record.
    """

    program: ProgramInfo
    services: tuple[Service, ...] = ()
    people: tuple[Person, ...] = ()
    absences: tuple[Absence, ...] = ()
    runs: tuple[Run, ...] = ()

    @model_validator(mode="after")
    def _check_references(self) -> Program:
        for kind, items in (("services", self.services), ("people", self.people),
                            ("runs", self.runs)):
            first: dict[str, int] = {}
            for i, item in enumerate(items):
                if item.id in first:
                    raise ValueError(
                        f"{kind}[{i}:{item.id}]: duplicate id {item.id!r} (the same as "
                        f"{kind}[{first[item.id]}]); every id must be unique")
                first[item.id] = i
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
