"""ACGME compliance: the 3-person schedule by hand, rolling periods, short windows."""

from __future__ import annotations

import pytest
from metrics_programs import D0, asg, day, make_program, make_run, three_person_program

from taskbroker.plugins.metrics.compliance import compliance_metric, periods
from taskbroker.plugins.metrics.workload import Window, window_assignments


def _compliance(program, window):  # type: ignore[no-untyped-def]
    return compliance_metric(program, window, window_assignments(program.current_run(), window))


def test_periods() -> None:
    assert periods(28) == (4, [0])
    assert periods(42) == (4, [0, 7, 14])
    assert periods(30) == (4, [0, 2])  # the extra period ends on the last day
    assert periods(90) == (4, [0, 7, 14, 21, 28, 35, 42, 49, 56, 62])
    assert periods(10) == (1, [0, 3])
    assert periods(6) == (0, [])


def test_three_person_violations_by_hand() -> None:
    # One period: the 4 weeks D0 .. D0+27.
    # R1: 360 h / 4 = 90 h/week > 80 -> 80-hour violation, excess 10; 4 free Sundays >= 4.
    # R2: 280 h / 4 = 70 h/week (fine) but 0 duty-free days < 4 -> one-in-seven, 4 days short.
    # F is faculty: not checked.  Compliance = 0 of 2 residents = 0 % -> critical.
    result = _compliance(three_person_program(), Window(D0, day(27)))
    assert result["value"] == 0.0
    assert result["status"] == "critical"
    v = {(x["person"], x["rule"]): x for x in result["details"]["violations"]}
    assert set(v) == {("R1", "max_80_hours_per_week"), ("R2", "one_day_in_seven_free")}
    r1 = v["R1", "max_80_hours_per_week"]
    assert (r1["measured"], r1["limit"], r1["excess"]) == (90.0, 80.0, 10.0)
    assert r1["weeks"] == [D0.isoformat(), day(7).isoformat(), day(14).isoformat(),
                           day(21).isoformat()]
    assert (r1["period_start"], r1["period_end"]) == (D0.isoformat(), day(27).isoformat())
    r2 = v["R2", "one_day_in_seven_free"]
    assert (r2["measured"], r2["limit"], r2["excess"]) == (0, 4, 4)


def _weekday_shifts(weeks_hours: list[float]) -> list:
    """R1 works Monday..Friday; week w at weeks_hours[w] hours (split AM/PM equally)."""
    out = []
    for w, hours in enumerate(weeks_hours):
        for k in range(5):
            out += [asg("R1", day(7 * w + k), "AM", hours / 10),
                    asg("R1", day(7 * w + k), "PM", hours / 10)]
    return out


def test_rolling_periods_flag_only_the_heavy_ones() -> None:
    # 6 weeks: 110, 110, 60, 60, 60, 60 h.  Periods: weeks 1-4 = 340/4 = 85 (excess 5),
    # weeks 2-5 = 290/4 = 72.5, weeks 3-6 = 60.  R2 never works: compliant.  -> 50 %.
    program = make_program([make_run("r", _weekday_shifts([110, 110, 60, 60, 60, 60]))])
    result = _compliance(program, Window(D0, day(41)))
    (v,) = result["details"]["violations"]
    assert (v["person"], v["rule"], v["measured"], v["excess"]) == (
        "R1", "max_80_hours_per_week", 85.0, 5.0)
    assert v["period_start"] == D0.isoformat()
    assert result["value"] == 50.0
    assert result["details"]["periods_checked"] == 3


def test_exactly_80_hours_is_compliant() -> None:
    program = make_program([make_run("r", _weekday_shifts([80, 80, 80, 80]))])
    assert _compliance(program, Window(D0, day(27)))["value"] == 100.0


def test_trailing_days_get_a_period_ending_on_the_window_end() -> None:
    # 30-day window; R1 works 8 h on days 2..29.  Period days 0-27: 26 duty days -> 2 free
    # (2 short of 4); period days 2-29: no free day (4 short).
    program = make_program([make_run("r", [asg("R1", day(k), "AM", 8) for k in range(2, 30)])])
    result = _compliance(program, Window(D0, day(29)))
    found = [(v["period_start"], v["period_end"], v["excess"])
             for v in result["details"]["violations"]]
    assert found == [(D0.isoformat(), day(27).isoformat(), 2),
                     (day(2).isoformat(), day(29).isoformat(), 4)]


def test_short_windows() -> None:
    # 10 days = 1 complete week per period, periods at days 0 and 3.  Seven 12-h days in a
    # row (days 0-6): period 0-6 = 84 h (excess 4) and no free day; period 3-9 is fine.
    program = make_program([make_run("r", [asg("R1", day(k), "AM", 12) for k in range(7)])])
    result = _compliance(program, Window(D0, day(9)))
    rules = sorted((v["rule"], v["excess"]) for v in result["details"]["violations"])
    assert rules == [("max_80_hours_per_week", 4.0), ("one_day_in_seven_free", 1)]
    assert result["details"]["short_window"] is True
    assert "1 complete week" in result["details"]["note"]
    # under a week: nothing to check
    tiny = _compliance(program, Window(D0, day(4)))
    assert tiny["value"] == 100.0 and tiny["details"]["periods_checked"] == 0


@pytest.mark.parametrize("n_bad,expected", [(0, 100.0), (1, 50.0), (2, 0.0)])
def test_value_is_share_of_residents(n_bad: int, expected: float) -> None:
    a = []
    for r in ["R1", "R2"][:n_bad]:
        a += [asg(r, day(k), "AM", 12) for k in range(28)]  # no free day
    program = make_program([make_run("r", a)])
    assert _compliance(program, Window(D0, day(27)))["value"] == expected
