"""Where the metrics handlers get the program and "today" (one place, easy to replace in tests)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskbroker.schedule.program import Program

__all__ = ["load_program", "today", "utcnow"]


def load_program() -> Program:
    """The program from the configured schedule store (the built-in data plugin's)."""
    from taskbroker.plugins.data import schedule_store

    return schedule_store().load_program()


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def today(program: Program) -> dt.date:
    """Today in the program's time zone (the default anchor of metric windows, the same
    "today" as the resilience task types')."""
    return program.program.today(utcnow())
