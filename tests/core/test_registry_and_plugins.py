"""Registry validation and plugin loading (no services needed)."""

from __future__ import annotations

import sys
import types

import pytest
from pydantic import BaseModel, ConfigDict, Field

from taskbroker import TaskType, hookimpl
from taskbroker.core.contract.plugins import load_plugins
from taskbroker.core.contract.registry import Registry
from taskbroker.core.pipeline.errors import InvalidRequest


class P(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days_ahead: int = Field(default=90, ge=1, le=730)
    mode: str = "fast"


def noop(params: BaseModel, ctx: object) -> dict:
    return {}


def make(name: str, **kw: object) -> TaskType:
    return TaskType(name=name, description=name, run=noop, params=P, **kw)  # type: ignore[arg-type]


def test_unknown_type_lists_valid_types() -> None:
    reg = Registry([make("b_task"), make("a_task")])
    with pytest.raises(InvalidRequest, match=r"unknown task type 'c_task'; valid task types: "
                                             r"a_task, b_task$"):
        reg.validate("c_task", {})
    with pytest.raises(InvalidRequest, match="task_type: required"):
        reg.validate(None, {})  # type: ignore[arg-type]


def test_bad_params_name_the_field_and_the_accepted_values() -> None:
    reg = Registry([make("t")])
    with pytest.raises(InvalidRequest) as err:
        reg.validate("t", {"days_ahead": 0, "colour": 1})
    msg = str(err.value)
    assert "params.days_ahead: Input should be greater than or equal to 1" in msg
    assert "params.colour: unknown parameter" in msg
    assert "days_ahead (integer >=1 <=730, default 90)" in msg
    assert "mode (string, default \"fast\")" in msg
    with pytest.raises(InvalidRequest, match="params: must be an object"):
        reg.validate("t", ["not", "a", "dict"])  # type: ignore[arg-type]
    _, model = reg.validate("t", {"days_ahead": 30})
    assert model.days_ahead == 30  # type: ignore[attr-defined]
    # strict JSON types: no string or boolean for an integer
    for loose in ("30", True, 30.5):
        with pytest.raises(InvalidRequest, match=r"params.days_ahead: Input should be a valid "
                                                 "integer"):
            reg.validate("t", {"days_ahead": loose})


def test_secret_params_are_not_echoed_in_errors() -> None:
    class S(BaseModel):
        model_config = ConfigDict(extra="forbid")
        api_key: str
        n: int = 1

    reg = Registry([TaskType(name="s", description="s", run=noop, params=S,
                             secret_params=frozenset({"api_key"}))])
    with pytest.raises(InvalidRequest) as err:
        reg.validate("s", {"api_key": "sk-SECRET-123", "n": "x"})
    assert "sk-SECRET-123" not in str(err.value) and "api_key (" not in str(err.value)


def test_bad_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="must match"):
        Registry([make("Bad-Name")])


def plugin_module(name: str, *types_: TaskType, fail: bool = False) -> types.ModuleType:
    mod = types.ModuleType(name)

    @hookimpl
    def taskbroker_register_task_types(register):
        if fail:
            raise RuntimeError("plugin exploded")
        for t in types_:
            register(t)

    mod.taskbroker_register_task_types = taskbroker_register_task_types  # type: ignore[attr-defined]
    return mod


def test_duplicate_names_rejected_naming_both_plugins() -> None:
    plugins = load_plugins(entry_points=False, objects=[
        ("first", plugin_module("first", make("shared"), make("only_first"))),
        ("second", plugin_module("second", make("shared"), make("only_second"))),
    ])
    assert plugins.registry.names() == ["only_first", "only_second", "shared"]
    assert plugins.registry.get("shared").plugin == "first"
    errors = " | ".join(plugins.errors)
    assert "second: task type 'shared' registered twice: by plugin 'first' and by plugin " \
           "'second'" in errors


def test_broken_plugins_do_not_stop_the_others(tmp_path, monkeypatch) -> None:
    (tmp_path / "tb_broken_import.py").write_text("raise ImportError('missing dependency x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins = load_plugins(
        entry_points=False,
        modules=["tb_broken_import"],
        objects=[("exploding", plugin_module("exploding", fail=True)),
                 ("fine", plugin_module("fine", make("fine_task")))],
    )
    assert plugins.registry.names() == ["fine_task"]
    assert any(e.startswith("tb_broken_import: import failed") and "missing dependency x" in e
               for e in plugins.errors)
    assert any(e.startswith("exploding: register_task_types failed") for e in plugins.errors)
    sys.modules.pop("tb_broken_import", None)


def test_allow_list_filters_entry_points(monkeypatch) -> None:
    import importlib.metadata as md

    class FakeDist:
        name, version = "taskbroker-fake", "1.2.3"

    class FakeEP:
        name, dist = "fake", FakeDist()

        def load(self) -> types.ModuleType:
            return plugin_module("fake", make("fake_task"))

    monkeypatch.setattr(md, "entry_points", lambda group: [FakeEP()])
    assert load_plugins(allow=None).registry.names() == ["fake_task"]
    assert load_plugins(allow="taskbroker-fake").registry.names() == ["fake_task"]
    assert load_plugins(allow="").registry.names() == []
    assert load_plugins(allow="other").registry.names() == []
    info = load_plugins().info["fake"]
    assert info.version == "1.2.3" and info.source == "entrypoint"
    assert info.hooks == ["taskbroker_register_task_types"]
