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
