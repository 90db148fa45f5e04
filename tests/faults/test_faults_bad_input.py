"""Bad input everywhere: generated params for every task type and arbitrary JSON for every
tool. No crash, every rejection names the field, nothing accepted is lost."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from taskbroker.app import App, load_app_plugins
from taskbroker.core.pipeline.errors import InvalidRequest
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.settings import Settings
from taskbroker.mcp.server import create_server
from tests.support.mcp_client import tool_text
from tests.support.procs import Proc

FUZZER = Principal("fuzzer", frozenset())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def all_types_registry(dist_settings: Settings):
    """Built-in plugins and the test plugin together."""
    settings = dist_settings.model_copy(update={"builtin_plugins": True})
    plugins = load_app_plugins(settings)
    assert not plugins.errors, plugins.errors
    return plugins.registry


def test_generated_params_for_every_task_type(all_types_registry) -> None:
    registry = all_types_registry
    names = registry.names()
    assert {"resilience_contingency", "metrics_computation", "test_count"} <= set(names)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(names))
        props = list(registry.schema(name).get("properties", {}))
        keys = st.sampled_from(props) | st.text(min_size=1, max_size=12) if props else \
            st.text(min_size=1, max_size=12)
        params = data.draw(st.dictionaries(keys, json_values, max_size=5))
        try:
            _, model = registry.validate(name, params)
        except InvalidRequest as exc:
            msg = str(exc)
            assert msg.startswith(f"invalid params for {name}: params"), msg
            # a path step: .name, [index] or a quoted key (Python repr, which may hold "]")
            step = r"""\.\w+|\[(?:\d+|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\]"""
            named = re.findall(rf"params((?:{step})+): ", msg)
            assert named, msg
            assert "Accepted:" in msg
        else:
            model.model_dump(mode="json")  # what is queued must serialise

    check()


TOOLS = ["start_background_task_tool", "get_task_status_tool", "cancel_task_tool",
         "list_active_tasks_tool", "list_task_types_tool", "retry_task_tool",
         "wait_for_task_tool"]


def test_arbitrary_json_for_every_tool(dist_app: App, worker: Proc) -> None:
    server = create_server(dist_app.service, local_principal=FUZZER)
    outcomes: list[str] = []

    async def call(name: str, args: dict[str, Any]) -> None:
        async with Client(server) as c:
            r = await c.call_tool(name, args)
        text = tool_text(r)
        if r.is_error:
            assert "Traceback" not in text and "InternalError" not in text, text
            assert text, "an error without a message"
            outcomes.append("error")
        else:
            outcomes.append("ok")

    arg_keys = st.sampled_from(["task_type", "params", "task_id", "priority",
                                "idempotency_key"]) | st.text(max_size=10)
    task_types = st.sampled_from(["test_echo", "test_fail", "test_count", "nope"]) | json_values

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(TOOLS),
           args=st.dictionaries(arg_keys, json_values, max_size=4),
           task_type=task_types)
    def check(name: str, args: dict[str, Any], task_type: Any) -> None:
        if name == "start_background_task_tool" and "task_type" not in args:
            args = dict(args, task_type=task_type)
        anyio.run(call, name, args)

    try:
        check()
    finally:
        for t in dist_app.service.list_active(FUZZER).tasks:
            dist_app.service.cancel(FUZZER, t.task_id)
    assert "error" in outcomes
    # the server and the worker are still fine
    ok = dist_app.service.start(FUZZER, "test_echo", {})
    from tests.support.procs import wait_for

    final = wait_for(lambda: (s := dist_app.service.status(FUZZER, ok.task_id)).status
                     == "success" and s, timeout=60, what="worker alive after fuzzing")
    assert final.result == {"owner": "fuzzer"}
    assert worker.alive()


def test_oversized_params_rejected_before_enqueue(dist_app: App) -> None:
    big = {"message": "x" * (dist_app.settings.max_params_bytes + 1)}
    before = dist_app.service.list_active(FUZZER).total_active
    with pytest.raises(InvalidRequest, match=r"params: \d+ bytes is over the limit of 65536"):
        dist_app.service.start(FUZZER, "test_fail", big)
    assert dist_app.service.list_active(FUZZER).total_active == before
