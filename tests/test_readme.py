"""The README stays true: setup commands, every setting, the tools."""

from __future__ import annotations

from pathlib import Path

from taskbroker.core.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_gives_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [f"TASKBROKER_{n.upper()}" for n in Settings.model_fields
               if f"`TASKBROKER_{n.upper()}`" not in README]
    assert not missing, f"README configuration table lacks {missing}"


def test_every_tool_is_documented() -> None:
    for tool in ("start_background_task_tool", "get_task_status_tool", "cancel_task_tool",
                 "list_active_tasks_tool", "list_task_types_tool"):
        assert tool in README
