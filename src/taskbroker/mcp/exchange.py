"""How an HTTP request of the current MCP revision is answered: one JSON response, or a stream.

The SDK answers every 2026-07-28 request the same way: it runs the handler as a sibling task
beside a disconnect watcher and waits for either a notification (then it commits to
``text/event-stream``) or the end of the handler (then it writes plain JSON).  That buys
streaming for calls that report progress, and costs a task group, a memory stream and a
second task for every call, ~0.1 ms of CPU, which is a tenth of a status poll.

Most of our calls never stream: start, status, cancel, list, retry and the task-type list
answer at once, and so do the tasks extension's tasks/get, tasks/update and tasks/cancel.
For those the SDK's JSON mode gives the same answer (the SSE mode answers them with the same
JSON body and status when they end within its 15-s window, as they do) on the request's own
task.  Calls that may stream (wait_for_task_tool, the typed tools, subscriptions) keep the
SDK's streaming mode, with progress notifications and cancel-on-disconnect.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Message, Receive

__all__ = ["QUICK_METHODS", "answered_at_once", "buffer_body"]

#: JSON-RPC methods (besides the quick tools) that answer at once and never notify
QUICK_METHODS = frozenset({"ping", "tools/list", "tasks/get", "tasks/update", "tasks/cancel"})


def answered_at_once(body: bytes, quick_tools: frozenset[str]) -> bool:
    """True when ``body`` is one JSON-RPC request that answers at once without notifying:
    a call of one of ``quick_tools`` or one of :data:`QUICK_METHODS`.  Anything else
    (malformed bodies included) is left to the SDK's default handling."""
    try:
        message: Any = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(message, dict) or "id" not in message:
        return False
    method = message.get("method")
    if method in QUICK_METHODS:
        return True
    if method != "tools/call":
        return False
    params = message.get("params")
    return isinstance(params, dict) and params.get("name") in quick_tools


async def buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read a request's body; returns it and a ``receive`` that replays what was read, then
    reads on (a disconnect is still seen).  The body's size is bounded by the SDK's request
    body limit, which wraps this app."""
    read: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    pending = iter(read)

    async def replay() -> Message:
        for message in pending:
            return message
        return await receive()

    return b"".join(chunks), replay
