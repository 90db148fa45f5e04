"""Utilization per day and the exact level thresholds."""

from __future__ import annotations

from fractions import Fraction

import pytest
from schedule_builders import at, away, day, fac, program, res, svc

from taskbroker.schedule.staffing import build_model
from taskbroker.schedule.utilization import high_risk_periods, level_for, utilization_by_day


@pytest.mark.parametrize(("required", "available", "level"), [
    (0, 100, "GREEN"), (69, 100, "GREEN"), (699, 1000, "GREEN"),
    (70, 100, "YELLOW"), (7, 10, "YELLOW"), (79, 100, "YELLOW"),
    (80, 100, "ORANGE"), (4, 5, "ORANGE"), (89, 100, "ORANGE"),
    (90, 100, "RED"), (9, 10, "RED"), (94, 100, "RED"), (949, 1000, "RED"),
    (95, 100, "BLACK"), (19, 20, "BLACK"), (100, 100, "BLACK"), (150, 100, "BLACK"),
    (1, 0, "BLACK"), (0, 0, "GREEN"),
])
def test_levels_at_exact_thresholds(required: int, available: int, level: str) -> None:
    assert level_for(required, available) == level


def test_fraction_inputs_at_thresholds() -> None:
    assert level_for(Fraction(7, 10), 1) == "YELLOW"
    assert level_for(Fraction(95, 100), 1) == "BLACK"


def _ten_faculty_program(min_faculty: int, absences=()):
    # 10 faculty -> 20 available half-days; one slot AM and one PM each needing
    # ``min_faculty`` faculty -> required = 2 * min_faculty half-days.
    people = [fac(f"f{i}", "S") for i in range(10)] + [res("r1")]
    return program([svc("S", min_faculty=min_faculty)], people,
                   [at("r1", 0, "AM", "S"), at("r1", 0, "PM", "S")], absences)


@pytest.mark.parametrize(("min_faculty", "level"), [
    (6, "GREEN"),   # 12/20 = 0.60
    (7, "YELLOW"),  # 14/20 = 0.70 exactly
    (8, "ORANGE"),  # 16/20 = 0.80 exactly
    (9, "RED"),     # 18/20 = 0.90 exactly
    (10, "BLACK"),  # 20/20 = 1.00
])
def test_day_levels_end_to_end(min_faculty: int, level: str) -> None:
    (d,) = utilization_by_day(build_model(_ten_faculty_program(min_faculty), day(0), 1))
    assert (d.required, d.available, d.level) == (2 * min_faculty, 20, level)


def test_only_approved_absences_reduce_availability() -> None:
    # 7 needed per block = 14; one approved absence -> 14/18 = 0.777 YELLOW;
    # pending and denied absences change nothing; two approved -> 14/16 = 0.875 ORANGE.
    one = _ten_faculty_program(7, [away("f1", 0), away("f2", 0, status="pending"),
                                   away("f3", 0, status="denied")])
    (d,) = utilization_by_day(build_model(one, day(0), 1))
    assert (d.required, d.available, d.level, d.absent_faculty) == (14, 18, "YELLOW", 1)
    two = _ten_faculty_program(7, [away("f1", 0), away("f2", 0)])
    (d,) = utilization_by_day(build_model(two, day(0), 1))
    assert (d.available, d.level) == (16, "ORANGE")


def test_days_without_work_are_zero_and_periods_are_contiguous() -> None:
    # 19/20 = 0.95 BLACK on days 0 and 1 (f1 away on day 1 -> 19/18), day 2 idle, day 3 again.
    people = [fac(f"f{i}", "S") for i in range(10)] + [res("r1")]
    work = [at("r1", d, h, "S") for d in (0, 1, 3) for h in ("AM", "PM")]
    p = program([svc("S", min_faculty=10)], people, work, [away("f1", 1)])
    m = build_model(p, day(0), 4)
    days = utilization_by_day(m)
    assert [d.level for d in days] == ["BLACK", "BLACK", "GREEN", "BLACK"]
    assert days[2].required == 0 and days[2].utilization == 0.0
    periods = high_risk_periods(days, p, m)
    assert [(x["start"], x["days"]) for x in periods] == [(str(day(0)), 2), (str(day(3)), 1)]
    assert periods[0]["absent_faculty"] == ["f1"]
    assert periods[0]["drivers"] == ["1 faculty away (vacation)"]
