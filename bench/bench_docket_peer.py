"""A second same-run peer for bench_mcp: FastMCP 4 with Docket (the fastmcp[tasks] stack),
plain ``start`` and ``status`` tools over a Docket on the bench's Redis.  No auth, no rate
limits, no ledger: what a team gets from that stack before adding any of them.

With ``--tasks`` it serves FastMCP's own tasks-extension flow instead (fastmcp-tasks'
``TasksExtension`` over Docket on the same Redis, with the Docket worker FastMCP runs in the
server process): one ``test_parked`` tool declared ``task=True``, whose runs wait an hour,
so a client that declares the extension gets a task handle and polls ``tasks/get``.

It runs in the fastmcp 4 venv that ``scripts/install-test-deps.sh`` makes
(``.cache/fastmcp-venv``, fastmcp[tasks]==4.1.4 with pydocket), not in ours:

    .cache/fastmcp-venv/bin/python bench/bench_docket_peer.py --port P --redis URL [--tasks]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from docket import Docket
from fastmcp import FastMCP


async def parked(path: str = "") -> None:
    """The task the benchmark starts; no Docket worker runs here, so it stays queued (as the
    other servers' parked tasks do)."""


def build(redis_url: str) -> FastMCP:
    """The peer server: start and status over one Docket."""
    held: dict[str, Docket] = {}

    @asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        async with Docket(name="bench-docket-peer", url=redis_url) as docket:
            docket.register(parked)
            held["docket"] = docket
            yield {}

    mcp = FastMCP("docket-peer", lifespan=lifespan)

    @mcp.tool
    async def start(task_type: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Schedule a task on Docket; returns its key."""
        execution = await held["docket"].add(parked)(**(params or {}))
        return {"task_id": execution.key, "task_type": task_type,
                "status": execution.state.value}

    @mcp.tool
    async def status(task_id: str) -> dict[str, Any]:
        """A task's state, from Docket's runs hash."""
        execution = await held["docket"].get_execution(task_id)
        if execution is None:
            raise ValueError(f"task_id {task_id!r}: no such task")
        return {"task_id": task_id, "status": execution.state.value}

    return mcp


def build_tasks(redis_url: str) -> FastMCP:
    """The peer server of the tasks-extension flow: one task tool over FastMCP's extension."""
    from fastmcp_tasks import TasksExtension

    mcp = FastMCP("docket-tasks-peer")
    mcp.add_extension(TasksExtension(url=redis_url, name="bench-docket-tasks"))

    @mcp.tool(task=True)
    async def test_parked(path: str = "") -> dict[str, Any]:
        """A task that waits an hour (the other servers' parked tasks never run either)."""
        await asyncio.sleep(3600)
        return {"path": path}

    return mcp


def main() -> None:
    """Serve the peer over streamable HTTP at /mcp, or over stdio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--tasks", action="store_true", help="serve the tasks-extension flow")
    ap.add_argument("--transport", choices=("http", "stdio"), default="http")
    args = ap.parse_args()
    server = (build_tasks if args.tasks else build)(args.redis)
    if args.transport == "stdio":
        server.run(transport="stdio", show_banner=False, log_level="warning")
        return
    server.run(transport="http", host="127.0.0.1", port=args.port, path="/mcp",
               log_level="warning")


if __name__ == "__main__":
    main()
