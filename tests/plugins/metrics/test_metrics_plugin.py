"""The metrics plugin registers its five task types with the seed's names and parameters."""

from __future__ import annotations

import pytest

from taskbroker import TaskType
from taskbroker.plugins import metrics


def _registered() -> dict[str, TaskType]:
    found: list[TaskType] = []
    metrics.taskbroker_register_task_types(found.append)
    return {t.name: t for t in found}


def test_five_task_types_with_seed_durations() -> None:
    types = _registered()
    assert {name: t.estimated_duration for name, t in types.items()} == {
        "metrics_computation": "2-5 minutes",
        "metrics_snapshot": "1-2 minutes",
        "metrics_cleanup": "1-2 minutes",
        "metrics_fairness_report": "2-4 minutes",
        "metrics_version_diff": "1-3 minutes",
    }
    for t in types.values():
        assert t.description
        assert t.required_role == {"metrics_snapshot": "planner",
                                   "metrics_cleanup": "admin"}.get(t.name)
        assert t.mutates == (t.required_role is not None)


def test_params_schemas_and_defaults() -> None:
    types = _registered()
    props = {name: set(t.params_schema()["properties"]) for name, t in types.items()}
    assert props["metrics_computation"] == {"start_date", "end_date", "detail"}
    assert props["metrics_snapshot"] == {"period_days"}
    assert props["metrics_cleanup"] == {"retention_days"}
    assert props["metrics_fairness_report"] >= {"weeks_back"}
    assert props["metrics_version_diff"] == {"run_id_1", "run_id_2", "detail"}
    assert types["metrics_snapshot"].params().period_days == 90  # type: ignore[attr-defined]
    assert types["metrics_cleanup"].params().retention_days == 365  # type: ignore[attr-defined]
    assert types["metrics_fairness_report"].params().weeks_back == 12  # type: ignore[attr-defined]


@pytest.mark.parametrize("name,params,field", [
    ("metrics_snapshot", {"period_days": 0}, "period_days"),
    ("metrics_snapshot", {"period_days": 731}, "period_days"),
    ("metrics_snapshot", {"period_days": "many"}, "period_days"),
    ("metrics_cleanup", {"retention_days": 0}, "retention_days"),
    ("metrics_cleanup", {"retention_days": 365, "force": True}, "force"),
    ("metrics_fairness_report", {"weeks_back": -1}, "weeks_back"),
    ("metrics_version_diff", {"run_id_1": "", "run_id_2": "x"}, "run_id_1"),
])
def test_bad_params_name_the_field(name: str, params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        _registered()[name].params.model_validate(params)


def test_registry_accepts_them() -> None:
    from taskbroker.core.contract.registry import Registry

    registry = Registry()
    metrics.taskbroker_register_task_types(lambda t: registry.add(t, plugin="metrics"))
    assert [n for n in registry.names() if n.startswith("metrics_")] == sorted(_registered())


def test_loaded_as_a_builtin_plugin() -> None:
    from taskbroker.core.contract.plugins import load_plugins

    plugins = load_plugins(builtins=("taskbroker.plugins.metrics",), entry_points=False)
    assert sorted(plugins.info["metrics"].task_types) == sorted(_registered())
    assert plugins.info["metrics"].errors == []
