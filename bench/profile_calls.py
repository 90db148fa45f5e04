"""Where a server's CPU goes per MCP call: py-spy samples a real `taskbroker serve` (and the
chain-less peer) while real MCP clients call start, status or wait, or poll tasks/get, and
the samples are folded into a breakdown by layer.

    .venv/bin/pip install py-spy        # a profiling tool, not a dependency
    .venv/bin/python bench/profile_calls.py [--seconds 15] [--out bench/profiles]

Writes one gzipped collapsed-stack file per (server, transport, operation) into ``--out``
(flame-graph input once unzipped: ``inferno-flamegraph`` or speedscope read them) and
prints, per file, the share of samples charged to each layer (see :data:`LAYERS`: SDK
dispatch, validation and serialisation, HTTP, thread hops, each taskbroker middleware, rate
limit, ledger, publish, spans, metrics, logging).  Only samples of threads on the CPU are
taken (py-spy leaves out threads blocked in a system call: waiting for Redis or PostgreSQL
is not CPU).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gzip
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import bench_flows
from bench_common import LOG_DIR, bench_environment
from bench_mcp import PARKED_PARAMS, _lean_waits, _sdk_batch, _served, _some_ids

from tests.support.mcp_client import stdio_client
from tests.support.procs import free_port, taskbroker_argv

#: (layer, substrings of a frame "function (file:line)"): a sample belongs to the first layer
#: any of whose substrings appears anywhere in its stack, so work done *for* a layer (the rate
#: limit's Redis round trip, the ledger's psycopg calls) is charged to that layer
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("rate limit (limits + redis)", ("middleware/ratelimit", "limits/")),
    ("publish (kombu/celery/redis)", ("adapters/celery/", "kombu/", "celery/")),
    ("ledger (SQLAlchemy + psycopg)", ("adapters/sql/", "sqlalchemy/", "psycopg/")),
    ("estimates (ledger history)", ("core/estimates",)),
    ("logging (structlog, stdlib)", ("structlog/", "logging/__init__", "observability/logging")),
    ("spans (opentelemetry)", ("opentelemetry/",)),
    ("metrics (prometheus_client)", ("prometheus_client/", "observability/metrics")),
    ("validation (ours)", ("middleware/validation", "core/contract/registry")),
    ("authorization/identity/audit (ours)", ("middleware/authorization", "middleware/identity",
                                             "middleware/audit", "core/audit")),
    ("observability middleware (ours)", ("observability/middleware",)),
    ("TaskService + chain (ours)", ("core/pipeline/",)),
]

#: the layers a sample falls to when none of the above is on its stack, by its innermost
#: frame that matches (their frames are around everything, so presence would say nothing)
GENERIC: list[tuple[str, tuple[str, ...]]] = [
    ("peer's own code", ("bench_peer_server",)),
    ("MCP adapter (ours)", ("taskbroker/mcp/",)),
    ("redis client (other)", ("redis/",)),
    ("pydantic (SDK)", ("pydantic/", "pydantic_core")),
    ("MCP SDK dispatch", ("mcp/server/", "mcp/shared/", "mcp_types")),
    ("HTTP (uvicorn, starlette, h11, sse)", ("uvicorn/", "starlette/", "h11/", "sse_starlette/",
                                             "httptools")),
    ("event loop, thread hops (asyncio/anyio)", ("anyio/", "asyncio/", "concurrent/futures",
                                                "threading")),
    ("json", ("json/",)),
]


def classify(stack: str) -> str:
    """The layer of a folded stack (frames outermost first, separated by ';')."""
    for layer, needles in LAYERS:
        if any(n in stack for n in needles):
            return layer
    for frame in reversed(stack.split(";")):
        for layer, needles in GENERIC:
            if any(n in frame for n in needles):
                return layer
    return "other"


def breakdown(folded: Path) -> list[tuple[str, float]]:
    """Share of busy samples per layer in a py-spy ``--format raw`` file."""
    counts: collections.Counter[str] = collections.Counter()
    for line in folded.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[classify(stack)] += int(n)
    busy = sum(counts.values()) or 1
    return [(k, 100 * v / busy) for k, v in counts.most_common()]


#: more py-spy options (e.g. ``--gil``: only the thread holding the GIL, i.e. Python on CPU)
EXTRA: list[str] = []


@contextlib.contextmanager
def sampling(pid: int, out: Path, seconds: float) -> Iterator[None]:
    """py-spy records ``pid``'s threads that are on the CPU into ``out``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "200",
                             "-f", "raw", "-o", str(out), "--nonblocking", *EXTRA],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        try:
            proc.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _report(label: str, folded: Path, calls: int) -> None:
    """Print a profile's breakdown and keep it gzipped (flame-graph tools read it unzipped)."""
    print(f"\n{label}: {calls} calls, {folded}.gz")
    for layer, share in breakdown(folded):
        print(f"  {share:5.1f}%  {layer}")
    with folded.open("rb") as raw, gzip.open(f"{folded}.gz", "wb") as packed:
        shutil.copyfileobj(raw, packed)
    folded.unlink()


def _stdio_pid() -> int:
    """The `taskbroker serve --transport stdio` child of this process."""
    from bench_flows import _child_pid

    return _child_pid(b"stdio")


def main(argv: list[str] | None = None) -> int:
    """Profile start, status and waiting on taskbroker (HTTP and stdio) and the peer."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("profiles"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start_args = {"task_type": "test_parked", "params": dict(PARKED_PARAMS)}
    with bench_environment() as benv:
        ours_port, peer_port = free_port(), free_port()
        # 200 clients of one user wait at once below: the per-user cap of open waits is lifted
        server_env = dict(benv.env, TASKBROKER_MAX_WAITS_PER_USER="0")
        with _served(taskbroker_argv("serve", "--port", str(ours_port), "--no-worker"),
                     server_env, "profiled-server", ours_port) as ours, \
             _served([sys.executable, str(Path(__file__).with_name("bench_peer_server.py")),
                      "--port", str(peer_port), "--redis", benv.redis.url], benv.env,
                     "profiled-peer", peer_port) as peer:
            ids = _some_ids(benv)
            targets = [("taskbroker-http", ours.pid, f"http://127.0.0.1:{ours_port}/mcp",
                        "start_background_task_tool", "get_task_status_tool"),
                       ("peer-http", peer.pid, f"http://127.0.0.1:{peer_port}/mcp", "start",
                        "status")]
            for label, pid, url, start_tool, status_tool in targets:
                for op, tool in (("start", start_tool), ("status", status_tool)):
                    def args_for(op: str = op) -> dict[str, Any]:
                        return dict(start_args) if op == "start" else {"task_id": ids[0]}

                    folded = args.out / f"{label}-{op}.txt"
                    calls = 0

                    async def drive(url: str = url, tool: str = tool, pid: int = pid,
                                    args_for: Any = args_for) -> None:
                        nonlocal calls
                        deadline = anyio.current_time() + args.seconds
                        while anyio.current_time() < deadline:
                            await _sdk_batch(url, 16, 20, tool, args_for, pid)
                            calls += 16 * 20

                    with sampling(pid, folded, args.seconds):
                        anyio.run(drive)
                    _report(f"{label} {op}", folded, calls)

            # 200 clients inside wait_for_task_tool on tasks that do not move
            folded = args.out / "taskbroker-http-wait.txt"
            with sampling(ours.pid, folded, args.seconds):
                anyio.run(_lean_waits, f"http://127.0.0.1:{ours_port}/mcp", ids, 200,
                          args.seconds, 4, ours.pid)
            _report("taskbroker-http wait (200 waiting)", folded, 200)

            # 16 tasks-extension sessions polling tasks/get on parked tasks (each batch first
            # starts 4 tasks per session through the typed tool: 64 starts per 1,600 polls)
            folded = args.out / "taskbroker-http-tasks-get.txt"
            polls = 0

            async def poll_tasks() -> None:
                nonlocal polls
                deadline = anyio.current_time() + args.seconds
                while anyio.current_time() < deadline:
                    await bench_flows._tasks_get_batch(f"http://127.0.0.1:{ours_port}/mcp",
                                                       ours.pid, 16, 100, 0.0)
                    polls += 16 * 100

            with sampling(ours.pid, folded, args.seconds):
                anyio.run(poll_tasks)
            _report("taskbroker-http tasks/get (16 clients)", folded, polls)

        # stdio: one client, calls one after another (the transport's own cost shows)
        async def over_stdio() -> None:
            async with stdio_client(benv.env) as client:
                pid = _stdio_pid()
                await client.call_tool("get_task_status_tool", {"task_id": ids[0]})
                for op, tool in (("start", "start_background_task_tool"),
                                 ("status", "get_task_status_tool")):
                    folded = args.out / f"taskbroker-stdio-{op}.txt"
                    calls = 0
                    with sampling(pid, folded, args.seconds):
                        deadline = anyio.current_time() + args.seconds
                        while anyio.current_time() < deadline:
                            await client.call_tool(tool, dict(start_args) if op == "start"
                                                   else {"task_id": ids[0]})
                            calls += 1
                    _report(f"taskbroker-stdio {op}", folded, calls)

        anyio.run(over_stdio)
    print(f"\nserver logs: {LOG_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
