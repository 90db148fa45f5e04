"""Data coverage of a window, hand-checked."""

from __future__ import annotations

import datetime as dt

from taskbroker.schedule.coverage import data_coverage
from taskbroker.schedule.program import Assignment

D = dt.date(2025, 1, 6)


def on(*offsets: int) -> list[Assignment]:
    return [Assignment(person="F", date=D + dt.timedelta(days=k), half="AM", service="med")
            for k in offsets]


def test_a_window_reaching_past_the_schedule_on_both_sides() -> None:
    # the schedule spans days 3..6 (day 5, a day off for everyone, is inside the span)
    cov = data_coverage(on(3, 4, 6), D, D + dt.timedelta(days=9))
    assert (cov.requested_days, cov.days_with_data, cov.complete) == (10, 4, False)
    assert cov.missing_ranges() == [(D, D + dt.timedelta(days=2)),
                                    (D + dt.timedelta(days=7), D + dt.timedelta(days=9))]
    d = cov.as_dict()
    assert (d["days_without_data"], d["first_day_with_data"], d["last_day_with_data"]) == (
        6, "2025-01-09", "2025-01-12")
    assert d["missing"][1] == {"start": "2025-01-13", "end": "2025-01-15", "days": 3}
    assert cov.warnings() == [
        "no schedule data for 6 of 10 days of the window (first gap 2025-01-06..2025-01-08): "
        "those days are not analysed and count as unknown, not as fine"]


def test_complete_and_empty_windows() -> None:
    full = data_coverage(on(0, 2, 30), D, D + dt.timedelta(days=2))
    assert full.complete and full.warnings() == [] and full.missing_ranges() == []
    empty = data_coverage([], D, D)
    assert not empty.complete and empty.as_dict()["first_day_with_data"] is None
    assert empty.warnings()[0].startswith("no schedule data in the window 2025-01-06..")
