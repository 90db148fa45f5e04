"""Parameter types the built-in task types share."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

__all__ = ["ADMIN_ROLE", "EARLIEST_DATE", "LATEST_DATE", "PLANNER_ROLE", "ScheduleDate"]

#: the role for task types that change shared data other users read (stored snapshots,
#: precomputed fallback schedules); admins hold it too
PLANNER_ROLE = "planner"
#: the role for task types that delete data or change the program's operating state
ADMIN_ROLE = "admin"

#: the dates the built-in task types accept: far enough for any residency schedule, near
#: enough that a window of up to two years after one never leaves the calendar
EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2100, 12, 31)

#: a date within EARLIEST_DATE..LATEST_DATE (outside: a ValueError naming the field)
ScheduleDate = Annotated[dt.date, Field(ge=EARLIEST_DATE, le=LATEST_DATE)]
