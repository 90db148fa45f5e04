"""``taskbroker_register_schedules``: the built-in plugins' seed schedule, settings overrides,
and clear errors for bad entries and bad overrides."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from celery.schedules import crontab, schedule
from plugins_api_support import run_cli

from taskbroker import NoParams, TaskType, hookimpl
from taskbroker.app import load_app_plugins
from taskbroker.beat import (
    ScheduleError,
    apply_overrides,
    beat_entries,
    collect_entries,
    parse_overrides,
    parse_schedule,
)
from taskbroker.core.contract.plugins import Plugins, load_plugins
from taskbroker.core.settings import Settings

SEED = {
    "resilience_health_check", "resilience_contingency", "resilience_fallback_precompute",
    "resilience_utilization_forecast", "metrics_snapshot", "metrics_cleanup",
    "metrics_fairness_report", "metrics_computation",
}
WEEKDAYS = {1, 2, 3, 4, 5}  # celery: 0 is Sunday


def _builtin(schedules: str = "") -> list[Any]:
    settings = Settings(builtin_plugins=True, plugin_modules="", load_plugins="",
                        schedules=schedules)
    return beat_entries(load_app_plugins(settings), settings)


def test_builtin_plugins_register_the_seed_schedule() -> None:
    entries = {e.name: e for e in _builtin()}
    assert set(entries) == SEED
    for name, entry in entries.items():
        assert entry.task_type == name and entry.params == {}
        assert entry.plugin == name.split("_", 1)[0]  # "resilience" or "metrics"
        assert isinstance(entry.schedule, crontab)


def test_seed_periods() -> None:
    s = {e.name: e.schedule for e in _builtin()}
    health = s["resilience_health_check"]
    assert health.minute == {0, 15, 30, 45} and len(health.hour) == 24
    assert (s["resilience_contingency"].hour, s["resilience_contingency"].minute) == ({2}, {0})
    snapshot = s["metrics_snapshot"]
    assert snapshot.hour == set(range(8, 19)) and snapshot.day_of_week == WEEKDAYS
    assert snapshot.minute == {0}
    for daily in ("resilience_utilization_forecast", "metrics_cleanup", "metrics_computation"):
        assert len(s[daily].hour) == 1 and len(s[daily].day_of_week) == 7, daily
    for weekly in ("resilience_fallback_precompute", "metrics_fairness_report"):
        assert len(s[weekly].hour) == 1 and len(s[weekly].day_of_week) == 1, weekly


def test_settings_override_and_disable_seed_entries() -> None:
    overrides = {"metrics_snapshot": "off", "resilience_health_check": 300,
                 "metrics_cleanup": "30 4 * * *", "metrics_computation": "OFF"}
    entries = {e.name: e for e in _builtin(json.dumps(overrides))}
    assert set(entries) == SEED - {"metrics_snapshot", "metrics_computation"}
    assert entries["resilience_health_check"].schedule == schedule(300)
    cleanup = entries["metrics_cleanup"].schedule
    assert (cleanup.minute, cleanup.hour) == ({30}, {4})
    # untouched entries keep the plugin's schedule
    assert entries["resilience_contingency"].schedule.hour == {2}


@pytest.mark.parametrize("value,message", [
    ("61 * * * *", "invalid crontab '61 * * * *'"),
    ("* * * * 9", "invalid crontab"),
    ("every day", "not a schedule"),
    ("* * *", "not a schedule"),
    (0, "positive number of seconds"),
    (-5, "positive number of seconds"),
    (True, "expected a crontab or a number of seconds"),
    ([1, 2], "expected a crontab or a number of seconds"),
])
def test_a_bad_override_names_the_entry(value: Any, message: str) -> None:
    with pytest.raises(ScheduleError, match="metrics_cleanup") as err:
        _builtin(json.dumps({"metrics_cleanup": value}))
    assert message in str(err.value)


def test_an_override_of_an_unknown_entry_is_an_error() -> None:
    with pytest.raises(ScheduleError) as err:
        _builtin(json.dumps({"metrics_snapshots": "off"}))
    message = str(err.value)
    assert message.startswith("schedule entry 'metrics_snapshots' in TASKBROKER_SCHEDULES")
    assert "metrics_snapshot" in message.split("registered entries: ")[1].split(", ")


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", '"off"'])
def test_malformed_setting_names_the_variable(raw: str) -> None:
    with pytest.raises(ScheduleError, match="TASKBROKER_SCHEDULES"):
        parse_overrides(raw)


def test_schedule_values_plugins_may_use() -> None:
    assert parse_schedule(crontab(minute="5"), entry="x") == crontab(minute="5")
    assert parse_schedule(90, entry="x") == schedule(90)
    assert parse_schedule("2.5", entry="x") == schedule(2.5)
    assert parse_schedule("0 8-18 * * mon-fri", entry="x").day_of_week == WEEKDAYS


class _Scheduling:
    """A throwaway plugin: one task type and entries, some of them broken."""

    @hookimpl
    def taskbroker_register_task_types(self, register) -> None:  # type: ignore[no-untyped-def]
        register(TaskType(name="tbx_tick", description="Tick.", run=lambda p, c: {},
                          params=NoParams))

    @hookimpl
    def taskbroker_register_schedules(self, register) -> None:  # type: ignore[no-untyped-def]
        register("tbx_every_minute", "tbx_tick", 60)
        register("tbx_unknown_type", "tbx_no_such_type", 60)
        register("tbx_bad_schedule", "tbx_tick", "whenever")
        register("tbx_bad_params", "tbx_tick", 60, {"colour": "red"})
        register("tbx_every_minute", "tbx_tick", 30)  # name taken


class _SchedulesRaise:
    @hookimpl
    def taskbroker_register_schedules(self, register) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("schedule bug")


def _scheduling_plugins() -> Plugins:
    return load_plugins(objects=[("tbx_sched", _Scheduling()), ("tbx_raise", _SchedulesRaise())],
                        entry_points=False)


def test_bad_plugin_entries_are_reported_with_the_plugin_name() -> None:
    plugins = _scheduling_plugins()
    entries = collect_entries(plugins)
    assert [(e.name, e.schedule) for e in entries] == [("tbx_every_minute", schedule(60))]
    errors = plugins.info["tbx_sched"].errors
    assert len(errors) == 4, errors
    assert "'tbx_unknown_type': unknown task type 'tbx_no_such_type'" in errors[0]
    assert "'tbx_bad_schedule'" in errors[1] and "not a schedule" in errors[1]
    assert "'tbx_bad_params'" in errors[2] and "params.colour: unknown parameter" in errors[2]
    assert "'tbx_every_minute' registered twice" in errors[3]
    assert any("schedule bug" in e for e in plugins.info["tbx_raise"].errors)


def test_overrides_apply_to_plugin_entries() -> None:
    entries = collect_entries(_scheduling_plugins())
    assert apply_overrides(entries, {"tbx_every_minute": "off"}) == []
    [changed] = apply_overrides(entries, {"tbx_every_minute": "*/5 * * * *"})
    assert changed.schedule.minute == set(range(0, 60, 5))


def test_beat_refuses_to_start_with_a_bad_override(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"TASKBROKER_DATA_DIR": str(tmp_path), "TASKBROKER_BUILTIN_PLUGINS": "true",
           "TASKBROKER_LOAD_PLUGINS": "", "TASKBROKER_PLUGIN_MODULES": "",
           "TASKBROKER_SCHEDULES": json.dumps({"metrics_cleanup": "99 * * * *"})}
    full = {k: v for k, v in os.environ.items() if not k.startswith("TASKBROKER_")} | env
    done = run_cli(full, "beat", timeout=60)
    assert done.returncode != 0
    assert "taskbroker beat: schedule entry 'metrics_cleanup': invalid crontab" in done.stderr
