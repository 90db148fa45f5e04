"""metrics_fairness_report: weekly values, least-squares trend, anomalies, recommendations."""

from __future__ import annotations

import statistics

import pytest
from metrics_programs import D0, asg, day, make_program, make_run, three_person_program

from taskbroker.plugins.metrics import TASK_TYPES, data
from taskbroker.plugins.metrics.fairness_report import least_squares_slope, trend
from taskbroker.schedule.program import Absence
from taskbroker.testing import run_handler

REPORT = {t.name: t for t in TASK_TYPES}["metrics_fairness_report"]
R2_WEEKLY = [40, 30, 20, 5]  # R1 works 40 h every week; R2 works less and less


def _declining_program():  # type: ignore[no-untyped-def]
    a = []
    for w, r2 in enumerate(R2_WEEKLY):
        for k in range(5):
            a.append(asg("R1", day(7 * w + k), "AM", 8))
            a.append(asg("R2", day(7 * w + k), "AM", r2 / 5))
    return make_program([make_run("r", a)])


def _expected_weekly() -> list[float]:
    # pgy1 {R1: 40, R2: x}: G = (40 - x) / (2 (40 + x)); F (faculty) is available with 0 h
    # but alone in its cohort (fairness 1).  Program value = (1 + 2 (1 - G)) / 3.
    return [(1 + 2 * (1 - (40 - x) / (2 * (40 + x)))) / 3 for x in R2_WEEKLY]


def test_declining_trend_and_anomalies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "load_program", _declining_program)
    result, sink = run_handler(REPORT, {"weeks_back": 6, "end_date": day(27).isoformat()})
    weekly = result["weekly"]
    assert [w["start_date"] for w in weekly] == [day(7 * k - 14).isoformat() for k in range(6)]
    # the first two weeks precede the schedule: no value, left out of the trend
    assert [w["value"] for w in weekly[:2]] == [None, None]
    expected = _expected_weekly()  # 1.0, 0.95238, 0.88889, 0.74074
    assert [w["value"] for w in weekly[2:]] == pytest.approx(expected, abs=1e-4)
    slope = statistics.linear_regression([3, 4, 5, 6], expected).slope
    assert result["trend"]["slope_per_week"] == pytest.approx(slope, abs=1e-6)
    assert result["trend"]["direction"] == "declining"
    assert result["trend"]["threshold"] == 0.005
    # anomalies: weeks below the warning threshold 0.90 (weeks 5 and 6)
    assert [(a["week"], a["status"]) for a in result["anomalies"]] == [
        (5, "warning"), (6, "critical")]
    recs = " ".join(result["recommendations"])
    assert "declining" in recs and "R1 (40.0 h)" in recs and "R2 (5.0 h)" in recs
    # the two weeks before the schedule are reported as unassessed, in a testable field
    assert "2 of 6 weeks have no assignments (weeks 1, 2)" in result["warnings"]
    assert result["data_coverage"]["days_without_data"] == 14 + 2  # 2 weeks + the last weekend
    assert "2 of 6 week(s) have no assignments and were not assessed" in recs
    assert sink.reports[-1][0] == 100


def test_constant_schedule_is_stable_without_anomalies(monkeypatch: pytest.MonkeyPatch) -> None:
    # every week: R1 90 h, R2 70 h -> pgy1 G = 20/320 -> program (1 + 2 * 0.9375)/3 = 0.9583
    monkeypatch.setattr(data, "load_program", three_person_program)
    result, _ = run_handler(REPORT, {"weeks_back": 4, "end_date": day(27).isoformat()})
    assert [w["value"] for w in result["weekly"]] == pytest.approx([2.875 / 3] * 4, abs=1e-4)
    assert result["trend"]["direction"] == "stable"
    assert result["trend"]["slope_per_week"] == pytest.approx(0.0, abs=1e-9)
    assert result["anomalies"] == []
    assert result["recommendations"] == [
        "Fairness is within target every week; no action needed."]


def test_leave_in_one_week_does_not_drop_a_person_from_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # R1 works 40 h in each of two weeks; R2 works nothing: free in week 1, on approved leave
    # all of week 2.  Week 1 counts R2 (available, unloaded): pgy1 {R1: 40, R2: 0} has
    # G = 2 (1*0 + 2*40) / (2 * 40) - 3/2 = 0.5, F (faculty, alone) 1, so the program value is
    # (1 * 1 + 2 * 0.5) / 3 = 2/3.  Week 2 leaves R2 out (away the whole week): 1.0.  (The old
    # code counted R2's 7 leave days of the whole period against week 1 as well: 1.0, 1.0.)
    work = [asg("R1", day(7 * w + k), "AM", 8) for w in range(2) for k in range(5)]
    leave = Absence(person="R2", start=day(7), end=day(13), type="vacation")
    monkeypatch.setattr(data, "load_program",
                        lambda: make_program([make_run("r", work)], absences=[leave]))
    result, _ = run_handler(REPORT, {"weeks_back": 2, "end_date": day(13).isoformat()})
    assert [w["value"] for w in result["weekly"]] == pytest.approx([2 / 3, 1.0], abs=1e-4)
    full, _ = run_handler(REPORT, {"weeks_back": 2, "end_date": day(13).isoformat(),
                                   "detail": "full"})
    assert full["weekly"][0]["cohorts"]["pgy1"]["people"] == 2
    assert full["weekly"][1]["cohorts"]["pgy1"]["people"] == 1
    # the summary keeps the cohorts' values
    assert result["weekly"][0]["cohorts"]["pgy1"] == full["weekly"][0]["cohorts"]["pgy1"]["value"]


def test_default_end_is_today(fixed_today, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(data, "load_program", three_person_program)
    result, _ = run_handler(REPORT, {})
    assert result["period"]["end_date"] == D0.isoformat()
    assert len(result["weekly"]) == 12
    assert result["trend"]["direction"] == "insufficient_data"


def test_slope_helpers() -> None:
    assert least_squares_slope([1, 2, 3], [1.0, 0.9, 0.8]) == pytest.approx(-0.1)
    assert least_squares_slope([1], [1.0]) == 0.0
    rising = [(k, 0.8 + 0.01 * k) for k in range(1, 5)]
    assert trend(rising)["direction"] == "improving"


@pytest.mark.parametrize("params", [{"weeks_back": 0}, {"weeks_back": 105},
                                    {"weeks_back": 4, "extra": 1}])
def test_bounds(params: dict) -> None:
    with pytest.raises(ValueError, match=r"weeks_back|extra"):
        REPORT.params.model_validate(params)
