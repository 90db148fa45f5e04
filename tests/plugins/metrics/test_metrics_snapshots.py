"""Snapshot storage and cleanup on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from metrics_programs import D0, three_person_program
from sqlalchemy import func, select, text

from taskbroker.adapters.sql.engine import engine_for
from taskbroker.plugins.data import schedule_store
from taskbroker.plugins.metrics import TASK_TYPES, data
from taskbroker.plugins.metrics.cleanup import delete_snapshots_before
from taskbroker.plugins.metrics.computation import analyze
from taskbroker.plugins.metrics.snapshots import (
    get_snapshot,
    list_snapshots,
    snapshots_table,
    store_snapshot,
)
from taskbroker.plugins.metrics.workload import Window
from taskbroker.schedule.program import Program
from taskbroker.testing import make_context, run_handler

TYPES = {t.name: t for t in TASK_TYPES}
NOW = dt.datetime.combine(D0, dt.time(12), tzinfo=dt.UTC)


def _analysis() -> dict:
    return analyze(three_person_program(), Window(D0, D0 + dt.timedelta(days=27)))


def test_store_list_get_roundtrip(db_url: str) -> None:
    engine = engine_for(db_url)
    analysis = _analysis()
    for i, age in enumerate([30, 1, 10]):
        store_snapshot(analysis, snapshot_id=f"snap-{i}",
                       created_at=NOW - dt.timedelta(days=age), engine=engine)
    listed = list_snapshots(10, engine=engine)
    assert [s["snapshot_id"] for s in listed] == ["snap-1", "snap-2", "snap-0"]
    assert [s["snapshot_id"] for s in list_snapshots(1, engine=engine)] == ["snap-1"]
    first = listed[0]
    assert dt.datetime.fromisoformat(first["created_at"]) == NOW - dt.timedelta(days=1)
    assert first["fairness"] == analysis["metrics"]["fairness"]["value"]
    assert first["coverage"] == analysis["metrics"]["coverage"]["value"]
    assert (first["period_start"], first["run_id"]) == (D0.isoformat(), "run-3p")
    full = get_snapshot("snap-0", engine=engine)
    assert full["data"] == analysis
    with pytest.raises(ValueError, match="nope"):
        get_snapshot("nope", engine=engine)
    with pytest.raises(ValueError, match="limit"):
        list_snapshots(0, engine=engine)


def test_snapshot_handler_stores_and_is_idempotent(
    ledger_env: str, fixed_today: dt.date, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "load_program", three_person_program)
    result, sink = run_handler(TYPES["metrics_snapshot"], {"period_days": 27})
    snap = result["snapshot_data"]
    assert snap["period"] == {"start_date": D0.isoformat(),
                              "end_date": (D0 + dt.timedelta(days=27)).isoformat(), "days": 28}
    assert snap["metrics"]["fairness"]["value"] == pytest.approx(2.875 / 3, abs=1e-4)
    assert snap["metrics"]["compliance"] == {"value": 0.0, "status": "critical"}
    assert sink.reports[-1][0] == 100
    # the same task delivered twice replaces its snapshot
    run_handler(TYPES["metrics_snapshot"], {"period_days": 27})
    listed = list_snapshots(10)
    assert [s["snapshot_id"] for s in listed] == [result["snapshot_id"]]
    assert get_snapshot(result["snapshot_id"])["data"]["metrics"]["coverage"]["value"] == (
        pytest.approx(100 * 19 / 52, abs=1e-4))


def _schedule_counts(url: str) -> tuple[int, int]:
    with engine_for(url).connect() as conn:
        runs = conn.execute(text("SELECT count(*) FROM schedule_runs")).scalar_one()
        rows = conn.execute(text("SELECT count(*) FROM schedule_assignments")).scalar_one()
    return runs, rows


def test_cleanup_deletes_only_old_snapshots_never_schedule_data(
    ledger_env: str, fixed_today: dt.date
) -> None:
    from metrics_programs import make_run

    url = ledger_env
    base = three_person_program()
    # two runs, one of them as old as the oldest snapshot: cleanup must not care
    program = Program.model_validate({**base.model_dump(), "runs": [
        *base.model_dump()["runs"],
        make_run("ancient", base.runs[0].assignments[:5], hours_ago=24 * 800).model_dump()]})
    store = schedule_store()
    store.save_program(program)
    before_counts = _schedule_counts(url)
    assert before_counts == (2, 96 + 5)
    before_program = store.load_program()

    analysis = _analysis()
    ages = {"d400": 400, "d366": 366, "d364": 364, "d10": 10}
    for sid, age in ages.items():
        store_snapshot(analysis, snapshot_id=sid, created_at=NOW - dt.timedelta(days=age))

    result, _ = run_handler(TYPES["metrics_cleanup"], {"retention_days": 365})
    assert result["retention_days"] == 365
    assert result["deleted_count"] == 2
    assert dt.datetime.fromisoformat(result["cutoff_date"]) == NOW - dt.timedelta(days=365)
    assert sorted(s["snapshot_id"] for s in list_snapshots(10)) == ["d10", "d364"]
    # schedule runs and assignments are untouched
    assert _schedule_counts(url) == before_counts
    after_program = schedule_store().load_program()
    assert after_program == before_program
    assert {r.id: len(r.assignments) for r in after_program.runs} == {"run-3p": 96, "ancient": 5}
    # running again deletes nothing more
    again, _ = run_handler(TYPES["metrics_cleanup"], {"retention_days": 365})
    assert again["deleted_count"] == 0


def test_delete_before_is_strict(db_url: str) -> None:
    engine = engine_for(db_url)
    store_snapshot(_analysis(), snapshot_id="edge", created_at=NOW, engine=engine)
    assert delete_snapshots_before(NOW, engine=engine) == 0
    assert delete_snapshots_before(NOW + dt.timedelta(seconds=1), engine=engine) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(snapshots_table)).scalar_one() == 0


def test_handlers_read_the_program_from_the_store(ledger_env: str, fixed_today: dt.date) -> None:
    schedule_store().save_program(three_person_program())
    result, _ = run_handler(TYPES["metrics_computation"],
                            {"start_date": D0.isoformat(),
                             "end_date": (D0 + dt.timedelta(days=27)).isoformat()})
    metrics = result["schedule_analysis"]["metrics"]
    assert metrics["coverage"]["value"] == pytest.approx(100 * 19 / 52, abs=1e-4)
    ctx, _sink = make_context("metrics_snapshot")
    assert ctx.owner == "tester"
