"""Parameter types the built-in task types share."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

__all__ = ["EARLIEST_DATE", "LATEST_DATE", "ScheduleDate"]

#: the dates the built-in task types accept: far enough for any residency schedule, near
#: enough that a window of up to two years after one never leaves the calendar
EARLIEST_DATE = dt.date(2000, 1, 1)
LATEST_DATE = dt.date(2100, 12, 31)

#: a date within EARLIEST_DATE..LATEST_DATE (outside: a ValueError naming the field)
ScheduleDate = Annotated[dt.date, Field(ge=EARLIEST_DATE, le=LATEST_DATE)]
