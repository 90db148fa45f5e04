"""The role matrix: a task type that changes shared state declares it and names a role.

The oracle does not read the declarations: it runs every built-in task type in-process over a
loaded program and compares every row of every schedule/metrics table before and after.  A
type that changed anything must declare ``mutates=True`` and a ``required_role``; a plain user
may start none of those.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import MetaData, select, update

from taskbroker import NoParams, TaskType
from taskbroker.core.pipeline.errors import PermissionDenied
from taskbroker.core.pipeline.principal import Principal
from taskbroker.testing.in_process import InProcessTaskbroker, in_process_taskbroker

#: parameters that give each type the most chance to change something
PARAMS: dict[str, dict[str, Any]] = {
    "resilience_crisis_activation": {"severity": "moderate", "reason": "role matrix test"},
    "resilience_crisis_deactivation": {"reason": "role matrix test"},
    "metrics_cleanup": {"retention_days": 1},
    "resilience_contingency": {"days_ahead": 7},
    "resilience_fallback_precompute": {"days_ahead": 7},
    "resilience_utilization_forecast": {"days_ahead": 7},
}
#: activation before deactivation, so deactivation has a crisis to end
ORDER = ["resilience_crisis_activation", "resilience_crisis_deactivation"]


def _dump(tb: InProcessTaskbroker) -> dict[str, list[tuple[Any, ...]]]:
    from taskbroker.plugins.data import schedule_engine

    engine = schedule_engine()
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {name: sorted(map(tuple, conn.execute(select(table))), key=repr)
                for name, table in meta.tables.items()
                if not name.startswith("taskbroker_schema_")}


@pytest.fixture
def loaded() -> InProcessTaskbroker:
    from taskbroker.plugins.data import schedule_engine, schedule_store
    from taskbroker.plugins.metrics.snapshots import snapshots_table
    from taskbroker.schedule.generator import generate_program

    tb = in_process_taskbroker(builtin_plugins=True)
    schedule_store().save_program(generate_program(seed=3, faculty=8, residents=10, days=21))
    # shared state to delete: an old snapshot, so a cleanup has something to remove
    assert tb.run_task("metrics_snapshot", {"period_days": 7}).status == "success"
    with schedule_engine().begin() as conn:
        conn.execute(update(snapshots_table).values(
            created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=400)))
    return tb


def test_every_type_that_changes_shared_state_declares_it_and_a_role(
    loaded: InProcessTaskbroker,
) -> None:
    registry = loaded.app.plugins.registry
    names = sorted(t.name for t in registry.all())
    names.sort(key=lambda n: ORDER.index(n) if n in ORDER else -1)
    changed: list[str] = []
    for name in names:
        if name == "metrics_version_diff":
            from taskbroker.plugins.data import schedule_store

            ids = [r.id for r in schedule_store().load_program().runs]
            params: dict[str, Any] = {"run_id_1": ids[0], "run_id_2": ids[-1]}
        else:
            params = PARAMS.get(name, {})
        before = _dump(loaded)
        status = loaded.run_task(name, params)
        assert status.status == "success", (name, status.error)
        if _dump(loaded) != before:
            changed.append(name)
            task_type = registry.get(name)
            assert task_type.mutates and task_type.required_role, (
                f"{name} changed shared tables but declares mutates={task_type.mutates}, "
                f"required_role={task_type.required_role!r}")
    # the oracle itself must have seen the known writers (else it checks nothing)
    assert {"metrics_snapshot", "metrics_cleanup", "resilience_crisis_activation",
            "resilience_crisis_deactivation", "resilience_fallback_precompute"} <= set(changed)


def test_a_plain_user_may_start_no_type_that_mutates(loaded: InProcessTaskbroker) -> None:
    plain = Principal("mallory", frozenset())
    service = loaded.app.service
    mutating = [t for t in loaded.app.plugins.registry.all() if t.mutates]
    assert mutating
    for task_type in mutating:
        with pytest.raises(PermissionDenied, match=task_type.name):
            service.start(plain, task_type.name, PARAMS.get(task_type.name, {}))
    # a planner may refresh snapshots and fallbacks but not delete or activate
    planner = Principal("pat", frozenset({"planner"}))
    assert service.start(planner, "metrics_snapshot", {}).task_id
    for name in ("metrics_cleanup", "resilience_crisis_activation"):
        with pytest.raises(PermissionDenied, match="'admin' role"):
            service.start(planner, name, PARAMS[name])


def test_a_type_that_mutates_without_a_role_is_refused_at_declaration() -> None:
    with pytest.raises(ValueError, match="mutates=True needs a required_role"):
        TaskType(name="wipe", description="x", run=lambda p, c: {}, params=NoParams,
                 mutates=True)


def test_the_security_doc_lists_the_matrix() -> None:
    from pathlib import Path

    tb = in_process_taskbroker(builtin_plugins=True)
    doc = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    for t in tb.app.plugins.registry.all():
        row = f"| `{t.name}` | {t.required_role or 'any'} | {'yes' if t.mutates else 'no'} |"
        assert row in doc, row


def test_schedule_runs_lists_the_run_ids_version_diff_takes(loaded: InProcessTaskbroker) -> None:
    from taskbroker.plugins.data import schedule_store

    program = schedule_store().load_program()
    status = loaded.run_task("schedule_runs", {"limit": 2})
    assert status.status == "success", status.error
    result = status.result
    newest = sorted(program.runs, key=lambda r: r.created_at, reverse=True)
    assert result["total"] == len(program.runs) and len(result["runs"]) == 2
    assert [r["id"] for r in result["runs"]] == [r.id for r in newest[:2]]
    current = program.current_run()
    assert [r["id"] for r in result["runs"] if r["current"]] == [current.id]
    first = min(a.date for a in current.assignments).isoformat()
    assert next(r for r in result["runs"] if r["current"])["first_date"] == first
    # the ids it lists are what metrics_version_diff compares
    ok = [r["id"] for r in result["runs"] if r["status"] == "success"]
    diff = loaded.run_task("metrics_version_diff", {"run_id_1": ok[-1], "run_id_2": ok[0]})
    assert diff.status == "success", diff.error
