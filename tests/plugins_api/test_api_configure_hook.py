"""``taskbroker_configure``: plugins get the settings once, before they register task types."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from taskbroker import TaskType, hookimpl
from taskbroker.app import load_app_plugins
from taskbroker.core.contract.plugins import call_configure, load_plugins
from taskbroker.core.settings import Settings

CONFIGURED = """
    from taskbroker import TaskType, hookimpl

    SEEN = []

    @hookimpl
    def taskbroker_configure(settings):
        SEEN.append(settings)

    @hookimpl
    def taskbroker_register_task_types(register):
        # registration happens after configure: the queue comes from the settings
        queue = SEEN[-1].default_queue
        register(TaskType(name="tbx_configured", description="Configured.",
                          run=lambda p, c: {}, queue=queue))
"""


def test_the_app_calls_configure_with_its_settings_before_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tbx_configured_plugin.py").write_text(textwrap.dedent(CONFIGURED))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tbx_configured_plugin", raising=False)
    settings = Settings(plugin_modules="tbx_configured_plugin", builtin_plugins=False,
                        load_plugins="", default_queue="q_from_settings")
    plugins = load_app_plugins(settings)
    module = plugins.manager.get_plugin("tbx_configured_plugin")
    seen = module.SEEN
    assert seen == [settings]
    assert plugins.registry.get("tbx_configured").queue == "q_from_settings"
    assert "taskbroker_configure" in plugins.info["tbx_configured_plugin"].hooks


class _RaisesInConfigure:
    @hookimpl
    def taskbroker_configure(self, settings: object) -> None:
        raise RuntimeError("cannot read my settings")


class _Fine:
    @hookimpl
    def taskbroker_register_task_types(self, register) -> None:  # type: ignore[no-untyped-def]
        register(TaskType(name="tbx_fine", description="Fine.", run=lambda p, c: {}))


def test_a_plugin_failing_in_configure_is_reported_and_the_others_load() -> None:
    settings = Settings(builtin_plugins=False)
    plugins = load_plugins(
        objects=[("tbx_raises", _RaisesInConfigure()), ("tbx_fine", _Fine())],
        entry_points=False,
        configure=lambda pm, info: call_configure(pm, info, settings),
    )
    assert "tbx_fine" in plugins.registry
    assert any("cannot read my settings" in e for e in plugins.info["tbx_raises"].errors)
