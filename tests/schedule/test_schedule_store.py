"""ScheduleStore on SQLite and PostgreSQL: round trip, runs, crisis state, fallbacks."""

from __future__ import annotations

import datetime as dt

import pytest

from taskbroker.core.settings import get_settings
from taskbroker.schedule.generator import generate_program
from taskbroker.schedule.program import Assignment, Run
from taskbroker.schedule.store import ScheduleStore

START = dt.date(2030, 9, 2)


def test_round_trip(store: ScheduleStore) -> None:
    assert store.is_empty()
    p = generate_program(seed=3, faculty=8, residents=9, days=14, services=4, start=START)
    store.save_program(p)
    assert not store.is_empty()
    loaded = store.load_program()
    assert loaded == p
    assert loaded.current_run().id == p.current_run().id
    assert [r.created_at.tzinfo is not None for r in loaded.runs] == [True] * 3


def test_save_replaces_everything(store: ScheduleStore) -> None:
    store.save_program(generate_program(seed=1, faculty=6, residents=4, days=5, start=START))
    second = generate_program(seed=2, faculty=3, residents=2, days=3, services=2, start=START)
    store.save_program(second)
    assert store.load_program() == second


def test_add_run_becomes_current_and_is_validated(store: ScheduleStore) -> None:
    p = generate_program(seed=4, faculty=5, residents=3, days=3, services=3, start=START)
    store.save_program(p)
    newest = p.current_run().created_at + dt.timedelta(hours=1)
    a = p.current_run().assignments[0]
    run = Run(id="run-new", created_at=newest, assignments=(a,))
    store.add_run(run)
    loaded = store.load_program()
    assert loaded.current_run().id == "run-new"
    assert loaded.run("run-new").assignments == (a,)
    with pytest.raises(ValueError, match="already exists"):
        store.add_run(run)
    bad = Run(id="run-bad", created_at=newest,
              assignments=(Assignment(person="ghost", date=START, half="AM",
                                      service=a.service),))
    with pytest.raises(ValueError, match=r"runs\[run-bad\]\.assignments\[0\]\.person"):
        store.add_run(bad)


def test_crisis_lifecycle(store: ScheduleStore) -> None:
    assert store.active_crisis() is None
    with pytest.raises(ValueError, match="no active crisis"):
        store.deactivate_crisis(deactivated_by="admin")
    first = store.activate_crisis(severity="minor", reason="flu", approved_by="alice",
                                  defense_level=2, defense_level_name="CONTROL",
                                  actions=["freeze leave"])
    assert store.active_crisis() == first and first["active"]
    second = store.activate_crisis(severity="critical", reason="storm", approved_by="bob",
                                   defense_level=5, defense_level_name="EMERGENCY",
                                   actions=["essential only"])
    active = store.active_crisis()
    assert active["id"] == second["id"] and active["approved_by"] == "bob"
    closed = store.deactivate_crisis(deactivated_by="carol", reason="over")
    assert closed["deactivated_by"] == "carol" and not closed["active"]
    assert store.active_crisis() is None
    history = store.crisis_history()
    assert [h["severity"] for h in history] == ["critical", "minor"]
    assert history[1]["deactivated_by"] == "bob"  # superseded by bob's activation
    assert history[1]["deactivation_reason"].startswith("superseded")


def test_fallbacks_one_per_scenario(store: ScheduleStore) -> None:
    common = dict(valid_from=START, valid_until=START + dt.timedelta(days=9),
                  services_reduced=["clinic"], run_id="r")
    store.save_fallback(scenario="a", coverage_rate=0.5, assignments=[["f", "x"]], **common)
    store.save_fallback(scenario="b", coverage_rate=0.7, assignments=[], **common)
    saved = store.save_fallback(scenario="a", coverage_rate=0.9, assignments=[["f", "y"]],
                                removed_people=["f1"], details={"k": 1}, **common)
    listed = store.list_fallbacks()
    assert sorted(f["scenario"] for f in listed) == ["a", "b"]
    a = next(f for f in listed if f["scenario"] == "a")
    assert a == saved and a["coverage_rate"] == 0.9 and "assignments" not in a
    assert a["valid_until"] == "2030-09-11" and a["removed_people"] == ["f1"]
    full = store.list_fallbacks(include_assignments=True)
    assert next(f for f in full if f["scenario"] == "a")["assignments"] == [["f", "y"]]


def test_the_data_plugin_keeps_one_store_per_configured_url(monkeypatch, tmp_path) -> None:
    from taskbroker.plugins.data import configure_database, schedule_store

    monkeypatch.setenv("TASKBROKER_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    get_settings.cache_clear()
    try:
        one = schedule_store()
        assert schedule_store() is one
        assert str(one.engine.url).endswith("a.db")
        configure_database(f"sqlite:///{tmp_path / 'b.db'}")
        two = schedule_store()
        assert two is not one and str(two.engine.url).endswith("b.db")
        configure_database(None)
        assert schedule_store() is one
    finally:
        configure_database(None)
        get_settings.cache_clear()


def test_bulk_load_of_a_year(tmp_path) -> None:
    from taskbroker.adapters.sql.engine import engine_for

    store = ScheduleStore(engine_for(f"sqlite:///{tmp_path / 'big.db'}"))
    p = generate_program(seed=0, faculty=40, residents=60, days=365, start=START)
    store.save_program(p)
    assert store.load_program() == p
