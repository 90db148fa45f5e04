"""A second same-run peer for bench_mcp: FastMCP 4 with Docket (the fastmcp[tasks] stack),
plain ``start`` and ``status`` tools over a Docket on the bench's Redis.  No auth, no rate
limits, no ledger: what a team gets from that stack before adding any of them.

It runs in the fastmcp 4 venv that ``scripts/install-test-deps.sh`` makes
(``.cache/fastmcp-venv``, fastmcp[tasks]==4.1.4 with pydocket), not in ours:

    .cache/fastmcp-venv/bin/python bench/bench_docket_peer.py --port P --redis URL
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    """Serve the peer over streamable HTTP at /mcp."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--redis", required=True)
    args = ap.parse_args()
    build(args.redis).run(transport="http", host="127.0.0.1", port=args.port, path="/mcp",
                          log_level="warning")


if __name__ == "__main__":
    main()
