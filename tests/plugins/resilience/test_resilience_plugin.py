"""The resilience plugin: registration through the public hook and its parameter models."""

from __future__ import annotations

import pluggy
import pytest
from pydantic import ValidationError

import taskbroker.plugins.resilience as resilience
from taskbroker.core.contract import hookspecs

NAMES = {
    "resilience_health_check", "resilience_contingency", "resilience_fallback_precompute",
    "resilience_utilization_forecast", "resilience_crisis_activation",
    "resilience_crisis_deactivation",
}


def registered() -> dict:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(resilience, name="resilience")
    found = {}
    pm.hook.taskbroker_register_task_types(register=lambda t: found.setdefault(t.name, t))
    return found


def test_registers_six_types_through_the_hook() -> None:
    types = registered()
    assert set(types) == NAMES
    assert types["resilience_contingency"].estimated_duration == "2-5 minutes"
    assert types["resilience_fallback_precompute"].estimated_duration == "5-10 minutes"
    assert types["resilience_health_check"].estimated_duration == "1-2 minutes"
    assert types["resilience_utilization_forecast"].estimated_duration == "1-3 minutes"
    assert types["resilience_crisis_activation"].estimated_duration == "30 seconds"


def test_crisis_types_are_admin_only_and_not_idempotent() -> None:
    types = registered()
    act, deact = types["resilience_crisis_activation"], types["resilience_crisis_deactivation"]
    assert act.required_role == deact.required_role == "admin"
    assert act.caller_param == "approved_by"
    assert not act.idempotent and not deact.idempotent
    assert types["resilience_fallback_precompute"].required_role == "planner"
    assert all(types[n].required_role is None
               for n in NAMES - {act.name, deact.name, "resilience_fallback_precompute"})


@pytest.mark.parametrize("name", ["resilience_contingency", "resilience_fallback_precompute",
                                  "resilience_utilization_forecast"])
def test_days_ahead_bounds(name: str) -> None:
    model = registered()[name].params
    assert model.model_validate({}).days_ahead == 90
    assert model.model_validate({"days_ahead": 730}).days_ahead == 730
    for bad in ({"days_ahead": 0}, {"days_ahead": 731}, {"days_ahead": "x"}, {"extra": 1}):
        with pytest.raises(ValidationError):
            model.model_validate(bad)
    schema = registered()[name].params_schema()
    assert schema["properties"]["days_ahead"]["maximum"] == 730


def test_crisis_params() -> None:
    model = registered()["resilience_crisis_activation"].params
    ok = model.model_validate({"severity": "severe", "reason": "storm"})
    assert ok.severity == "severe" and ok.approved_by is None
    for bad in ({"severity": "apocalyptic", "reason": "x"}, {"severity": "minor"},
                {"severity": "minor", "reason": ""}, {"severity": "minor", "reason": "x",
                                                       "other": 1}):
        with pytest.raises(ValidationError):
            model.model_validate(bad)
    with pytest.raises(ValidationError):
        registered()["resilience_health_check"].params.model_validate({"days_ahead": 3})
