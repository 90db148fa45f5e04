"""metrics_computation: the handler's result, stability, defaults and parameter validation."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from metrics_programs import (
    D0,
    asg,
    day,
    make_program,
    make_run,
    three_person_assignments,
    three_person_program,
)
from pydantic import ValidationError

from taskbroker.plugins.metrics import TASK_TYPES, data
from taskbroker.plugins.metrics.params import ComputationParams
from taskbroker.testing import run_handler

COMPUTATION = {t.name: t for t in TASK_TYPES}["metrics_computation"]
WINDOW = {"start_date": D0.isoformat(), "end_date": day(27).isoformat()}


@pytest.fixture
def program_is(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Make data.load_program() return the given program."""
    def use(program):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(data, "load_program", lambda: program)
        return program
    return use


def test_result_shape_and_hand_values(program_is) -> None:  # type: ignore[no-untyped-def]
    program_is(three_person_program())
    result, sink = run_handler(COMPUTATION, WINDOW)
    analysis = result["schedule_analysis"]
    m = analysis["metrics"]
    assert set(m) == {"fairness", "coverage", "compliance"}
    for metric in m.values():
        assert {"value", "status", "thresholds", "benchmark", "details"} <= set(metric)
    assert m["fairness"]["value"] == pytest.approx(2.875 / 3, abs=1e-4)
    assert m["coverage"]["value"] == pytest.approx(100 * 19 / 52, abs=1e-4)
    assert m["compliance"]["value"] == 0.0
    # workload: R1 360 h + R2 280 h + F 80 h = 720 h in 48 + 28 + 20 = 96 assignments
    w = analysis["workload"]
    assert (w["total_hours"], w["assignments"]) == (720.0, 96)
    assert w["by_cohort"]["pgy1"]["mean"] == 320.0
    assert analysis["stability"]["previous_run_id"] is None
    assert result["period"] == {**WINDOW, "days": 28}
    pcts = [p for p, _ in sink.reports]
    assert pcts == sorted(pcts) and pcts[0] == 0 and pcts[-1] == 100


def test_stability_against_previous_successful_run(program_is) -> None:  # type: ignore[no-untyped-def]
    current = three_person_assignments()
    # previous run: R2's D0 AM shift missing and R1's D0 PM on surgery; a newer failed run is
    # ignored, and so is a run outside the window.
    previous = [a for a in current if not (a.person == "R2" and a.date == D0)]
    previous = [asg("R1", D0, "PM", 7.5, "surg") if (a.person, a.date, a.half) == (
        "R1", D0, "PM") else a for a in previous]
    program_is(make_program([
        make_run("old", [asg("R1", day(100), "AM", 5)], hours_ago=48),
        make_run("prev", previous, hours_ago=24),
        make_run("cur", current, hours_ago=0),
        make_run("broken", [], hours_ago=-5, status="failed"),
    ]))
    result, _ = run_handler(COMPUTATION, WINDOW)
    st = result["schedule_analysis"]["stability"]
    # keys in either run = 96; differing = 1 added (R2 D0 AM) + 1 changed (R1 D0 PM)
    assert (st["previous_run_id"], st["current_run_id"]) == ("prev", "cur")
    assert (st["added"], st["removed"], st["changed"], st["unchanged"]) == (1, 0, 1, 94)
    assert st["churn_rate"] == pytest.approx(2 / 96, abs=1e-4)
    assert st["status"] == "stable"


def test_default_window_is_today_plus_90_days(fixed_today, program_is) -> None:  # type: ignore[no-untyped-def]
    program_is(three_person_program())
    result, _ = run_handler(COMPUTATION, {})
    assert result["period"] == {"start_date": D0.isoformat(),
                                "end_date": day(90).isoformat(), "days": 91}
    only_start, _ = run_handler(COMPUTATION, {"start_date": day(3).isoformat()})
    assert only_start["period"]["end_date"] == day(93).isoformat()


def test_no_successful_run_is_an_error(program_is) -> None:  # type: ignore[no-untyped-def]
    program_is(make_program([make_run("f", [], status="failed")]))
    with pytest.raises(ValueError, match="no successful schedule run"):
        run_handler(COMPUTATION, WINDOW)


@pytest.mark.parametrize("params,names", [
    ({"start_date": "2025-03-01", "end_date": "2025-02-28"}, ["end_date", "start_date"]),
    ({"start_date": "2025-01-01", "end_date": "2027-01-02"}, ["end_date", "start_date",
                                                              "2 years"]),
    ({"start_date": "2025-13-01"}, ["start_date"]),
    ({"end_date": "soon"}, ["end_date"]),
    ({"start": "2025-01-01"}, ["start", "Extra inputs are not permitted"]),
])
def test_validation_errors_name_the_fields(params: dict, names: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        ComputationParams.model_validate(params)
    assert isinstance(info.value, ValueError)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize("start,end", [("2025-01-01", "2027-01-01"), ("2024-02-29", "2026-02-28"),
                                       ("2025-05-05", "2025-05-05")])
def test_window_up_to_two_years_is_accepted(start: str, end: str) -> None:
    p = ComputationParams.model_validate({"start_date": start, "end_date": end})
    assert p.window(dt.date(1999, 1, 1)).end == dt.date.fromisoformat(end)


def test_the_default_window_starts_today_in_the_program_time_zone() -> None:
    p = ComputationParams.model_validate({})
    assert (p.start_date, p.end_date) == (None, None)  # resolved when the task runs
    w = p.window(dt.date(2025, 3, 1))
    assert (w.start, w.end) == (dt.date(2025, 3, 1), dt.date(2025, 5, 30))
    late = ComputationParams.model_validate({"end_date": "2025-01-01"})
    with pytest.raises(ValueError, match=r"end_date \(2025-01-01\) is before start_date "
                                         r"\(2025-03-01\)"):
        late.window(dt.date(2025, 3, 1))


def test_generated_program_fairness_matches_pairwise_gini(program_is) -> None:  # type: ignore[no-untyped-def]
    from taskbroker.schedule.generator import generate_program

    program = program_is(generate_program(seed=7, faculty=8, residents=12, days=28, start=D0))
    result, _ = run_handler(COMPUTATION, WINDOW)
    cohorts = result["schedule_analysis"]["metrics"]["fairness"]["details"]["cohorts"]
    run_ = program.current_run()
    loads: dict[str, float] = {}
    for a in run_.assignments:
        loads[a.person] = loads.get(a.person, 0.0) + a.hours
    away = {ab.person: (ab.end - ab.start).days + 1 for ab in program.absences
            if ab.status == "approved" and ab.start <= D0 and ab.end >= day(27)}
    total_people = 0
    weighted = 0.0
    for label, group in [("faculty", [p for p in program.people if p.kind == "faculty"])] + [
            (f"pgy{k}", [p for p in program.people if p.pgy == k]) for k in (1, 2, 3)]:
        xs = [loads.get(p.id, 0.0) for p in group if p.id not in away or loads.get(p.id)]
        mean = sum(xs) / len(xs)
        g = sum(abs(a - b) for a, b in itertools.product(xs, repeat=2)) / (2 * len(xs) ** 2 * mean)
        assert cohorts[label]["value"] == pytest.approx(1 - g, abs=1e-4)
        total_people += len(xs)
        weighted += (1 - g) * len(xs)
    fairness = result["schedule_analysis"]["metrics"]["fairness"]["value"]
    assert fairness == pytest.approx(weighted / total_people, abs=1e-4)


def test_window_errors_are_located_on_end_date() -> None:
    with pytest.raises(ValidationError) as info:
        ComputationParams.model_validate({"start_date": "2025-03-01", "end_date": "2025-02-01"})
    assert [e["loc"] for e in info.value.errors()] == [("end_date",)]
