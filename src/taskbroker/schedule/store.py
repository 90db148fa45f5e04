"""The schedule store: programs, runs, crisis state and fallback schedules in SQL.

A :class:`ScheduleStore` works on the SQLAlchemy engine its caller gives it (the built-in
``data`` plugin makes one per process on the ledger's database) and creates its ``schedule_*``
tables when missing.  Programs are written and read in bulk
(Core inserts and selects, no ORM identity map), so a 100-person, 365-day program loads in
a fraction of a second.

Choices: :meth:`save_program` replaces the program data (services, people, absences, runs)
but keeps the crisis history (an audit trail) and fallbacks (each names the run it was
computed from).  Activating a crisis while one is active supersedes it (the old row is
closed, naming the new approver).  Saving a fallback replaces the previous one of the same
scenario.  Timestamps are stored and returned in UTC.

Why one module of ~350 lines: one store class over the ``schedule_*`` tables; the program's
bulk load (a hand-tuned cursor loop, see :func:`_load_assignments`) and the small crisis and
fallback sections share its engine and its UTC conversions.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update

from taskbroker.schedule.program import (
    Absence,
    Assignment,
    Person,
    Program,
    ProgramInfo,
    Run,
    Service,
)
from taskbroker.schedule.tables import (
    AbsenceRow,
    AssignmentRow,
    CrisisRow,
    FallbackRow,
    PersonRow,
    ProgramRow,
    QualificationRow,
    RunRow,
    ServiceRow,
    metadata,
)

__all__ = ["ScheduleStore"]

_BATCH = 5000


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _utc(value).isoformat().replace("+00:00", "Z")  # type: ignore[union-attr]
    return value.isoformat()


_ASSIGNMENT_FIELDS = set(Assignment.model_fields)
_ASSIGNMENT_SQL = ("SELECT run_id, person_id, date, half, service_id, hours "
                   "FROM schedule_assignments ORDER BY id")


def _load_assignments(conn: Any) -> dict[str, list[Assignment]]:
    """Every stored assignment grouped by run, as fast as Python allows.

    A plain DBAPI cursor (no per-row SQLAlchemy processing); dates come back as ISO text
    (SQLite) or dates (PostgreSQL) and are parsed once per distinct value; objects are built
    the way ``model_construct`` builds them, minus its per-field default handling (about 5x
    faster) - the values were validated when the program was saved.
    """
    cursor = conn.connection.cursor()
    try:
        cursor.execute(_ASSIGNMENT_SQL)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    by_run: dict[str, list[Assignment]] = defaultdict(list)
    dates: dict[Any, dt.date] = {}
    new = Assignment.__new__
    set_attr = object.__setattr__
    fields = _ASSIGNMENT_FIELDS
    for run_id, person, raw, half, service, hours in rows:
        date = dates.get(raw)
        if date is None:
            date = dates[raw] = raw if isinstance(raw, dt.date) else dt.date.fromisoformat(raw)
        obj = new(Assignment)
        set_attr(obj, "__dict__", {"person": person, "date": date, "half": half,
                                   "service": service, "hours": hours})
        set_attr(obj, "__pydantic_fields_set__", fields)
        set_attr(obj, "__pydantic_extra__", None)
        set_attr(obj, "__pydantic_private__", None)
        by_run[run_id].append(obj)
    return by_run


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ScheduleStore:
    """Schedule data on a SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    # --- program ------------------------------------------------------------------------

    def is_empty(self) -> bool:
        """True when no program has been saved (no services and no people)."""
        with self.engine.connect() as conn:
            people = conn.execute(select(func.count()).select_from(PersonRow)).scalar_one()
            services = conn.execute(select(func.count()).select_from(ServiceRow)).scalar_one()
        return people == 0 and services == 0

    def save_program(self, program: Program) -> None:
        """Replace the program data with ``program`` in one transaction."""
        with self.engine.begin() as conn:
            for table in (AssignmentRow, RunRow, AbsenceRow, QualificationRow, PersonRow,
                          ServiceRow, ProgramRow):
                conn.execute(delete(table))
            conn.execute(insert(ProgramRow), [{"id": 1, "name": program.program.name,
                                                "timezone": program.program.timezone}])
            if program.services:
                conn.execute(insert(ServiceRow), [
                    {"id": s.id, "position": i, "name": s.name, "min_faculty": s.min_faculty,
                     "essential": s.essential,
                     "max_residents_per_faculty": dict(s.max_residents_per_faculty)}
                    for i, s in enumerate(program.services)])
            if program.people:
                conn.execute(insert(PersonRow), [
                    {"id": p.id, "position": i, "name": p.name, "kind": p.kind, "pgy": p.pgy}
                    for i, p in enumerate(program.people)])
            quals = [{"person_id": p.id, "service_id": s, "position": j}
                     for p in program.people for j, s in enumerate(p.qualified)]
            if quals:
                conn.execute(insert(QualificationRow), quals)
            if program.absences:
                conn.execute(insert(AbsenceRow), [
                    {"person_id": a.person, "start": a.start, "end": a.end, "type": a.type,
                     "status": a.status} for a in program.absences])
            for run in program.runs:
                self._insert_run(conn, run)

    def add_run(self, run: Run) -> None:
        """Add one schedule run (its people and services must exist; its id must be new)."""
        with self.engine.begin() as conn:
            if conn.execute(select(RunRow.id).where(RunRow.id == run.id)).first():
                raise ValueError(f"schedule run {run.id!r} already exists")
            people = set(conn.execute(select(PersonRow.id)).scalars())
            services = set(conn.execute(select(ServiceRow.id)).scalars())
            seen: set[tuple[str, dt.date, str]] = set()
            for j, a in enumerate(run.assignments):
                where = f"runs[{run.id}].assignments[{j}]"
                if a.person not in people:
                    raise ValueError(f"{where}.person: unknown person id {a.person!r}")
                if a.service not in services:
                    raise ValueError(f"{where}.service: unknown service id {a.service!r}")
                if (a.person, a.date, a.half) in seen:
                    raise ValueError(f"{where}: person {a.person!r} is assigned twice in "
                                     f"block {a.date} {a.half}")
                seen.add((a.person, a.date, a.half))
            self._insert_run(conn, run)

    @staticmethod
    def _insert_run(conn: Any, run: Run) -> None:
        conn.execute(insert(RunRow), [{"id": run.id, "created_at": _utc(run.created_at),
                                       "status": run.status}])
        rows = [{"run_id": run.id, "person_id": a.person, "date": a.date, "half": a.half,
                 "service_id": a.service, "hours": a.hours} for a in run.assignments]
        for i in range(0, len(rows), _BATCH):
            conn.execute(insert(AssignmentRow), rows[i:i + _BATCH])

    def load_program(self) -> Program:
        """The whole program (every run), read with one bulk select per table."""
        with self.engine.connect() as conn:
            info = conn.execute(select(ProgramRow.name, ProgramRow.timezone)).first()
            services = [
                Service(id=r.id, name=r.name, min_faculty=r.min_faculty,
                        essential=bool(r.essential),
                        max_residents_per_faculty=dict(r.max_residents_per_faculty or {}))
                for r in conn.execute(select(ServiceRow).order_by(ServiceRow.position))]
            quals: dict[str, list[str]] = defaultdict(list)
            for pid, sid in conn.execute(select(QualificationRow.person_id,
                                                QualificationRow.service_id)
                                         .order_by(QualificationRow.person_id,
                                                   QualificationRow.position)):
                quals[pid].append(sid)
            people = [Person(id=r.id, name=r.name, kind=r.kind, pgy=r.pgy,
                             qualified=tuple(quals.get(r.id, ())))
                      for r in conn.execute(select(PersonRow).order_by(PersonRow.position))]
            absences = [Absence(person=r.person_id, start=r.start, end=r.end, type=r.type,
                                status=r.status)
                        for r in conn.execute(select(AbsenceRow).order_by(AbsenceRow.id))]
            by_run = _load_assignments(conn)
            runs = [Run.model_construct(id=r.id, created_at=_utc(r.created_at),
                                        status=r.status,
                                        assignments=tuple(by_run.get(r.id, ())))
                    for r in conn.execute(select(RunRow).order_by(RunRow.created_at,
                                                                  RunRow.id))]
        name, tz = (info.name, info.timezone) if info else ("", "UTC")
        # validated when saved (save_program takes a Program, add_run checks references)
        return Program.model_construct(
            program=ProgramInfo(name=name, timezone=tz), services=tuple(services),
            people=tuple(people), absences=tuple(absences), runs=tuple(runs))

    # --- crisis -------------------------------------------------------------------------

    @staticmethod
    def _crisis_dict(row: Any) -> dict[str, Any]:
        return {
            "id": row.id, "severity": row.severity, "defense_level": row.defense_level,
            "defense_level_name": row.defense_level_name, "reason": row.reason,
            "actions": list(row.actions or []), "approved_by": row.approved_by,
            "activated_at": _iso(row.activated_at), "deactivated_at": _iso(row.deactivated_at),
            "deactivated_by": row.deactivated_by,
            "deactivation_reason": row.deactivation_reason,
            "active": row.deactivated_at is None,
        }

    def active_crisis(self) -> dict[str, Any] | None:
        """The active crisis (newest activation not yet deactivated), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(CrisisRow.__table__)
                               .where(CrisisRow.deactivated_at.is_(None))
                               .order_by(CrisisRow.activated_at.desc(), CrisisRow.id.desc())
                               ).first()
        return self._crisis_dict(row) if row else None

    def crisis_history(self, limit: int = 50) -> list[dict[str, Any]]:
        """Crisis activations, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(CrisisRow.__table__)
                                .order_by(CrisisRow.activated_at.desc(), CrisisRow.id.desc())
                                .limit(limit)).all()
        return [self._crisis_dict(r) for r in rows]

    def activate_crisis(
        self,
        *,
        severity: str,
        reason: str,
        approved_by: str,
        defense_level: int,
        defense_level_name: str,
        actions: list[Any],
        now: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Record a crisis activation (superseding an active one) and return it."""
        now = _utc(now) or _now()
        with self.engine.begin() as conn:
            conn.execute(update(CrisisRow).where(CrisisRow.deactivated_at.is_(None)).values(
                deactivated_at=now, deactivated_by=approved_by,
                deactivation_reason=f"superseded by a {severity} activation"))
            new_id = conn.execute(insert(CrisisRow).values(
                severity=severity, defense_level=defense_level,
                defense_level_name=defense_level_name, reason=reason, actions=actions,
                approved_by=approved_by, activated_at=now).returning(CrisisRow.id)).scalar_one()
            row = conn.execute(select(CrisisRow.__table__).where(CrisisRow.id == new_id)).one()
        return self._crisis_dict(row)

    def deactivate_crisis(
        self, *, deactivated_by: str, reason: str | None = None, now: dt.datetime | None = None
    ) -> dict[str, Any]:
        """Close the active crisis and return it; ValueError when none is active."""
        now = _utc(now) or _now()
        with self.engine.begin() as conn:
            row = conn.execute(select(CrisisRow.id).where(CrisisRow.deactivated_at.is_(None))
                               .order_by(CrisisRow.activated_at.desc())).first()
            if row is None:
                raise ValueError("no active crisis to deactivate")
            conn.execute(update(CrisisRow).where(CrisisRow.deactivated_at.is_(None)).values(
                deactivated_at=now, deactivated_by=deactivated_by, deactivation_reason=reason))
            done = conn.execute(select(CrisisRow.__table__).where(CrisisRow.id == row.id)).one()
        return self._crisis_dict(done)

    # --- fallbacks ----------------------------------------------------------------------

    def save_fallback(
        self,
        *,
        scenario: str,
        coverage_rate: float,
        valid_from: dt.date,
        valid_until: dt.date,
        services_reduced: list[str],
        assignments: list[Any],
        description: str = "",
        removed_people: list[str] | None = None,
        details: dict[str, Any] | None = None,
        run_id: str | None = None,
        created_at: dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Store the fallback schedule of ``scenario`` (replacing the previous one)."""
        values = {
            "scenario": scenario, "description": description,
            "created_at": _utc(created_at) or _now(), "valid_from": valid_from,
            "valid_until": valid_until, "run_id": run_id, "coverage_rate": coverage_rate,
            "services_reduced": list(services_reduced),
            "removed_people": list(removed_people or []), "details": dict(details or {}),
            "assignments": list(assignments),
        }
        with self.engine.begin() as conn:
            conn.execute(delete(FallbackRow).where(FallbackRow.scenario == scenario))
            new_id = conn.execute(insert(FallbackRow).values(**values)
                                  .returning(FallbackRow.id)).scalar_one()
            row = conn.execute(select(FallbackRow.__table__)
                               .where(FallbackRow.id == new_id)).one()
        return self._fallback_dict(row, include_assignments=False)

    @staticmethod
    def _fallback_dict(row: Any, *, include_assignments: bool) -> dict[str, Any]:
        out = {
            "id": row.id, "scenario": row.scenario, "description": row.description,
            "created_at": _iso(row.created_at), "valid_from": _iso(row.valid_from),
            "valid_until": _iso(row.valid_until), "run_id": row.run_id,
            "coverage_rate": row.coverage_rate,
            "services_reduced": list(row.services_reduced or []),
            "removed_people": list(row.removed_people or []),
            "details": dict(row.details or {}),
        }
        if include_assignments:
            out["assignments"] = list(row.assignments or [])
        return out

    def list_fallbacks(self, *, include_assignments: bool = False) -> list[dict[str, Any]]:
        """Stored fallback schedules, one per scenario, newest first.

        ``assignments`` (the repaired schedule, ``[person, date, half, service, hours]`` rows)
        is included only when asked for; it is large.
        """
        cols = [c for c in FallbackRow.__table__.c
                if include_assignments or c.name != "assignments"]
        with self.engine.connect() as conn:
            rows = conn.execute(select(*cols).order_by(FallbackRow.created_at.desc(),
                                                       FallbackRow.id.desc())).all()
        return [self._fallback_dict(r, include_assignments=include_assignments) for r in rows]
