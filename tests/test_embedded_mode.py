"""Embedded mode end to end: `taskbroker serve` with no Redis/PostgreSQL, a supervised worker,
tasks surviving a worker crash and a full restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx

from tests.conftest import LOG_DIR
from tests.support.mcp_client import http_client, run_with
from tests.support.procs import (
    Proc,
    base_env,
    free_port,
    start_process,
    taskbroker_argv,
    wait_for,
)


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def start_server(env: dict[str, str], port: int) -> Proc:
    proc = start_process(taskbroker_argv("serve", "--port", str(port)), env=env,
                         name="embedded", log_dir=LOG_DIR)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
                 timeout=60, what="embedded server up")
        wait_for(lambda: "ready" in proc.log(), timeout=60, what="supervised worker ready")
    except BaseException:
        proc.stop()
        raise
    return proc


def mcp_start_and_wait(url: str, token: str, params: dict) -> dict:
    async def body(c):
        import anyio

        r = await c.call_tool("start_background_task_tool",
                              {"task_type": "test_count", "params": params})
        assert not r.is_error
        task_id = r.structured_content["task_id"]
        with anyio.fail_after(90):
            while True:
                s = await c.call_tool("get_task_status_tool", {"task_id": task_id})
                if s.structured_content["status"] in ("success", "failure", "revoked"):
                    return s.structured_content
                await anyio.sleep(0.05)

    return run_with(http_client(url, token), body)


def test_embedded_serve_survives_worker_crash_and_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = base_env(TASKBROKER_DATA_DIR=str(data_dir))
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"

    server = start_server(env, port)
    try:
        token = (data_dir / "admin.token").read_text().strip()
        assert token and token not in server.log().replace(f"local admin token: {token}", "")
        first = mcp_start_and_wait(url, token, {"n": 3, "step_ms": 0})
        assert first["status"] == "success" and first["result"]["sum"] == 6

        workers = [p for p in children_of(server.pid)
                   if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: server.log().count("ready") >= 2, timeout=90,
                 what="supervisor restarted the worker")
        second = mcp_start_and_wait(url, token, {"n": 4, "step_ms": 0})
        assert second["status"] == "success" and second["result"]["sum"] == 10
    finally:
        server.stop()

    # while nothing runs, the CLI queues a task into the same data dir
    out = subprocess.run(taskbroker_argv("tasks", "start", "test_count", "-p", "n=5",
                                         "-p", "step_ms=0"),
                         env=env, capture_output=True, text=True, check=True, timeout=120)
    queued = json.loads(out.stdout)
    assert queued["status"] == "pending"

    server = start_server(env, port)
    try:
        def finished() -> dict | None:
            res = subprocess.run(taskbroker_argv("tasks", "status", queued["task_id"]), env=env,
                                 capture_output=True, text=True, timeout=120)
            status = json.loads(res.stdout)
            return status if status["status"] == "success" else None

        done = wait_for(finished, timeout=90, interval=0.5, what="queued task ran after restart")
        assert done["result"] == {"sum": 15, "steps": 5}
    finally:
        server.stop()
