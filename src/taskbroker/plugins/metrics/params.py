"""Parameter models of the five metrics task types (unknown keys rejected, bounds enforced)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from taskbroker.plugins.data.params import ScheduleDate
from taskbroker.plugins.metrics import data
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
        default=None, validate_default=True,
        description="First day analysed (YYYY-MM-DD); default today (UTC).")
    end_date: ScheduleDate | None = Field(
        default=None, validate_default=True,
        description="Last day analysed, inclusive; default start_date + 90 days. Not before "
        "start_date and at most 2 years after it.")

    @field_validator("start_date")
    @classmethod
    def _default_start(cls, value: dt.date | None) -> dt.date:
        return value or data.today()

    @field_validator("end_date")
    @classmethod
    def _check_end(cls, value: dt.date | None, info: ValidationInfo) -> dt.date | None:
        start = info.data.get("start_date")
        if start is None:  # start_date itself was invalid and is reported on its own
            return value
        end = value or start + dt.timedelta(days=DEFAULT_WINDOW_DAYS)
        if end < start:
            raise ValueError(f"end_date ({end}) is before start_date ({start})")
        if end > _two_years_after(start):
            raise ValueError(
                f"end_date ({end}) is more than 2 years after start_date ({start}); "
                f"the window may end at most on {_two_years_after(start)}")
        return end

    def window(self) -> Window:
        """The validated window."""
        assert self.start_date is not None and self.end_date is not None
        return Window(self.start_date, self.end_date)


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
        default=None, description="Last day of the last week (default today, UTC).")


class VersionDiffParams(_Params):
    """``metrics_version_diff``: compare run_id_1 (baseline) with run_id_2 (candidate)."""

    run_id_1: str = Field(min_length=1, max_length=200, description="Baseline run id.")
    run_id_2: str = Field(min_length=1, max_length=200, description="Candidate run id.")
