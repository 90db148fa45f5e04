"""Shared pieces of the resilience handlers: params models, store lookup, windows, levels."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.data import schedule_store
from taskbroker.plugins.data.budget import Detail, detail_field
from taskbroker.plugins.data.params import ScheduleDate
from taskbroker.schedule.coverage import DataCoverage, data_coverage
from taskbroker.schedule.program import Program
from taskbroker.schedule.staffing import StaffingModel, build_model
from taskbroker.schedule.store import ScheduleStore

__all__ = [
    "DEFENSE_LEVELS",
    "SEVERITY_LEVEL",
    "DaysAheadParams",
    "HealthParams",
    "Severity",
    "now_iso",
    "period",
    "require_schedule",
    "resolve_store",
    "stepper",
    "window_coverage",
    "window_start",
]


DEFENSE_LEVELS: dict[int, str] = {
    1: "PREVENTION",
    2: "CONTROL",
    3: "SAFETY_SYSTEMS",
    4: "CONTAINMENT",
    5: "EMERGENCY",
}
SEVERITY_LEVEL: dict[str, int] = {"minor": 2, "moderate": 3, "severe": 4, "critical": 5}
Severity = Literal["minor", "moderate", "severe", "critical"]


class DaysAheadParams(BaseModel):
    """A look-ahead window: ``days_ahead`` days from ``start_date``.

    ``start_date`` defaults to today in the program's time zone.
    """

    model_config = ConfigDict(extra="forbid")

    days_ahead: int = Field(default=90, ge=1, le=730, description="Days to look ahead.")
    start_date: ScheduleDate | None = Field(
        default=None, description="First day of the window (default: today).")
    detail: Detail = detail_field()


class HealthParams(BaseModel):
    """The health check looks at the next 7 days; ``start_date`` moves the window."""

    model_config = ConfigDict(extra="forbid")

    start_date: ScheduleDate | None = Field(
        default=None, description="First day of the 7-day window (default: today).")


def window_start(start: dt.date | None, program: Program) -> dt.date:
    """``start``, or today in the program's time zone."""
    return start if start is not None else program.program.today()


def require_schedule(program: Program) -> None:
    """ValueError unless the program has a current (successful) schedule run."""
    if program.current_run() is None:
        raise ValueError("no current schedule: load or generate a program first "
                         "(taskbroker data load | taskbroker data generate)")


def resolve_store(store: ScheduleStore | None) -> ScheduleStore:
    """``store`` when given, else the process store of the configured database."""
    return store if store is not None else schedule_store()


def load_window(params: DaysAheadParams, ctx: TaskContext, store: ScheduleStore | None, *,
                model_progress: int) -> tuple[Program, dt.date, StaffingModel]:
    """Load the program and build the staffing model of the ``days_ahead`` window.

    Reports progress (0 while loading, ``model_progress`` while building) and stops at a
    cancellation between the steps; raises ValueError when no schedule is loaded.
    """
    ctx.progress(0, "loading the schedule")
    program = resolve_store(store).load_program()
    require_schedule(program)
    start = window_start(params.start_date, program)
    ctx.raise_if_cancelled()
    ctx.progress(model_progress, "building the staffing model")
    model = build_model(program, start, params.days_ahead)
    ctx.raise_if_cancelled()
    return program, start, model


def window_coverage(program: Program, start: dt.date, days: int) -> DataCoverage:
    """Which days of the window the current schedule run covers."""
    current = program.current_run()
    return data_coverage(current.assignments if current else (), start,
                         start + dt.timedelta(days=days - 1))


def now_iso() -> str:
    """The current UTC time, ISO 8601 with ``Z``."""
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def period(start: dt.date, days: int) -> dict[str, Any]:
    """``{"start", "end", "days"}`` of a window."""
    end = start + dt.timedelta(days=days - 1)
    return {"start": start.isoformat(), "end": end.isoformat(), "days": days}


def stepper(ctx: TaskContext, lo: float, hi: float, message: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` callback mapping progress into ``lo..hi`` % and honouring cancel."""

    def step(done: int, total: int) -> None:
        ctx.raise_if_cancelled()
        ctx.progress(lo + (hi - lo) * done / max(1, total), message if done == 1 else None)

    return step
