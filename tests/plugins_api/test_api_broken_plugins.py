"""A broken plugin is reported with its name and takes nothing else down.

Throwaway plugin modules (and a throwaway installed distribution with entry points) are
written to a temporary directory: one that fails to import, one that registers bad task types,
one that registers a name another plugin already took, one whose hook raises, and a good one.
The good one still loads in-process, on a real worker and in a real MCP server, and
``taskbroker plugins`` shows every error under the plugin's name.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from plugins_api_support import plugins_json, run_cli, tool, with_mcp

from taskbroker.core.contract.plugins import load_plugins
from taskbroker.testing.fixtures import EmbeddedTaskbroker, embedded_taskbroker

GOOD = """
    from taskbroker import NoParams, TaskType, hookimpl

    def run(params, ctx):
        return {"ok": True}

    @hookimpl
    def taskbroker_register_task_types(register):
        register(TaskType(name="tbx_good_task", description="Works.", run=run))
"""
IMPORT_ERROR = """
    import tbx_missing_dependency  # not installed anywhere
"""
BAD_TYPES = """
    from taskbroker import TaskType, hookimpl

    def run(params, ctx):
        return {"ok": True}

    @hookimpl
    def taskbroker_register_task_types(register):
        register(TaskType(name="Bad Name!", description="Invalid name.", run=run))
        register(TaskType(name="tbx_dict_params", description="Params not a model.", run=run,
                          params=dict))
        register(TaskType(name="tbx_bad_types_ok", description="The valid one.", run=run))
"""
DUPLICATE = """
    from taskbroker import TaskType, hookimpl

    @hookimpl
    def taskbroker_register_task_types(register):
        register(TaskType(name="tbx_good_task", description="Taken.", run=lambda p, c: {}))
"""
NOT_A_TASK_TYPE = """
    from taskbroker import TaskType, hookimpl

    @hookimpl
    def taskbroker_register_task_types(register):
        register({"name": "tbx_not_a_task_type"})
        register(TaskType(name="tbx_after_non_type", description="Valid.", run=lambda p, c: {}))
"""
HOOK_RAISES = """
    from taskbroker import hookimpl

    @hookimpl
    def taskbroker_register_task_types(register):
        raise RuntimeError("plugin bug")
"""
MODULES = {"tbx_good": GOOD, "tbx_import_error": IMPORT_ERROR, "tbx_bad_types": BAD_TYPES,
           "tbx_duplicate": DUPLICATE, "tbx_hook_raises": HOOK_RAISES}
#: entry points of the throwaway distribution ``tbx-broken-dist``
ENTRY_POINTS = {"tbx_ep_missing": "tbx_ep_no_such_module", "tbx_ep_good": "tbx_ep_good_module"}
EP_GOOD = GOOD.replace("tbx_good_task", "tbx_ep_task")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The throwaway plugin modules and distribution, importable from this process."""
    root = tmp_path_factory.mktemp("broken-plugins")
    extra = {"tbx_ep_good_module": EP_GOOD, "tbx_not_a_task_type": NOT_A_TASK_TYPE}
    for name, source in {**MODULES, **extra}.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    dist = root / "tbx_broken_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tbx-broken-dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[taskbroker]\n" + "".join(f"{k} = {v}\n" for k, v in ENTRY_POINTS.items()))
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [*MODULES, "tbx_ep_good_module", "tbx_not_a_task_type"]:
            sys.modules.pop(name, None)


def test_each_broken_plugin_is_reported_with_its_name(plugin_dir: Path) -> None:
    plugins = load_plugins(modules=list(MODULES), allow="tbx-broken-dist")
    info = plugins.info

    assert plugins.registry.names() == ["tbx_bad_types_ok", "tbx_ep_task", "tbx_good_task"]
    assert plugins.registry.get("tbx_good_task").plugin == "tbx_good"
    assert info["tbx_good"].errors == [] and info["tbx_ep_good"].errors == []

    [import_error] = info["tbx_import_error"].errors
    assert "import failed" in import_error and "tbx_missing_dependency" in import_error
    [ep_error] = info["tbx_ep_missing"].errors
    assert "import failed" in ep_error and "tbx_ep_no_such_module" in ep_error
    assert info["tbx_ep_missing"].version == "1.0" and info["tbx_ep_missing"].source == "entrypoint"

    bad = info["tbx_bad_types"].errors
    assert len(bad) == 2, bad
    assert "'Bad Name!'" in bad[0] and "must match" in bad[0]
    assert "'tbx_dict_params'" in bad[1] and "pydantic model" in bad[1]
    assert info["tbx_bad_types"].task_types == ["tbx_bad_types_ok"]

    [duplicate] = info["tbx_duplicate"].errors
    assert "'tbx_good_task' registered twice" in duplicate
    assert "'tbx_good'" in duplicate and "'tbx_duplicate'" in duplicate

    [raised] = info["tbx_hook_raises"].errors
    assert "register_task_types failed" in raised and "plugin bug" in raised

    # every error carries the plugin's name
    broken = {"tbx_import_error", "tbx_ep_missing", "tbx_bad_types", "tbx_duplicate",
              "tbx_hook_raises"}
    assert {e.split(":", 1)[0] for e in plugins.errors} == broken


def test_registering_something_else_than_a_task_type(plugin_dir: Path) -> None:
    plugins = load_plugins(modules=["tbx_good", "tbx_not_a_task_type"], entry_points=False)
    info = plugins.info["tbx_not_a_task_type"]
    assert len(info.errors) == 1 and "takes a TaskType, got dict" in info.errors[0], info.errors
    # the bad call is refused alone: the plugin's next registration still counts
    assert info.task_types == ["tbx_after_non_type"]


@pytest.fixture(scope="module")
def broken_broker(plugin_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTaskbroker]:
    """A real embedded worker loading the broken plugins next to the good ones."""
    with embedded_taskbroker(tmp_path_factory.mktemp("broken-broker"),
                             plugin_modules=list(MODULES), load_plugins="tbx-broken-dist",
                             python_path=[plugin_dir]) as harness:
        yield harness


@pytest.mark.slow
def test_the_worker_and_the_server_still_run_the_good_plugins(
    broken_broker: EmbeddedTaskbroker,
) -> None:
    assert broken_broker.worker_alive
    for task_type in ("tbx_good_task", "tbx_ep_task", "tbx_bad_types_ok"):
        status = broken_broker.run(task_type)
        assert status.status == "success" and status.result == {"ok": True}, status

    async def session(client: Client) -> set[str]:
        return {t["name"] for t in await tool(client, "list_task_types_tool")}

    names = with_mcp(broken_broker.env, session)
    assert {"tbx_good_task", "tbx_ep_task", "tbx_bad_types_ok"} <= names
    assert not {"Bad Name!", "tbx_dict_params", "tbx_not_a_task_type"} & names


@pytest.mark.slow
def test_taskbroker_plugins_shows_the_errors(broken_broker: EmbeddedTaskbroker) -> None:
    done = run_cli(broken_broker.env, "plugins")
    assert done.returncode == 0, done.stderr[-3000:]
    blocks: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        if line and not line.startswith(" "):
            current = blocks.setdefault(line.split(" ", 1)[0], [line])
        else:
            current.append(line.strip())
    errors = {name: [x for x in lines if x.startswith("ERROR: ")] for name, lines in
              blocks.items()}
    assert errors["tbx_good"] == [] and errors["tbx_ep_good"] == []
    assert "task types: tbx_good_task" in blocks["tbx_good"]
    assert any("tbx_missing_dependency" in e for e in errors["tbx_import_error"])
    assert any("tbx_ep_no_such_module" in e for e in errors["tbx_ep_missing"])
    assert blocks["tbx_ep_missing"][0] == "tbx_ep_missing 1.0 (entrypoint)"
    assert len(errors["tbx_bad_types"]) == 2
    assert any("registered twice" in e for e in errors["tbx_duplicate"])
    assert any("plugin bug" in e for e in errors["tbx_hook_raises"])

    rows = plugins_json(broken_broker.env)
    assert rows["tbx_duplicate"]["errors"] and rows["tbx_good"]["task_types"] == ["tbx_good_task"]
