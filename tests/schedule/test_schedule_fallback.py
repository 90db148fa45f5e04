"""Fallback repairs: never an absent, removed or unqualified person, never a double booking."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schedule_builders import at, day, fac, program, res, svc

from taskbroker.schedule.contingency import analyse
from taskbroker.schedule.fallback import SCENARIOS, Scenario, build_scenario, repair
from taskbroker.schedule.generator import generate_program
from taskbroker.schedule.program import Program
from taskbroker.schedule.staffing import absent_dates, build_model

START = dt.date(2030, 5, 6)


def check_plan(program: Program, scenario: Scenario, start: dt.date, days: int) -> None:
    """Every invariant of a repaired schedule."""
    plan = repair(program, scenario, start, days)
    people = {p.id: p for p in program.people}
    away = absent_dates(program, start, start + dt.timedelta(days=days - 1))
    original = {(a.person, a.date, a.half, a.service)
                for a in program.current_run().assignments}
    seen = set()
    for a in plan.assignments:
        key = (a.person, a.date, a.half)
        assert key not in seen, f"double-booked {key}"
        seen.add(key)
        assert a.date not in away.get(a.person, ()), f"absent person assigned {a}"
        active = scenario.first_days is None or (a.date - start).days < scenario.first_days
        if active:
            assert a.person not in scenario.removed, f"removed person assigned {a}"
            assert a.service not in scenario.suspended, f"suspended service staffed {a}"
        if (a.person, a.date, a.half, a.service) not in original:
            assert people[a.person].kind == "faculty"
            assert a.service in people[a.person].qualified, f"unqualified {a}"
    assert 0.0 <= plan.coverage_rate <= 1.0
    assert plan.staffed <= plan.required


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_on_a_generated_program(name: str) -> None:
    p = generate_program(seed=11, faculty=14, residents=18, days=10, services=5, start=START)
    contingency = analyse(build_model(p, START, 10))
    scenario = build_scenario(name, p, START, 10, contingency)
    check_plan(p, scenario, START, 10)
    plan = repair(p, scenario, START, 10)
    assert plan.assignments
    if scenario.suspended:
        assert set(scenario.suspended) <= set(plan.services_reduced)


def test_unknown_scenario_is_an_error() -> None:
    p = generate_program(seed=1, faculty=4, residents=2, days=2, start=START)
    with pytest.raises(ValueError, match="unknown fallback scenario 'nope'"):
        build_scenario("nope", p, START, 2)


def test_repair_reassigns_a_free_qualified_person() -> None:
    # f1 (A) is lost; f2 is free and qualified for A; f3 is free but not qualified;
    # f4 is qualified but away.  The repair must put f2 on A and reach full coverage.
    from schedule_builders import away

    p = program([svc("A")], [fac("f1", "A"), fac("f2", "A"), fac("f3"), fac("f4", "A")],
                [at("f1", 0, "AM", "A")], [away("f4", 0)])
    plan = repair(p, Scenario("t", "t", removed=frozenset({"f1"})), day(0), 1)
    assert [(a.person, a.service) for a in plan.assignments] == [("f2", "A")]
    assert plan.coverage_rate == 1.0 and plan.reassigned == 1


def test_essential_service_takes_faculty_from_non_essential_ones() -> None:
    # ICU (essential) loses f1; the only other person qualified, f2, works the clinic.
    # The repair moves f2 to the ICU; the clinic is left short.
    p = program([svc("icu", essential=True), svc("clinic")],
                [fac("f1", "icu"), fac("f2", "icu", "clinic"), res("r1")],
                [at("f1", 0, "AM", "icu"), at("f2", 0, "AM", "clinic"),
                 at("r1", 0, "AM", "clinic")])
    plan = repair(p, Scenario("t", "t", removed=frozenset({"f1"})), day(0), 1)
    staff = {(a.person, a.service) for a in plan.assignments}
    assert ("f2", "icu") in staff and ("f2", "clinic") not in staff
    assert plan.services_reduced == ["clinic"] and plan.moved_from_non_essential == 1
    assert plan.coverage_rate == 0.5


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), scenario=st.sampled_from(SCENARIOS),
       faculty=st.integers(2, 10), services=st.integers(1, 5))
def test_repair_invariants_random(seed: int, scenario: str, faculty: int, services: int) -> None:
    p = generate_program(seed=seed, faculty=faculty, residents=6, days=4, services=services,
                         absence_rate=0.2, start=START)
    check_plan(p, build_scenario(scenario, p, START, 4, analyse(build_model(p, START, 4))),
               START, 4)
