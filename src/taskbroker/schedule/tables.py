"""SQLAlchemy 2 tables of the schedule data, on their own :data:`metadata`.

Every table is prefixed ``schedule_`` and lives in the ledger's database (SQLite embedded,
PostgreSQL in production).  Types are portable: JSON, timezone-aware timestamps (stored as
UTC; SQLite hands them back naive and the store re-attaches UTC), dates, floats.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AbsenceRow",
    "AssignmentRow",
    "Base",
    "CrisisRow",
    "FallbackRow",
    "PersonRow",
    "ProgramRow",
    "QualificationRow",
    "RunRow",
    "ServiceRow",
    "metadata",
]

metadata = MetaData()
ID = String(64)


class Base(DeclarativeBase):
    """Declarative base bound to the schedule :data:`metadata` (not the ledger's)."""

    metadata = metadata


class ProgramRow(Base):
    """The program's name and time zone (a single row, id 1)."""

    __tablename__ = "schedule_program"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))


class ServiceRow(Base):
    """A service and its staffing rule."""

    __tablename__ = "schedule_services"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    min_faculty: Mapped[int] = mapped_column(Integer)
    essential: Mapped[bool] = mapped_column(Boolean, default=False)
    max_residents_per_faculty: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)


class PersonRow(Base):
    """A faculty member or resident (``pgy`` for residents)."""

    __tablename__ = "schedule_people"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    pgy: Mapped[int | None] = mapped_column(Integer, nullable=True)


class QualificationRow(Base):
    """Person ``person_id`` may work service ``service_id``."""

    __tablename__ = "schedule_qualifications"
    person_id: Mapped[str] = mapped_column(
        ID, ForeignKey("schedule_people.id", ondelete="CASCADE"), primary_key=True)
    service_id: Mapped[str] = mapped_column(
        ID, ForeignKey("schedule_services.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)


class AbsenceRow(Base):
    """Leave from ``start`` to ``end`` inclusive; only status "approved" removes the person."""

    __tablename__ = "schedule_absences"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_id: Mapped[str] = mapped_column(
        ID, ForeignKey("schedule_people.id", ondelete="CASCADE"), index=True)
    start: Mapped[dt.date] = mapped_column(Date)
    end: Mapped[dt.date] = mapped_column(Date)
    type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))


class RunRow(Base):
    """A schedule version; the newest with status "success" is current."""

    __tablename__ = "schedule_runs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(16))


class AssignmentRow(Base):
    """One person on one half-day block on one service, in one run."""

    __tablename__ = "schedule_assignments"
    __table_args__ = (
        UniqueConstraint("run_id", "person_id", "date", "half", name="uq_schedule_assignment"),
        Index("ix_schedule_assignments_run_date", "run_id", "date"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ID, ForeignKey("schedule_runs.id", ondelete="CASCADE"))
    person_id: Mapped[str] = mapped_column(ID, ForeignKey("schedule_people.id"))
    date: Mapped[dt.date] = mapped_column(Date)
    half: Mapped[str] = mapped_column(String(2))
    service_id: Mapped[str] = mapped_column(ID, ForeignKey("schedule_services.id"))
    hours: Mapped[float] = mapped_column(Float)


class CrisisRow(Base):
    """One crisis activation (history row); active while ``deactivated_at`` is null."""

    __tablename__ = "schedule_crisis"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    severity: Mapped[str] = mapped_column(String(16))
    defense_level: Mapped[int] = mapped_column(Integer)
    defense_level_name: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    actions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    approved_by: Mapped[str] = mapped_column(String(200))
    activated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    deactivated_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, index=True)
    deactivated_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    deactivation_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class FallbackRow(Base):
    """A precomputed fallback schedule for one scenario."""

    __tablename__ = "schedule_fallbacks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scenario: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    run_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    coverage_rate: Mapped[float] = mapped_column(Float)
    services_reduced: Mapped[list[str]] = mapped_column(JSON, default=list)
    removed_people: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    assignments: Mapped[list[Any]] = mapped_column(JSON, default=list)
