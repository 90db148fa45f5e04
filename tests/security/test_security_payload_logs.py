"""No personal data in logs: a real embedded `taskbroker serve` with its supervised Celery
worker, logging at DEBUG, runs a task whose params and result name a person; neither the server
nor the worker logs the name (sizes and keys only) unless TASKBROKER_LOG_PAYLOADS is on.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import anyio
import httpx

from taskbroker.mcp.tokens import add_token
from tests.conftest import LOG_DIR
from tests.support.mcp_client import http_client, tool_text
from tests.support.procs import base_env, free_port, start_process, taskbroker_argv, wait_for


def _run_roster(tmp: Path, name: str, **env: str) -> tuple[str, dict]:
    """Serve, run test_roster for ``name`` to success, stop; the process log and the result."""
    token_file = tmp / "tokens.json"
    token = add_token(token_file, "alice", [])
    port = free_port()
    proc = start_process(
        taskbroker_argv("serve", "--port", str(port)),
        env=base_env(TASKBROKER_DATA_DIR=str(tmp / "data"), TASKBROKER_TOKEN_FILE=str(token_file),
                     TASKBROKER_LOG_LEVEL="DEBUG", **env),
        name="payload-logs", log_dir=LOG_DIR)
    try:
        wait_for(lambda: not proc.alive() or httpx.get(
            f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
            timeout=60, what="server /healthz")
        assert proc.alive(), proc.log()[-3000:]

        async def body() -> dict:
            async with http_client(f"http://127.0.0.1:{port}/mcp", token) as client:
                r = await client.call_tool("test_roster", {"name": name})
                assert not r.is_error, tool_text(r)
                return r.structured_content

        result = anyio.run(body)
        wait_for(lambda: "task ended" in proc.log(), timeout=30, what="the worker's task log")
    finally:
        proc.stop()
    return proc.log(), result


def _task_lines(log: str) -> list[dict]:
    out = []
    for line in log.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") in ("task started", "task ended"):
            out.append(event)
    return out


def test_results_and_params_are_not_logged_by_default(tmp_path: Path) -> None:
    name = f"Zelda-Staffname-{uuid.uuid4().hex[:8]}"
    log, result = _run_roster(tmp_path, name)
    assert result == {"roster": [name, name], "count": 2}
    assert name not in log  # not by taskbroker, not by Celery ("succeeded in ...")
    lines = _task_lines(log)
    started = next(e for e in lines if e["event"] == "task started")
    ended = next(e for e in lines if e["event"] == "task ended")
    assert started["params_keys"] == ["name"]
    assert started["params_bytes"] == len(json.dumps({"name": name}))
    assert ended["result_keys"] == ["count", "roster"] and ended["outcome"] == "success"
    assert ended["result_bytes"] == len(json.dumps(result))
    assert "params" not in started and "result" not in ended


def test_payload_logging_is_an_explicit_setting(tmp_path: Path) -> None:
    name = f"Debug-Staffname-{uuid.uuid4().hex[:8]}"
    log, _ = _run_roster(tmp_path, name, TASKBROKER_LOG_PAYLOADS="true")
    lines = _task_lines(log)
    assert next(e for e in lines if e["event"] == "task started")["params"] == {"name": name}
    assert next(e for e in lines if e["event"] == "task ended")["result"]["roster"] == [name] * 2
