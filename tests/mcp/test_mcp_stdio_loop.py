"""stdio served from the event loop (``taskbroker.mcp.stdio``): lines read and answers written
by asyncio's pipe transports, the standard descriptors claimed while serving and restored
after, and the SDK's threads kept for anything that is not a pipe."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from taskbroker.mcp.stdio import MAX_LINE_BYTES, LoopLines


def test_lines_are_read_as_text_and_an_overlong_one_is_skipped() -> None:
    async def main() -> list[str]:
        reader = asyncio.StreamReader(limit=16)
        reader.feed_data(b'{"a": "\xc3\xa9"}\n' + b"x" * 100 + b"\n" + b"next\n" + b"last")
        reader.feed_eof()
        return [line async for line in LoopLines(reader)]

    assert asyncio.run(main()) == ['{"a": "é"}\n', "<line too long>\n", "next\n", "last"]


_SCRIPT = textwrap.dedent("""
    import asyncio, os, sys
    from taskbroker.mcp.stdio import stdio_streams

    async def main():
        async with stdio_streams() as streams:
            if streams is None:
                print("threads", flush=True)
                return
            lines, out = streams
            async for line in lines:
                print("stray output", flush=True)  # fd 1 is stderr while serving
                await out.write("echo " + line)
                await out.flush()
        os.write(1, b"after: blocking=%d\\n" % os.get_blocking(0))

    asyncio.run(main())
""")


def _run(stdin: int | None, data: bytes | None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", _SCRIPT], stdin=stdin, input=data,
                          capture_output=True, timeout=60, check=True)


def test_pipes_are_served_by_the_loop_with_the_descriptors_claimed_and_restored() -> None:
    done = _run(None, b"one\ntwo\n")
    # answers on the wire, in order; after serving, fd 1 is the wire again and fd 0 is back
    # in blocking mode (the pipe transports made the shared description non-blocking)
    assert done.stdout.decode().splitlines() == ["echo one", "echo two", "after: blocking=1"]
    # what a plugin prints while serving goes to stderr, never onto the wire
    assert done.stderr.decode().count("stray output") == 2


def test_a_regular_file_on_stdin_keeps_the_sdk_threads(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text("one\n")
    with requests.open("rb") as stdin:
        done = _run(stdin.fileno(), None)
    assert done.stdout.decode().splitlines() == ["threads"]


def test_an_overlong_line_on_the_pipe_is_skipped_and_serving_goes_on() -> None:
    done = _run(None, b"x" * (MAX_LINE_BYTES + 1024) + b"\nnext\n")
    assert done.stdout.decode().splitlines() == ["echo <line too long>", "echo next",
                                                 "after: blocking=1"]


# --- the SDK's read and write streams over the pipe ---------------------------------------


def test_the_message_reader_parses_each_line_and_hands_on_what_is_not_json_rpc() -> None:
    import anyio
    from mcp.shared.message import SessionMessage
    from mcp.types import JSONRPCNotification, JSONRPCRequest

    from taskbroker.mcp.stdio import MessageReader

    async def main() -> list[object]:
        reader = asyncio.StreamReader()
        reader.feed_data(b'{"jsonrpc":"2.0","id":7,"method":"tools/list"}\n'
                         b"not json\n"
                         b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        reader.feed_eof()
        stream = MessageReader(LoopLines(reader))
        got: list[object] = [item async for item in stream]
        try:
            await stream.receive()
        except anyio.EndOfStream:
            got.append("end")
        await stream.aclose()
        try:
            await stream.receive()
        except anyio.ClosedResourceError:
            got.append("closed")
        return got

    first, second, third, *rest = asyncio.run(main())
    assert isinstance(first, SessionMessage) and isinstance(first.message, JSONRPCRequest)
    assert first.message.id == 7 and first.message.method == "tools/list"
    assert isinstance(second, Exception)  # the session drops it, as the SDK's reader's
    assert isinstance(third, SessionMessage)
    assert isinstance(third.message, JSONRPCNotification)
    assert rest == ["end", "closed"]


def test_the_message_writer_writes_whole_lines_and_says_when_the_client_is_gone() -> None:
    """Concurrent answers larger than the pipe's buffer arrive as whole lines, each once;
    once the client closed its end a send raises BrokenResourceError (the session's
    "connection gone"), and after aclose ClosedResourceError."""
    import json
    import os
    import threading

    import anyio
    from mcp.shared.message import SessionMessage
    from mcp.types import JSONRPCResponse

    from taskbroker.mcp.stdio import LoopWriter, MessageWriter

    read_fd, write_fd = os.pipe()
    received = bytearray()

    def drain() -> None:  # the client: reads eight answers, then goes away
        with open(read_fd, "rb", buffering=0) as pipe:
            while received.count(b"\n") < 8 and (chunk := pipe.read(65536)):
                received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, open(write_fd, "wb", buffering=0))  # noqa: SIM115
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        stream = MessageWriter(LoopWriter(writer))
        big = "x" * 200_000  # three times a pipe's buffer: sends wait for the reader

        async def answer(i: int) -> None:
            await stream.send(SessionMessage(JSONRPCResponse(
                jsonrpc="2.0", id=i, result={"n": i, "pad": big})))

        await asyncio.gather(*(answer(i) for i in range(8)))
        await asyncio.to_thread(reader.join, 30)
        outcomes = []
        for i in (98, 99):  # the first write meets the closed pipe, the second a closed transport
            try:
                await answer(i)
            except anyio.BrokenResourceError:
                outcomes.append("broken")
        await stream.aclose()
        try:
            await answer(100)
        except anyio.ClosedResourceError:
            outcomes.append("closed")
        return outcomes

    assert asyncio.run(main()) == ["broken", "broken", "closed"]
    lines = received.decode().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == list(range(8))
    assert all(json.loads(line)["result"]["n"] == json.loads(line)["id"] for line in lines)


def test_a_real_stdio_server_answers_after_hostile_lines(dist_env: dict[str, str]) -> None:
    """Lines that are not JSON, not UTF-8, not JSON-RPC, or ask for an unknown method reach
    the real server first; it keeps serving: the handshake and a tool list still work, and
    it exits 0 when stdin closes."""
    import json
    import queue
    import threading

    proc = subprocess.Popen(
        [sys.executable, "-m", "taskbroker", "serve", "--transport", "stdio", "--no-worker"],
        env=dist_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL)
    answers: queue.Queue[dict] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            answers.put(json.loads(line))

    threading.Thread(target=read, daemon=True).start()

    def answer_to(request_id: int) -> dict:
        while True:
            message = answers.get(timeout=60)
            if message.get("id") == request_id:
                return message

    try:
        assert proc.stdin is not None
        hostile = [b"not json", b"\xff\xfe\x00 not utf-8", b'{"jsonrpc":"2.0"}', b"[1, 2, 3]",
                   b'{"jsonrpc":"2.0","id":1,"method":"no/such/method"}', b"{" * 10_000]
        handshake = [
            {"jsonrpc": "2.0", "id": 2, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "hostile", "version": "0"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
        ]
        proc.stdin.write(b"\n".join(hostile) + b"\n"
                         + b"".join(json.dumps(m).encode() + b"\n" for m in handshake))
        proc.stdin.flush()
        assert "error" in answer_to(1)
        assert answer_to(2)["result"]["serverInfo"]["name"] == "taskbroker"
        tools = {t["name"] for t in answer_to(3)["result"]["tools"]}
        assert {"start_background_task_tool", "get_task_status_tool", "cancel_task_tool",
                "list_active_tasks_tool"} <= tools
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
