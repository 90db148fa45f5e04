"""The example plugin package, installed with pip like any third-party plugin.

``examples/taskbroker-hello`` is pip-installed into this environment; a real worker and a real
stdio MCP server then show its task types in ``list_task_types_tool`` and ``taskbroker
plugins``, run both end to end, cancel the countdown; the package's own tests (which use the
``taskbroker.testing`` fixtures) pass; uninstalling it makes the types disappear.

The tests of this module run in order: the last one uninstalls the package.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from plugins_api_support import ROOT, plugins_json, tool, wait_status, with_mcp

from taskbroker.testing.fixtures import EmbeddedTaskbroker, embedded_taskbroker

EXAMPLE = ROOT / "examples" / "taskbroker-hello"
HELLO_TYPES = {"hello_greet", "hello_countdown"}

pytestmark = pytest.mark.slow


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run this interpreter's pip; fail the test with pip's output when it fails."""
    done = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def hello_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``pip install`` the example (from a copy, so the build leaves nothing in the repo);
    always uninstalled afterwards."""
    copy = tmp_path_factory.mktemp("hello-src") / "taskbroker-hello"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    try:
        pip("install", "--no-deps", "--quiet", str(copy))
        importlib.invalidate_caches()
        yield copy
    finally:
        pip("uninstall", "-y", "--quiet", "taskbroker-hello")
        importlib.invalidate_caches()


@pytest.fixture(scope="module")
def hello_broker(hello_installed: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTaskbroker]:
    """An embedded broker and a real worker that load every installed plugin."""
    with embedded_taskbroker(tmp_path_factory.mktemp("hello-broker")) as harness:
        yield harness


def test_taskbroker_plugins_lists_the_installed_package(hello_broker: EmbeddedTaskbroker) -> None:
    rows = plugins_json(hello_broker.env)
    hello = rows["hello"]
    assert hello["version"] == "0.1.0" and hello["source"] == "entrypoint"
    assert set(hello["task_types"]) == HELLO_TYPES
    assert hello["hooks"] == ["taskbroker_register_task_types"]
    assert hello["errors"] == []


def test_mcp_lists_runs_and_cancels_the_new_types(hello_broker: EmbeddedTaskbroker) -> None:
    async def session(client: Client) -> dict[str, Any]:
        types = {t["name"]: t for t in await tool(client, "list_task_types_tool")}
        greet = await tool(client, "start_background_task_tool", task_type="hello_greet",
                           params={"name": "MCP"})
        greeted = await wait_status(client, greet["task_id"])
        short = await tool(client, "start_background_task_tool", task_type="hello_countdown",
                           params={"start": 3, "step_seconds": 0.2})
        counted = await wait_status(client, short["task_id"])
        long = await tool(client, "start_background_task_tool", task_type="hello_countdown",
                          params={"start": 600, "step_seconds": 0.1})
        running = await wait_status(client, long["task_id"],
                                    until=lambda s: s["status"] == "started" and s["progress"] > 0)
        cancel = await tool(client, "cancel_task_tool", task_id=long["task_id"])
        after = await tool(client, "get_task_status_tool", task_id=long["task_id"])
        return {"types": types, "greeted": greeted, "counted": counted, "running": running,
                "cancel": cancel, "after": after, "long_id": long["task_id"]}

    out = with_mcp(hello_broker.env, session)

    assert set(out["types"]) >= HELLO_TYPES
    countdown = out["types"]["hello_countdown"]
    assert countdown["plugin"] == "hello"
    assert set(countdown["params_schema"]["properties"]) == {"start", "step_seconds"}
    assert countdown["params_schema"]["properties"]["start"]["maximum"] == 600

    assert out["greeted"]["status"] == "success"
    assert out["greeted"]["result"] == {"greeting": "Hello, MCP!"}
    assert out["counted"]["status"] == "success" and out["counted"]["progress"] == 100
    assert out["counted"]["result"] == {"counted_from": 3, "message": "liftoff"}

    assert out["running"]["message"].endswith("to go")
    assert out["cancel"]["changed"] is True and out["cancel"]["status"] == "revoked"
    assert out["after"]["status"] == "revoked"
    stopped = hello_broker.wait_stopped(out["long_id"])  # the handler itself stopped
    assert stopped.status == "revoked" and stopped.result is None


def test_the_example_package_own_tests_pass(hello_installed: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKBROKER_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the repo's examples/
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_uninstalling_makes_the_types_disappear(hello_installed: Path,
                                                hello_broker: EmbeddedTaskbroker) -> None:
    pip("uninstall", "-y", "--quiet", "taskbroker-hello")

    assert "hello" not in plugins_json(hello_broker.env)

    async def session(client: Client) -> tuple[set[str], str]:
        names = {t["name"] for t in await tool(client, "list_task_types_tool")}
        result = await client.call_tool("start_background_task_tool",
                                        {"task_type": "hello_greet"})
        assert result.is_error
        return names, " ".join(getattr(c, "text", "") for c in result.content)

    names, error = with_mcp(hello_broker.env, session)
    assert not names & HELLO_TYPES
    assert "unknown task type 'hello_greet'" in error
