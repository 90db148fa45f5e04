"""The HTTP server's housekeeping loop: one wake-up a second instead of uvicorn's ten (an
idle server burnt ~2 ms of CPU a second on them), and a stop request still acts at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from taskbroker.mcp.run import _Server
from tests.support.procs import free_port, port_open, wait_for


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


class _Served:
    def __init__(self) -> None:
        self.port = free_port()
        self.server = _Server.make(uvicorn.Config(_hello, host="127.0.0.1", port=self.port,
                                                  log_level="warning", lifespan="off"))
        self.ticks: list[float] = []
        real = self.server.on_tick

        async def counting(counter: int) -> bool:
            self.ticks.append(time.monotonic())
            return bool(await real(counter))

        self.server.on_tick = counting
        self.thread = threading.Thread(target=self.server.run, daemon=True)


@pytest.fixture
def served() -> Iterator[_Served]:
    s = _Served()
    s.thread.start()
    try:
        wait_for(lambda: port_open(s.port), timeout=30, what="test server listening")
        yield s
    finally:
        s.server.request_exit(force=True)
        s.thread.join(10)


def test_the_loop_wakes_once_a_second_and_the_date_header_stays(served: _Served) -> None:
    first = httpx.get(f"http://127.0.0.1:{served.port}/", timeout=10)
    assert first.text == "hello" and first.headers.get("date")
    t0, n0 = time.monotonic(), len(served.ticks)
    wait_for(lambda: time.monotonic() - t0 >= 2.5, timeout=10, what="2.5 s of serving")
    elapsed, ticks = time.monotonic() - t0, len(served.ticks) - n0
    # uvicorn's own loop ticks every 0.1 s: ~25 here; ours once a second (never more)
    assert ticks <= elapsed / _Server.TICK_SECONDS + 1, (ticks, elapsed)
    later = httpx.get(f"http://127.0.0.1:{served.port}/", timeout=10)
    assert later.headers["date"] != first.headers["date"]  # refreshed by the ticks


def test_a_stop_request_acts_at_once_not_at_the_next_tick(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(_Server, "TICK_SECONDS", 3600.0)  # the next tick: an hour away
    s = _Served()
    s.thread.start()
    try:
        wait_for(lambda: port_open(s.port), timeout=30, what="test server listening")
        assert httpx.get(f"http://127.0.0.1:{s.port}/", timeout=10).text == "hello"
        s.server.request_exit()  # from another thread than the server's loop
        s.thread.join(30)
        assert not s.thread.is_alive(), "the server waited for its next tick to stop"
        assert not port_open(s.port)
    finally:
        s.server.request_exit(force=True)
        s.thread.join(10)


def test_http_is_parsed_by_httptools() -> None:
    """uvicorn picks httptools (a dependency) over h11 when it is installed: 0.1-0.6 ms less
    server CPU per MCP call (bench/FINDINGS.md)."""
    config = uvicorn.Config(_hello, lifespan="off")
    config.load()
    assert config.http_protocol_class.__name__ == "HttpToolsProtocol"
