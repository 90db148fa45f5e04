"""Parameter models of the five metrics task types (unknown keys rejected, bounds enforced)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from taskbroker.plugins.data.budget import Detail, detail_field
from taskbroker.plugins.data.params import ScheduleDate
from taskbroker.plugins.metrics.workload import Window

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "CleanupParams",
    "ComputationParams",
    "FairnessReportParams",
    "SnapshotParams",
    "VersionDiffParams",
]

DEFAULT_WINDOW_DAYS = 90


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _two_years_after(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 2)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 2, day=28)


class ComputationParams(_Params):
    """``metrics_computation``: the inclusive date window to analyse (at most 2 years)."""

    start_date: ScheduleDate | None = Field(
        default=None,
        description="First day analysed (YYYY-MM-DD); default today in the program's time "
        "zone.")
    end_date: ScheduleDate | None = Field(
        default=None,
        description="Last day analysed, inclusive; default start_date + 90 days. Not before "
        "start_date and at most 2 years after it.")
    detail: Detail = detail_field()

    @field_validator("end_date")
    @classmethod
    def _check_end(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("start_date")
        if start is None or value is None:  # checked by window() once "today" is known
            return value
        return _checked_end(start, value)

    def window(self, today: dt.date) -> Window:
        """The window: ``start_date`` (default ``today``, the program's) .. ``end_date``
        (default 90 days later); ValueError naming the fields when it is not a window."""
        start = self.start_date or today
        end = self.end_date or start + dt.timedelta(days=DEFAULT_WINDOW_DAYS)
        return Window(start, _checked_end(start, end))


def _checked_end(start: dt.date, end: dt.date) -> dt.date:
    """``end`` when start..end is an accepted window, else ValueError naming the fields."""
    if end < start:
        raise ValueError(f"end_date ({end}) is before start_date ({start})")
    if end > _two_years_after(start):
        raise ValueError(
            f"end_date ({end}) is more than 2 years after start_date ({start}); "
            f"the window may end at most on {_two_years_after(start)}")
    return end


class SnapshotParams(_Params):
    """``metrics_snapshot``: analyse today .. today + period_days and store the result."""

    period_days: int = Field(default=90, ge=1, le=730,
                             description="Days after today included in the snapshot.")


class CleanupParams(_Params):
    """``metrics_cleanup``: delete snapshots created more than retention_days ago."""

    retention_days: int = Field(default=365, ge=1, le=36500,
                                description="Snapshots older than this many days are deleted.")


class FairnessReportParams(_Params):
    """``metrics_fairness_report``: weekly fairness over the last weeks_back weeks."""

    weeks_back: int = Field(default=12, ge=1, le=104, description="Number of 7-day weeks.")
    end_date: ScheduleDate | None = Field(
        default=None,
        description="Last day of the last week (default today in the program's time zone).")
    detail: Detail = detail_field()


class VersionDiffParams(_Params):
    """``metrics_version_diff``: compare run_id_1 (baseline) with run_id_2 (candidate)."""

    run_id_1: str = Field(min_length=1, max_length=200, description="Baseline run id.")
    run_id_2: str = Field(min_length=1, max_length=200, description="Candidate run id.")
    detail: Detail = detail_field()
