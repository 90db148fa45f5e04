"""Every resilience handler run in-process against a real store (SQLite)."""

from __future__ import annotations

import datetime as dt

import pytest

from taskbroker import TaskCancelled
from taskbroker.adapters.sql.engine import engine_for
from taskbroker.core.settings import get_settings
from taskbroker.plugins.data import schedule_store
from taskbroker.plugins.resilience import task_types
from taskbroker.schedule.generator import generate_program
from taskbroker.schedule.program import (
    Assignment,
    Person,
    Program,
    ProgramInfo,
    Run,
    Service,
)
from taskbroker.schedule.store import ScheduleStore
from taskbroker.testing import make_context, run_handler

START = dt.date(2031, 3, 3)


@pytest.fixture
def store(tmp_path) -> ScheduleStore:
    """A SQLite store holding a small generated program starting at START."""
    s = ScheduleStore(engine_for(f"sqlite:///{tmp_path / 'r.db'}"))
    s.save_program(generate_program(seed=9, faculty=12, residents=15, days=21, services=5,
                                    start=START))
    return s


@pytest.fixture
def types(store):
    return {t.name: t for t in task_types(store)}


def tiny_program() -> Program:
    # One block: A needs 1 (f1), B needs 1 (f3), f2 free for both -> N-1 pass, and the three
    # pairs {f1,f2}, {f1,f3}, {f2,f3} are fatal (see the schedule tests for the reasoning).
    def a(p, s):
        return Assignment(person=p, date=START, half="AM", service=s)

    return Program(
        program=ProgramInfo(name="tiny"),
        services=(Service(id="A", name="A", min_faculty=1),
                  Service(id="B", name="B", min_faculty=1)),
        people=(Person(id="f1", name="One", kind="faculty", qualified=("A",)),
                Person(id="f2", name="Two", kind="faculty", qualified=("A", "B")),
                Person(id="f3", name="Three", kind="faculty", qualified=("B",))),
        runs=(Run(id="r1", created_at=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
                  assignments=(a("f1", "A"), a("f3", "B"))),))


def test_contingency_hand_checked(tmp_path) -> None:
    s = ScheduleStore(engine_for(f"sqlite:///{tmp_path / 't.db'}"))
    s.save_program(tiny_program())
    tt = {t.name: t for t in task_types(s)}["resilience_contingency"]
    result, sink = run_handler(tt, {"days_ahead": 7, "start_date": START.isoformat()})
    assert result["n1_pass"] is True and result["n1_vulnerabilities_count"] == 0
    assert result["n2_pass"] is False and result["n2_fatal_pairs_count"] == 3
    assert result["period"] == {"start": "2031-03-03", "end": "2031-03-09", "days": 7}
    worst = result["n2_worst"]
    assert {tuple(w["pair"]) for w in worst} == {("f1", "f2"), ("f1", "f3"), ("f2", "f3")}
    assert all(w["slots"][0]["block"] == "2031-03-03 AM" and w["why"] for w in worst)
    assert result["recommendations"]
    assert sink.reports[0][0] == 0 and sink.reports[-1][0] >= 90
    assert [p for p, _ in sink.reports] == sorted(p for p, _ in sink.reports)


def test_contingency_result_fields(types) -> None:
    result, _ = run_handler(types["resilience_contingency"], {"start_date": START.isoformat(),
                                                              "days_ahead": 21})
    for key in ("timestamp", "period", "n1_pass", "n1_vulnerabilities_count", "n2_pass",
                "n2_fatal_pairs_count", "n1_worst", "n2_worst", "recommendations",
                "unstaffed_blocks_count"):
        assert key in result
    assert result["n1_vulnerabilities_count"] == len(
        {w["faculty"] for w in result["n1_worst"]}) or len(result["n1_worst"]) == 10
    for w in result["n1_worst"]:
        assert w["failing_blocks"] >= len(w["slots"]) >= 1 and w["why"]


def test_utilization_forecast(types) -> None:
    result, _ = run_handler(types["resilience_utilization_forecast"],
                            {"start_date": START.isoformat(), "days_ahead": 21})
    assert result["total_faculty"] == 12
    assert len(result["days"]) == 21
    assert sum(result["level_counts"].values()) == 21
    assert result["high_risk_days_count"] == len(result["high_risk_days"])
    assert all(d["level"] in ("RED", "BLACK") for d in result["high_risk_days"])
    covered = sum(p["days"] for p in result["high_risk_periods"])
    assert covered == result["high_risk_days_count"]


def test_fallback_precompute_stores_every_scenario(types, store) -> None:
    result, _ = run_handler(types["resilience_fallback_precompute"],
                            {"start_date": START.isoformat(), "days_ahead": 14})
    assert result["scenarios_computed"] == 7 and result["scenarios_failed"] == 0
    stored = store.list_fallbacks()
    assert len(stored) == 7
    for f in stored:
        assert 0 <= f["coverage_rate"] <= 1
        assert f["valid_until"] == "2031-03-16"
    essential_only = next(f for f in stored if f["scenario"] == "pandemic_essential_only")
    assert essential_only["services_reduced"]


def test_crisis_flow_read_by_health_check(types, store) -> None:
    before, _ = run_handler(types["resilience_health_check"], {"start_date": START.isoformat()})
    assert before["crisis_active"] is False
    assert before["status"] in ("healthy", "warning", "degraded", "critical")
    act, _ = run_handler(types["resilience_crisis_activation"],
                         {"severity": "critical", "reason": "blizzard"}, owner="admin-1")
    assert act["approved_by"] == "admin-1" and act["defense_level"] == 5
    assert act["actions_taken"] and act["crisis_active"] is True
    assert store.active_crisis()["approved_by"] == "admin-1"
    during, _ = run_handler(types["resilience_health_check"], {"start_date": START.isoformat()})
    assert during["status"] == "emergency" and during["crisis"]["severity"] == "critical"
    assert during["defense_level"] == 5
    done, _ = run_handler(types["resilience_crisis_deactivation"], {"reason": "clear"},
                          owner="admin-2")
    assert done["deactivated_by"] == "admin-2" and done["crisis_active"] is False
    after, _ = run_handler(types["resilience_health_check"], {"start_date": START.isoformat()})
    assert after["crisis_active"] is False and after["status"] == before["status"]
    with pytest.raises(ValueError, match="no active crisis"):
        run_handler(types["resilience_crisis_deactivation"], {}, owner="admin-2")


def test_crisis_approver_must_be_the_caller(types, store) -> None:
    with pytest.raises(ValueError, match="approved_by"):
        run_handler(types["resilience_crisis_activation"],
                    {"severity": "minor", "reason": "x", "approved_by": "someone-else"},
                    owner="admin-1")
    assert store.active_crisis() is None
    result, _ = run_handler(types["resilience_crisis_activation"],
                            {"severity": "minor", "reason": "x", "approved_by": "admin-1"},
                            owner="admin-1")
    assert result["approved_by"] == "admin-1" and result["defense_level"] == 2


def test_actions_escalate_with_severity(types) -> None:
    counts = []
    for sev in ("minor", "moderate", "severe", "critical"):
        r, _ = run_handler(types["resilience_crisis_activation"],
                           {"severity": sev, "reason": "x"}, owner="a")
        counts.append(len(r["actions_taken"]))
    assert counts == sorted(counts) and len(set(counts)) == 4


class CancelAfter:
    """A sink that asks for cancellation after ``n`` progress reports."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reports: list = []

    def report_progress(self, task_id, progress, message):
        self.reports.append((progress, message))

    def is_cancel_requested(self, task_id):
        return len(self.reports) >= self.n


@pytest.mark.parametrize("name", ["resilience_contingency", "resilience_health_check",
                                  "resilience_utilization_forecast",
                                  "resilience_fallback_precompute"])
def test_cancelled_before_start(types, name) -> None:
    tt = types[name]
    ctx, sink = make_context(name)
    sink.cancel.set()
    with pytest.raises(TaskCancelled):
        tt.run(tt.params.model_validate({"start_date": START.isoformat()}), ctx)


def test_fallback_cancelled_midway_stops_storing(types, store) -> None:
    from taskbroker.core.contract.tasktype import TaskContext

    tt = types["resilience_fallback_precompute"]
    sink = CancelAfter(4)  # 0 load, 5 contingency, 10 first scenario, next scenario
    ctx = TaskContext("t", tt.name, sink=sink, owner="u", check_interval=0.0)
    with pytest.raises(TaskCancelled):
        tt.run(tt.params.model_validate({"start_date": START.isoformat(), "days_ahead": 14}),
               ctx)
    assert 0 < len(store.list_fallbacks()) < 7


def test_contingency_cancelled_midway(types) -> None:
    from taskbroker.core.contract.tasktype import TaskContext

    tt = types["resilience_contingency"]
    sink = CancelAfter(3)
    ctx = TaskContext("t", tt.name, sink=sink, owner="u", check_interval=0.0)
    with pytest.raises(TaskCancelled):
        tt.run(tt.params.model_validate({"start_date": START.isoformat()}), ctx)
    assert all(p < 100 for p, _ in sink.reports)


def test_handlers_use_the_configured_database(monkeypatch, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("TASKBROKER_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        schedule_store().save_program(tiny_program())
        tt = {t.name: t for t in task_types()}["resilience_contingency"]
        result, _ = run_handler(tt, {"start_date": START.isoformat(), "days_ahead": 1})
        assert result["n2_fatal_pairs_count"] == 3
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("name", ["resilience_contingency", "resilience_health_check",
                                  "resilience_utilization_forecast",
                                  "resilience_fallback_precompute"])
def test_no_schedule_is_a_clear_error(tmp_path, name) -> None:
    empty = ScheduleStore(engine_for(f"sqlite:///{tmp_path / 'empty.db'}"))
    tt = {t.name: t for t in task_types(empty)}[name]
    with pytest.raises(ValueError, match="no current schedule"):
        run_handler(tt, {})


def test_window_defaults_to_today_in_the_program_time_zone(tmp_path) -> None:
    from taskbroker.plugins.resilience._common import window_start

    s = ScheduleStore(engine_for(f"sqlite:///{tmp_path / 'today.db'}"))
    program = generate_program(seed=1, faculty=5, residents=4, days=3)
    s.save_program(program)
    tt = {t.name: t for t in task_types(s)}["resilience_utilization_forecast"]
    result, _ = run_handler(tt, {"days_ahead": 3})
    assert result["period"]["start"] == window_start(None, program).isoformat()


# --- days without schedule data (the generated program covers START .. START + 20) ----------


def test_utilization_past_the_schedule_is_no_data_not_green(types) -> None:
    result, _ = run_handler(types["resilience_utilization_forecast"],
                            {"start_date": (START + dt.timedelta(days=14)).isoformat(),
                             "days_ahead": 14})
    levels = [d["level"] for d in result["days"]]
    # 7 days with data (START+14 .. START+20), then 7 past the schedule
    assert levels[7:] == ["NO_DATA"] * 7 and "NO_DATA" not in levels[:7]
    assert all(d["utilization"] is None for d in result["days"][7:])
    assert result["level_counts"]["NO_DATA"] == 7
    known = [d["utilization"] for d in result["days"][:7]]
    assert result["max_utilization"] == max(known)
    assert result["average_utilization"] == pytest.approx(sum(known) / 7, abs=1e-4)
    cov = result["data_coverage"]
    assert (cov["days_with_data"], cov["days_without_data"], cov["complete"]) == (7, 7, False)
    assert cov["missing"] == [{"start": (START + dt.timedelta(days=21)).isoformat(),
                               "end": (START + dt.timedelta(days=27)).isoformat(), "days": 7}]
    assert len(result["warnings"]) == 1 and "7 of 14 days" in result["warnings"][0]
    full, _ = run_handler(types["resilience_utilization_forecast"],
                          {"start_date": START.isoformat(), "days_ahead": 21})
    assert full["warnings"] == [] and full["data_coverage"]["complete"]


def test_contingency_over_no_data_passes_nothing_and_advises_loading(types) -> None:
    result, _ = run_handler(types["resilience_contingency"],
                            {"start_date": (START + dt.timedelta(days=60)).isoformat(),
                             "days_ahead": 7})
    assert result["blocks_analysed"] == 0
    assert result["n1_pass"] is None and result["n2_pass"] is None
    assert not any(r.startswith("No action needed") for r in result["recommendations"])
    assert result["recommendations"][0].startswith("No schedule data in the window")
    assert result["warnings"][0].startswith("no schedule data in the window")


def test_health_is_never_healthy_over_missing_days(types) -> None:
    partial, _ = run_handler(types["resilience_health_check"],
                             {"start_date": (START + dt.timedelta(days=18)).isoformat()})
    assert partial["status"] != "healthy" and partial["data_coverage"]["days_with_data"] == 3
    assert any("No schedule data for 4 of the next 7 days" in a for a in partial["actions"])
    none, _ = run_handler(types["resilience_health_check"],
                          {"start_date": (START + dt.timedelta(days=60)).isoformat()})
    assert none["status"] == "unknown" and none["utilization"]["max"] is None
    assert "No action needed." not in none["actions"]
