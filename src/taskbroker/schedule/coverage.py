"""Which part of a date window has schedule data: so no answer is computed over missing data.

A day "has data" when it lies within the schedule run's span, from its first to its last
assigned day (a weekend nobody is scheduled on inside that span is data: nobody works; a day
before or after it is not).  A task type reports its
window's :class:`DataCoverage` (``data_coverage`` in its result) and, when part of the window
has none, a warning in ``warnings`` (a list agents can test for emptiness); the days without
data are reported as such, never as GREEN, "no action needed" or "improved".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from taskbroker.schedule.program import Assignment

__all__ = ["DataCoverage", "data_coverage"]

#: at most this many missing ranges are listed (the counts cover all of them)
RANGES_SHOWN = 10


@dataclass(frozen=True)
class DataCoverage:
    """The days of ``start``..``end`` (inclusive) with schedule data."""

    start: dt.date
    end: dt.date
    with_data: frozenset[dt.date]

    @property
    def requested_days(self) -> int:
        """Days in the window."""
        return (self.end - self.start).days + 1

    @property
    def days_with_data(self) -> int:
        """Days of the window the schedule covers."""
        return len(self.with_data)

    @property
    def complete(self) -> bool:
        """True when every day of the window has schedule data."""
        return self.days_with_data == self.requested_days

    def has(self, day: dt.date) -> bool:
        """True when ``day`` has schedule data."""
        return day in self.with_data

    def missing_ranges(self) -> list[tuple[dt.date, dt.date]]:
        """Contiguous runs of days without data, in order."""
        out: list[tuple[dt.date, dt.date]] = []
        day = self.start
        while day <= self.end:
            if day not in self.with_data:
                first = day
                while day + dt.timedelta(days=1) <= self.end and \
                        day + dt.timedelta(days=1) not in self.with_data:
                    day += dt.timedelta(days=1)
                out.append((first, day))
            day += dt.timedelta(days=1)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The ``data_coverage`` field of a result."""
        ranges = self.missing_ranges()
        return {
            "requested": {"start": self.start.isoformat(), "end": self.end.isoformat(),
                          "days": self.requested_days},
            "days_with_data": self.days_with_data,
            "days_without_data": self.requested_days - self.days_with_data,
            "first_day_with_data": min(self.with_data).isoformat() if self.with_data else None,
            "last_day_with_data": max(self.with_data).isoformat() if self.with_data else None,
            "complete": self.complete,
            "missing": [{"start": a.isoformat(), "end": b.isoformat(), "days": (b - a).days + 1}
                        for a, b in ranges[:RANGES_SHOWN]],
            "missing_ranges_total": len(ranges),
        }

    def warnings(self) -> list[str]:
        """One warning when part (or all) of the window has no schedule data, else none."""
        if self.complete:
            return []
        missing = self.requested_days - self.days_with_data
        if not self.with_data:
            return [f"no schedule data in the window {self.start}..{self.end}: nothing in it "
                    "was analysed; load a schedule that covers it (taskbroker data load)"]
        first, last = self.missing_ranges()[0]
        return [f"no schedule data for {missing} of {self.requested_days} days of the window "
                f"(first gap {first}..{last}): those days are not analysed and count as "
                "unknown, not as fine"]


def data_coverage(assignments: Iterable[Assignment], start: dt.date,
                  end: dt.date) -> DataCoverage:
    """The coverage of ``start``..``end`` by the span of ``assignments`` (a run's)."""
    dates = [a.date for a in assignments]
    if not dates:
        return DataCoverage(start, end, frozenset())
    first, last = max(start, min(dates)), min(end, max(dates))
    return DataCoverage(start, end, frozenset(
        first + dt.timedelta(days=k) for k in range((last - first).days + 1)))
