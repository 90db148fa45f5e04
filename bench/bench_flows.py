"""The MCP rows beyond plain start/status over HTTP: the tasks-extension flow (``tasks/get``)
and stdio, each against FastMCP 4 + Docket measured in the same run (and stdio against the
chain-less peer too).

- ``tasks/get``: 16 SDK sessions that declared the tasks extension start parked tasks through
  a task tool (ours: the typed ``test_parked`` tool; the peer: FastMCP's ``task=True`` tool
  over Docket, ``bench_docket_peer.py --tasks``) and poll ``tasks/get`` on them.  Server CPU
  per poll is net of the same server's idle CPU over the same time (FastMCP runs its Docket
  worker in the server process, which polls Redis while idle).
- one client following a task the way the extension advises (a ``tasks/get`` every
  ``pollIntervalMs``, which backs off as the task ages): server CPU per lone poll net of idle
  (measured paced at 10 polls/s beside idle windows, see ``_follow``) times the polls a
  client that really follows the advice makes over a minute's wait (``_advised_polls``).
- stdio: one SDK client per server process (stdio serves one client by nature), start and
  status one after another; the server is the client's child process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from bench_common import (
    DOCKET_PYTHON,
    DOCKET_TARGET,
    PARKED_PARAMS,
    WAIT_CPU_TARGET_MS,
    BenchEnv,
    Figure,
    cpu_seconds,
    docket_env,
    ms,
    paired_ratio,
)

from tests.support.procs import free_port
from tests.support.tasks_client import TasksClient, get_task, listen_request

__all__ = ["run"]

BENCH = Path(__file__).resolve().parent


@contextlib.asynccontextmanager
async def _http_session(url: str, *, tasks: bool) -> AsyncIterator[Any]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(timeout=60)
    extensions = [TasksClient()] if tasks else []
    async with Client(streamable_http_client(url, http_client=http),
                      extensions=extensions) as client:
        yield client


async def _parked_handle(client: Any) -> Any:
    """The task handle of a new parked task (a task that never moves), started through the
    tasks extension by ``client``."""
    handle = await client.session.call_tool("test_parked", dict(PARKED_PARAMS),
                                            allow_claimed=True)
    if getattr(handle, "result_type", None) != "task":
        raise RuntimeError(f"no task handle: {handle!r}"[:500])
    return handle


def _idle_rate(pid: int, seconds: float) -> float:
    """CPU seconds per second ``pid`` burns while nobody calls it."""
    cpu0 = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - cpu0) / seconds


async def _tasks_get_batch(url: str, pid: int, clients: int, per_client: int,
                           idle: float) -> tuple[float, float, int]:
    """(server CPU ms per tasks/get net of idle, calls/s, advised pollIntervalMs)."""
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(_http_session(url, tasks=True))
                    for _ in range(clients)]
        handles: list[list[str]] = []
        advised = 0
        for s in sessions:
            mine = []
            for _ in range(4):
                handle = await _parked_handle(s)
                mine.append(handle.task_id)
                advised = handle.poll_interval_ms or 0
            handles.append(mine)
            await get_task(s.session, mine[0])  # untimed: first-call setup

        async def poll(session: Any, ids: list[str]) -> None:
            cycle = itertools.cycle(ids)
            for _ in range(per_client):
                task = await get_task(session.session, next(cycle))
                if task.get("status") not in ("working", "completed"):
                    raise RuntimeError(f"tasks/get: {task!r}"[:500])

        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for s, ids in zip(sessions, handles, strict=True):
                tg.start_soon(poll, s, ids)
        wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    n = clients * per_client
    return ms(cpu - idle * wall) / n, n / wall, advised


async def _follow(url: str, pid: int, windows: int, seconds: float
                  ) -> tuple[float, float, int, int, float]:
    """One client polling tasks/get on its own: (server CPU ms per poll net of idle, the
    spread of the windows, polls, the advised pollIntervalMs, idle CPU s per s).

    A client following the advice polls once per ``pollIntervalMs`` (2 s), so over a
    window of seconds the server's idle CPU (timers, the reaper's heartbeat) dwarfs the
    polls and its noise decides the figure.  So the client polls paced at 10 per second,
    each poll still a lone request on a quiet server, in ``windows`` windows each beside an
    idle window of the same length; the median of the per-poll costs, times the advised
    polls per second, is what following costs."""
    pace = 0.1
    async with _http_session(url, tasks=True) as client:
        handle = await _parked_handle(client)
        task = await get_task(client.session, handle.task_id)
        advised = int(task.get("pollIntervalMs") or handle.poll_interval_ms or 1000)
        per_poll: list[float] = []
        polls, idle_total = 0, 0.0
        for _ in range(windows):
            cpu0 = cpu_seconds(pid)
            await anyio.sleep(seconds)
            idle = cpu_seconds(pid) - cpu0
            idle_total += idle
            n, cpu0, t0 = 0, cpu_seconds(pid), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                task = await get_task(client.session, handle.task_id)
                if task.get("status") != "working":
                    raise RuntimeError(f"tasks/get: {task!r}"[:500])
                n += 1
                await anyio.sleep(pace)
            wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
            per_poll.append(ms(cpu - idle * wall / seconds) / n)
            polls += n
    spread = max(per_poll) - min(per_poll)
    return statistics.median(per_poll), spread, polls, advised, idle_total / (windows * seconds)


async def _advised_polls(url: str, seconds: float) -> list[int]:
    """One client following a fresh parked task for ``seconds`` exactly as advised: a
    ``tasks/get``, then a sleep of the ``pollIntervalMs`` it answered, until the time is up.
    Returns the advised intervals, one per poll made."""
    async with _http_session(url, tasks=True) as client:
        handle = await _parked_handle(client)
        advice: list[int] = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            task = await get_task(client.session, handle.task_id)
            if task.get("status") != "working":
                raise RuntimeError(f"tasks/get: {task!r}"[:500])
            advice.append(int(task["pollIntervalMs"]))
            await anyio.sleep(advice[-1] / 1000)
    return advice


async def _push_follow(url: str, pid: int, listeners: int, windows: int, seconds: float
                       ) -> tuple[float, int, float]:
    """``listeners`` clients each following its own parked task by task notifications
    (``subscriptions/listen`` with ``taskIds``; the SDK's client has no taskIds, so the
    streams are read raw): (server CPU ms per second of following per client, net of idle,
    the median of ``windows`` windows each beside an idle window; how many streams delivered
    their task's state at once; ms of CPU to open one stream).  Many clients at once: the
    process's CPU is read in 10-ms ticks, too coarse for one quiet client."""
    import httpx

    async with _http_session(url, tasks=True) as client:
        task_ids = [(await _parked_handle(client)).task_id for _ in range(listeners)]
    per_second: list[float] = []
    delivered, opened = 0, 0.0
    limits = httpx.Limits(max_connections=listeners + 4, max_keepalive_connections=listeners)
    async with httpx.AsyncClient(timeout=None, limits=limits) as http:
        for _ in range(windows):
            cpu0 = cpu_seconds(pid)
            await anyio.sleep(seconds)
            idle = (cpu_seconds(pid) - cpu0) / seconds
            ready, stop = anyio.Semaphore(0), anyio.Event()

            async def listen(task_id: str, ready: anyio.Semaphore = ready,
                             stop: anyio.Event = stop) -> None:
                nonlocal delivered
                headers, body = listen_request({"taskIds": [task_id]},
                                               request_id=f"bench-{task_id}")
                async with http.stream("POST", url, headers=headers, json=body) as resp:
                    async for line in resp.aiter_lines():
                        if line.startswith("data:") and "notifications/tasks" in line:
                            delivered += 1
                            break
                    ready.release()
                    await stop.wait()

            cpu0 = cpu_seconds(pid)
            async with anyio.create_task_group() as group:
                for task_id in task_ids:
                    group.start_soon(listen, task_id)
                with anyio.fail_after(60):
                    for _ in task_ids:
                        await ready.acquire()
                await anyio.sleep(0.5)  # every stream is open: from here they only wait
                opened += cpu_seconds(pid) - cpu0 - idle * 0.5
                cpu0, t0 = cpu_seconds(pid), time.perf_counter()
                await anyio.sleep(seconds)
                wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
                stop.set()
            per_second.append(max(0.0, ms(cpu - idle * wall) / wall / listeners))
    return statistics.median(per_second), delivered, ms(opened) / (windows * listeners)


def _tasks_rows(benv: BenchEnv, ours_url: str, ours_pid: int, tiny: bool) -> list[Figure]:
    from bench_mcp import _served

    per, windows, window_s = (3, 1, 1.0) if tiny else (40, 5, 6.0)
    idle_s = 1.0 if tiny else 5.0
    port = free_port()
    with _served([str(DOCKET_PYTHON), str(BENCH / "bench_docket_peer.py"), "--port",
                  str(port), "--redis", benv.redis.url, "--tasks"], docket_env(benv),
                 "docket-tasks-peer", port) as peer:
        peer_url = f"http://127.0.0.1:{port}/mcp"
        time.sleep(1.0)
        ours_idle, peer_idle = _idle_rate(ours_pid, idle_s), _idle_rate(peer.pid, idle_s)
        ours = anyio.run(_tasks_get_batch, ours_url, ours_pid, 16, per, ours_idle)
        theirs = anyio.run(_tasks_get_batch, peer_url, peer.pid, 16, per, peer_idle)
    poll_ms, spread, polls, advised, follow_idle = anyio.run(_follow, ours_url, ours_pid,
                                                              windows, window_s)
    wait_s = 3.0 if tiny else 60.0
    advice = anyio.run(_advised_polls, ours_url, wait_s)
    follow = poll_ms * len(advice) / wait_s
    early = sum(1 for _ in itertools.takewhile(lambda a: a <= advised, advice))
    listeners = 3 if tiny else 100
    pushed, notes, opened = anyio.run(_push_follow, ours_url, ours_pid, listeners,
                                      1 if tiny else 3, 1.0 if tiny else 10.0)
    # the peer's client following its advice, from its measured cost per poll
    peer_follow = theirs[0] * 1000 / theirs[2] if theirs[2] else float("nan")
    return [
        Figure("MCP server CPU per tasks/get vs FastMCP 4 + Docket (16 clients)", ours[0],
               None, "ms/call", theirs[0], "FastMCP 4.1.4 tasks extension over Docket 0.27",
               target=f"<= {DOCKET_TARGET:g}x", met=ours[0] <= DOCKET_TARGET * theirs[0],
               note=f"net of each server's idle CPU ({ms(ours_idle):.1f} vs "
                    f"{ms(peer_idle):.1f} ms/s: FastMCP runs its Docket worker in the "
                    f"server); {ours[1]:.0f} vs {theirs[1]:.0f} polls/s; advised "
                    f"pollIntervalMs {ours[2]} vs {theirs[2]}"),
        Figure("MCP server CPU per second of a client polling tasks/get as advised",
               follow, None, "ms/s", ms(follow_idle),
               f"idle server CPU per second (over the {windows} idle windows)",
               target=f"<= {WAIT_CPU_TARGET_MS:g} ms/s", met=follow <= WAIT_CPU_TARGET_MS,
               note=f"one client following the advice for {wait_s:g} s: {len(advice)} polls "
                    f"(advised {advice[0]} ms, backing off to {advice[-1]} ms; the first "
                    f"{early} at {advised} ms: {poll_ms * 1000 / advised:.2f} ms/s while the "
                    f"task is young) x {poll_ms:.2f} ms per lone tasks/get net of idle "
                    f"(median of {windows} windows of {window_s:g} s at 10 polls/s, each "
                    f"beside an idle window; spread {spread:.2f} ms; {polls} polls); "
                    f"FastMCP 4 + Docket's client following its {theirs[2]} ms advice: "
                    f"~{peer_follow:.2f} ms/s (its cost per poll above)"),
        Figure("MCP server CPU per second of a client following a task by notifications",
               pushed, None, "ms/s", follow, "polling tasks/get as advised (row above)",
               target=f"<= {WAIT_CPU_TARGET_MS:g} ms/s", met=pushed <= WAIT_CPU_TARGET_MS,
               note=f"{listeners} clients, each with a subscriptions/listen stream on its own "
                    f"task that does not move, net of idle (median of {1 if tiny else 3} "
                    f"windows, each beside an idle window); opening a stream costs "
                    f"{opened:.1f} ms once; {notes} streams delivered their task's state at "
                    f"once"),
    ]


# --- stdio ------------------------------------------------------------------------------


def _children(marker: bytes) -> set[int]:
    """Pids of this process's children whose command line (NUL-separated) holds ``marker``."""
    me, found = os.getpid(), set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and marker in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
    return found


def _child_pid(marker: bytes, before: set[int] | frozenset[int] = frozenset()) -> int:
    """The pid of the one child with ``marker`` in its command line that is not in ``before``
    (the HTTP servers of the same benchmark run are children too, with the same command)."""
    new = _children(marker) - set(before)
    if len(new) != 1:
        raise RuntimeError(f"{len(new)} new child processes with {marker!r} in their command "
                           "line (expected one)")
    return new.pop()


@dataclass
class _StdioServer:
    """One stdio server to measure: how to launch it and its tool names."""

    label: str
    command: str
    args: list[str]
    env: dict[str, str]
    marker: bytes
    start_tool: str
    status_tool: str


async def _stdio_rounds(servers: list[_StdioServer], rounds: int, per_round: int
                        ) -> dict[str, dict[str, list[float]]]:
    """Server CPU ms per start and per status of one stdio client per server; the servers
    run side by side and take turns, ``per_round`` calls each per turn (the machine's noise
    then falls on all of them alike)."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    out: dict[str, dict[str, list[float]]] = {s.label: {"start": [], "status": []}
                                              for s in servers}
    # the servers log at INFO to stderr as in production; the table stays readable
    with open(os.devnull, "w") as devnull:
        async with contextlib.AsyncExitStack() as stack:
            opened = []
            for s in servers:
                params = StdioServerParameters(command=s.command, args=s.args, env=s.env)
                before = _children(s.marker)
                client = await stack.enter_async_context(
                    Client(stdio_client(params, errlog=devnull)))
                opened.append((s, client, _child_pid(s.marker, before), []))
            start_args = {"task_type": "test_parked", "params": dict(PARKED_PARAMS)}
            for s, client, _pid, ids in opened:  # untimed: first calls, and ids to poll
                res = await client.call_tool(s.start_tool, dict(start_args))
                if res.is_error or not res.structured_content:
                    raise RuntimeError(f"{s.label}: start failed over stdio: {res.content}"[:500])
                ids.append(str(res.structured_content["task_id"]))
                await client.call_tool(s.status_tool, {"task_id": ids[0]})
            for _ in range(rounds):
                for s, client, pid, ids in opened:
                    for op in ("start", "status"):
                        cycle = itertools.cycle(list(ids))
                        cpu0 = cpu_seconds(pid)
                        for _ in range(per_round):
                            if op == "start":
                                res = await client.call_tool(s.start_tool, dict(start_args))
                            else:
                                res = await client.call_tool(s.status_tool,
                                                             {"task_id": next(cycle)})
                            if res.is_error:
                                raise RuntimeError(
                                    f"{s.label}: {op} failed over stdio: {res.content}"[:500])
                            if op == "start" and res.structured_content:
                                ids.append(str(res.structured_content["task_id"]))
                        out[s.label][op].append(ms(cpu_seconds(pid) - cpu0) / per_round)
    return out


def ours_over_stdio(label: str, env: dict[str, str]) -> _StdioServer:
    """`taskbroker serve --transport stdio` (no worker) with ``env``, measured as ``label``."""
    return _StdioServer(label, sys.executable,
                        ["-m", "taskbroker", "serve", "--transport", "stdio", "--no-worker"],
                        env, b"-m\0taskbroker\0serve", "start_background_task_tool",
                        "get_task_status_tool")


def docket_over_stdio(benv: BenchEnv, label: str = "docket") -> _StdioServer:
    """The FastMCP 4 + Docket peer over stdio, measured as ``label``."""
    return _StdioServer(label, str(DOCKET_PYTHON),
                        [str(BENCH / "bench_docket_peer.py"), "--transport", "stdio", "--redis",
                         benv.redis.url], docket_env(benv), b"bench_docket_peer", "start",
                        "status")


def _stdio_rows(benv: BenchEnv, tiny: bool) -> list[Figure]:
    rounds, per = (1, 20) if tiny else (7, 200)
    servers = [
        ours_over_stdio("ours", dict(benv.env, TASKBROKER_REAPER_INTERVAL="3600")),
        _StdioServer("peer", sys.executable,
                     [str(BENCH / "bench_peer_server.py"), "--transport", "stdio", "--redis",
                      benv.redis.url], benv.env, b"bench_peer_server", "start", "status"),
        docket_over_stdio(benv),
    ]
    got = anyio.run(_stdio_rounds, servers, rounds, per)
    rows = []
    for op in ("start", "status"):
        ours, peer, docket = (statistics.median(got[k][op]) for k in ("ours", "peer", "docket"))
        paired = paired_ratio(got["ours"][op], got["docket"][op])
        if not tiny and min(ours, peer, docket) <= 0:  # a wrong pid measures nothing
            raise RuntimeError(f"stdio {op}: no server CPU measured ({got!r})"[:500])
        rows.append(Figure(
            f"MCP stdio server CPU per {op} vs FastMCP 4 + Docket (1 client)", ours, None,
            "ms/call", docket, "FastMCP 4.1.4 + Docket 0.27 over stdio",
            target=f"<= {DOCKET_TARGET:g}x", met=ours <= DOCKET_TARGET * docket,
            note=f"chain-less peer over stdio {peer:.2f} ms ({_ratio(ours, peer)}); median of "
                 f"{rounds} turns of {per} calls, the three servers taking turns; median of "
                 f"the turns' own ratios to Docket {paired:.2f}x"))
    return rows


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def run(benv: BenchEnv, ours_url: str, ours_pid: int, tiny: bool) -> list[Figure]:
    """The tasks-extension and stdio rows (ours: the bench's HTTP server at ``ours_url``)."""
    if not DOCKET_PYTHON.exists():
        return [Figure(name, float("nan"), None, "ms/call", target="info", met=False,
                       note="not measured: .cache/fastmcp-venv is missing (make test-deps)")
                for name in ("MCP server CPU per tasks/get vs FastMCP 4 + Docket (16 clients)",
                             "MCP server CPU per second of a client polling tasks/get as advised",
                             "MCP server CPU per second of a client following a task by "
                             "notifications",
                             "MCP stdio server CPU per start vs FastMCP 4 + Docket (1 client)",
                             "MCP stdio server CPU per status vs FastMCP 4 + Docket (1 client)")]
    return _tasks_rows(benv, ours_url, ours_pid, tiny) + _stdio_rows(benv, tiny)
