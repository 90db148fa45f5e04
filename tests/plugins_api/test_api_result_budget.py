"""The result budget: every built-in task type's default answer fits in 32 KB at 100 faculty x
365 days (and over random programs), cut lists say so and carry their totals, and
detail='full' returns everything."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskbroker.plugins.data.budget import RESULT_BUDGET_BYTES
from taskbroker.schedule.generator import generate_program
from taskbroker.schedule.program import Assignment, Program
from taskbroker.testing.in_process import InProcessTaskbroker, in_process_taskbroker

READ_ONLY = ["resilience_health_check", "resilience_contingency",
             "resilience_utilization_forecast", "metrics_computation",
             "metrics_fairness_report", "metrics_version_diff", "schedule_runs"]


def size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def load(program: Program) -> InProcessTaskbroker:
    from taskbroker.plugins.data import schedule_store

    tb = in_process_taskbroker(builtin_plugins=True)
    schedule_store().save_program(program)
    return tb


def params_for(name: str, program: Program, days: int) -> dict[str, Any]:
    start = min(a.date for r in program.runs for a in r.assignments)
    end = start + dt.timedelta(days=days - 1)
    ok = [r.id for r in sorted(program.runs, key=lambda r: r.created_at)
          if r.status == "success"]
    return {
        "resilience_health_check": {"start_date": start.isoformat()},
        "resilience_contingency": {"start_date": start.isoformat(), "days_ahead": days},
        "resilience_utilization_forecast": {"start_date": start.isoformat(),
                                            "days_ahead": days},
        "resilience_fallback_precompute": {"start_date": start.isoformat(),
                                           "days_ahead": days},
        "metrics_computation": {"start_date": start.isoformat(), "end_date": end.isoformat()},
        "metrics_fairness_report": {"end_date": end.isoformat(),
                                    "weeks_back": max(1, min(104, days // 7))},
        "metrics_version_diff": {"run_id_1": ok[0], "run_id_2": ok[-1]},
        "schedule_runs": {},
    }[name]


def check_caps(value: Any) -> None:
    """Every cut list is as long as its limit says and shorter than its total; every list with
    a total and no cut is whole."""
    if isinstance(value, dict):
        cut = value.get("truncated", {})
        for key, items in value.items():
            if isinstance(items, list) and f"{key}_total" in value:
                total = value[f"{key}_total"]
                if key in cut:
                    assert len(items) < total and f"of {total} " in cut[key], (key, cut[key])
                else:
                    assert len(items) == total, key
        for key in cut:
            assert f"{key}_total" in value, key
        for item in value.values():
            check_caps(item)
    elif isinstance(value, list):
        for item in value:
            check_caps(item)


@pytest.fixture(autouse=True)
def _in_memory_schedule_data() -> None:
    """The in-process tier's schedule data (in-memory SQLite), for each test (the suite's
    autouse fixture points it back at the environment's between tests)."""
    from taskbroker.plugins.data import configure_database

    configure_database("memory://")


@pytest.fixture(scope="module")
def big() -> tuple[InProcessTaskbroker, Program]:
    program = generate_program(seed=11, faculty=100, residents=60, days=365,
                               start=dt.date(2031, 1, 6))
    return load(program), program


@pytest.mark.parametrize("name", [*READ_ONLY, "resilience_fallback_precompute"])
def test_100_faculty_by_365_days_fits_the_budget(big: tuple[InProcessTaskbroker, Program],
                                                 name: str) -> None:
    tb, program = big
    status = tb.run_task(name, params_for(name, program, 365))
    assert status.status == "success", status.error
    assert size(status.result) <= RESULT_BUDGET_BYTES, (name, size(status.result))
    check_caps(status.result)


def test_full_detail_returns_every_day(big: tuple[InProcessTaskbroker, Program]) -> None:
    tb, program = big
    params = params_for("resilience_utilization_forecast", program, 365)
    summary = tb.run_task("resilience_utilization_forecast", params).result
    full = tb.run_task("resilience_utilization_forecast", {**params, "detail": "full"}).result
    assert summary["days_total"] == full["days_total"] == len(full["days"]) == 365
    assert summary["days"] == full["days"][: len(summary["days"])]
    assert "days" in summary["truncated"] and "truncated" not in full
    assert summary["level_counts"] == full["level_counts"]  # totals are never cut


def test_every_resident_breaking_the_rules_stays_within_the_budget() -> None:
    # 40 residents on duty 15 h every day for a year: each breaks both rules in every period
    base = generate_program(seed=2, faculty=10, residents=40, days=365,
                            start=dt.date(2031, 1, 6))
    residents = [p for p in base.people if p.kind == "resident"]
    current = base.current_run()
    assert current is not None
    services = [s.id for s in base.services]
    heavy = tuple(Assignment(person=p.id, date=dt.date(2031, 1, 6) + dt.timedelta(days=k),
                             half=half, service=services[i % len(services)], hours=7.5)
                  for i, p in enumerate(residents) for k in range(365) for half in ("AM", "PM"))
    faculty_work = tuple(a for a in current.assignments
                         if a.person not in {r.id for r in residents})
    program = base.model_copy(update={"runs": (current.model_copy(
        update={"assignments": faculty_work + heavy}),)})
    tb = load(program)
    status = tb.run_task("metrics_computation", {"start_date": "2031-01-06",
                                                 "end_date": "2032-01-05"})
    assert status.status == "success", status.error
    compliance = status.result["schedule_analysis"]["metrics"]["compliance"]["details"]
    assert compliance["compliant_residents"] == 0
    assert compliance["violation_count"] == compliance["violations_total"] > 1000
    assert size(status.result) <= RESULT_BUDGET_BYTES
    check_caps(status.result)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), faculty=st.integers(2, 40), residents=st.integers(0, 50),
       days=st.integers(7, 200), services=st.integers(1, 8),
       absence=st.floats(0.0, 0.3))
def test_random_programs_stay_within_the_budget(seed: int, faculty: int, residents: int,
                                                days: int, services: int,
                                                absence: float) -> None:
    program = generate_program(seed=seed, faculty=faculty, residents=residents, days=days,
                               services=services, absence_rate=absence,
                               start=dt.date(2031, 1, 6))
    tb = load(program)
    for name in READ_ONLY:
        status = tb.run_task(name, params_for(name, program, days))
        assert status.status == "success", (name, status.error)
        assert size(status.result) <= RESULT_BUDGET_BYTES, (name, size(status.result))
        check_caps(status.result)
