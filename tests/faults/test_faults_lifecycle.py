"""Process lifecycle: `taskbroker serve` never leaves its supervised worker behind, whether it
is stopped with SIGTERM, killed with SIGKILL, or is a stdio server whose client went away.

Each test tags the processes it starts with a unique environment variable (inherited by the
worker `serve` supervises) and counts, from /proc, the tagged processes still alive."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import httpx
from mcp import Client, StdioServerParameters

from tests.conftest import LOG_DIR
from tests.support.procs import (
    ROOT,
    base_env,
    free_port,
    start_process,
    taskbroker_argv,
    wait_for,
)

TAG = "TB_LIFECYCLE_TAG"


def tagged(tag: str) -> list[int]:
    """Pids of live (not zombie) processes whose environment carries ``TAG=tag``."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            found.append(int(entry.name))
    return found


def _env(tmp_path: Path, tag: str) -> dict[str, str]:
    return base_env(TASKBROKER_DATA_DIR=str(tmp_path / "data"), **{TAG: tag},
                    TASKBROKER_SHUTDOWN_GRACE_SECONDS="5")


def _serve_http(tmp_path: Path, tag: str):  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_process(taskbroker_argv("serve", "--port", str(port)), env=_env(tmp_path, tag),
                         name="lifecycle", log_dir=LOG_DIR)
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200,
             timeout=60, what="server up")
    wait_for(lambda: "ready" in proc.log(), timeout=60, what="supervised worker ready")
    assert len(tagged(tag)) >= 3, "serve, the worker and its pool child run"
    return proc


def _kill_tagged(tag: str) -> None:
    for pid in tagged(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_to_serve_stops_its_worker_and_exits_0(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    proc = _serve_http(tmp_path, tag)
    try:
        os.kill(proc.pid, signal.SIGTERM)  # what kill, systemd and `docker stop` send
        code = proc.popen.wait(60)
        assert code == 0, f"serve exited {code}:\n{proc.log()[-2000:]}"
        wait_for(lambda: not tagged(tag), timeout=30, what="no process left after SIGTERM")
    finally:
        proc.stop()
        _kill_tagged(tag)


def test_sigkill_of_serve_leaves_no_worker(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    proc = _serve_http(tmp_path, tag)
    try:
        proc.kill()  # SIGKILL serve only: its worker must notice and go by itself
        wait_for(lambda: not tagged(tag), timeout=60, what="the orphaned worker to exit")
    finally:
        proc.stop()
        _kill_tagged(tag)


#: polite + abrupt session pairs (TB_STDIO_SESSION_PAIRS=30 gives the README's 60 sessions)
SESSIONS = int(os.environ.get("TB_STDIO_SESSION_PAIRS", "6"))


def test_closed_stdio_sessions_leave_no_process(tmp_path: Path) -> None:
    """What an MCP desktop client does: launch `serve --transport stdio` (embedded, with its
    supervised worker), talk, quit: either politely (the SDK closes stdin, waits 2 s, then
    SIGTERMs the server's process group) or at once (SIGTERM to the group, as a client that
    is itself shutting down does)."""
    tag = uuid.uuid4().hex
    env = _env(tmp_path, tag)
    argv = [sys.executable, "-m", "taskbroker", "serve", "--transport", "stdio"]

    async def polite_session() -> None:
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env)
        async with Client(params) as client:
            types = await client.call_tool("list_task_types_tool", {})
            assert not types.is_error

    def abrupt_session() -> None:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps({
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "abrupt", "version": "0"}}}).encode() + b"\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())
            assert answer["id"] == 1 and "result" in answer, answer
            wait_for(lambda: len(tagged(tag)) >= 2, timeout=60, what="the worker started")
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    try:
        for _ in range(SESSIONS):
            anyio.run(polite_session)
            abrupt_session()
        wait_for(lambda: not tagged(tag), timeout=60,
                 what=f"no process left after {2 * SESSIONS} stdio sessions")
    finally:
        _kill_tagged(tag)


LEAKY_TEST = """
import subprocess


def test_leaks_a_process():
    subprocess.Popen(["sleep", "300"])
"""


def test_the_suite_fails_when_a_process_it_started_outlives_it(tmp_path: Path) -> None:
    """tests/conftest.py's session guard, run on a test that leaks a process."""
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    env = {k: v for k, v in os.environ.items() if k != "TB_TEST_SESSION"}  # its own session
    env["PYTHONPATH"] = str(ROOT)
    env["TB_TEST_LEAK_GRACE"] = "1"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "tests.conftest", str(tmp_path / "test_leaky.py")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert "outlived them" in done.stdout and "sleep 300" in done.stdout
