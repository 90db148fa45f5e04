"""The schedule runs of the program, as ``taskbroker data runs`` and the ``schedule_runs``
task type list them (the ids ``metrics_version_diff`` compares)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.schedule.program import Program

__all__ = ["ScheduleRunsParams", "run", "run_summaries"]


class ScheduleRunsParams(BaseModel):
    """``schedule_runs``: the newest ``limit`` runs."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=500, description="At most this many runs, newest "
                       "first; `total` counts all.")


def run_summaries(program: Program) -> list[dict[str, Any]]:
    """Every run, newest first: id, created_at, status, assignments, first and last date, and
    whether it is the current schedule (the newest successful run)."""
    current = program.current_run()
    rows = []
    for r in sorted(program.runs, key=lambda r: r.created_at, reverse=True):
        dates = [a.date for a in r.assignments]
        rows.append({"id": r.id, "created_at": r.created_at.isoformat(), "status": r.status,
                     "assignments": len(r.assignments),
                     "first_date": min(dates).isoformat() if dates else None,
                     "last_date": max(dates).isoformat() if dates else None,
                     "current": current is not None and r.id == current.id})
    return rows


def run(params: ScheduleRunsParams, ctx: TaskContext) -> dict[str, Any]:
    """Handler of ``schedule_runs``."""
    from taskbroker.plugins.data import schedule_store

    ctx.progress(0, "loading schedule")
    program = schedule_store().load_program()
    rows = run_summaries(program)
    return {"program": program.program.name, "timezone": program.program.timezone,
            "total": len(rows), "runs": rows[: params.limit],
            "note": None if rows else "no schedule runs are loaded (taskbroker data load)"}
