"""A comparable peer MCP server with none of taskbroker's chain: the baseline of the MCP
benchmark (same SDK, same transport, same Celery calls, nothing else).

Its ``start`` tool is a raw ``send_task`` and its ``status`` tool a raw
``AsyncResult(id).state``, each run in a worker thread like taskbroker's tools.  Run by
``bench_mcp.py`` as a subprocess (``bench_flows.py`` runs it over stdio):

    python bench/bench_peer_server.py --port 8123 --redis redis://127.0.0.1:6379/0
    python bench/bench_peer_server.py --transport stdio --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import anyio
import uvicorn
from celery import Celery
from celery.result import AsyncResult
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel


class Started(BaseModel):
    """What the peer's start returns."""

    task_id: str
    task_type: str


class State(BaseModel):
    """What the peer's status returns."""

    task_id: str
    status: str


def build(redis_url: str) -> MCPServer:
    """The peer MCP server (start and status tools)."""
    celery = Celery("peer", broker=redis_url, backend=redis_url, set_as_current=False)
    celery.conf.update(task_serializer="json", result_serializer="json",
                       accept_content=["json"])
    mcp = MCPServer(name="peer")

    @mcp.tool(name="start")
    async def start(task_type: str, params: dict[str, Any] | None = None,
                    queue: str = "parked") -> Started:
        """Queue ``taskbroker.tasks.<task_type>`` with a raw send_task."""
        task_id = str(uuid.uuid4())

        def send() -> None:
            celery.send_task(f"taskbroker.tasks.{task_type}", task_id=task_id, queue=queue,
                             kwargs={"params": params or {}, "owner": "peer", "roles": []})

        await anyio.to_thread.run_sync(send)
        return Started(task_id=task_id, task_type=task_type)

    @mcp.tool(name="status")
    async def status(task_id: str) -> State:
        """Raw ``AsyncResult(task_id).state``."""
        state = await anyio.to_thread.run_sync(lambda: AsyncResult(task_id, app=celery).state)
        return State(task_id=task_id, status=state)

    return mcp


def main() -> None:
    """Serve the peer until killed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--transport", choices=("http", "stdio"), default="http")
    args = ap.parse_args()
    mcp = build(args.redis)
    if args.transport == "stdio":
        mcp.run("stdio")
        return
    app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
