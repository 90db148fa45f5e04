"""Serving MCP over stdin and stdout from the event loop, without a thread per read or write.

The SDK's ``stdio_server()`` reads and writes the standard streams through worker threads
(``anyio.wrap_file``): every message in costs a thread hop for its line, every answer two
(write, flush).  Over stdio one client's calls arrive one at a time, so nothing amortises
those wake-ups; they were most of a stdio call's server CPU.  When stdin and stdout are pipes
or sockets (as with every MCP client that starts the server as its child), this module serves
them with asyncio's pipe transports on the event loop instead and hands the SDK's
``stdio_server()`` those streams.  Anything else (a regular file, a terminal) keeps the SDK's
threads.

Like the SDK, it claims the standard descriptors while serving: the wire moves to private
duplicates, fd 0 reads the null device and fd 1 writes to stderr, so a stray ``print`` in a
plugin cannot corrupt the protocol; both are restored on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
from collections.abc import AsyncIterator, Iterator
from typing import Any

from mcp.server.stdio import stdio_server

__all__ = ["MAX_LINE_BYTES", "LoopLines", "LoopWriter", "serve_stdio", "stdio_streams"]

#: the longest message line read (a longer one is skipped, like any line that is not JSON-RPC)
MAX_LINE_BYTES = 16 * 1024 * 1024


def _loop_servable(fd: int) -> bool:
    """True when ``fd`` is a pipe or socket that asyncio can serve (not a file or a tty)."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class LoopLines:
    """The lines of a pipe read on the event loop, as text (``async for line in ...``).

    A line longer than :data:`MAX_LINE_BYTES` is skipped without being held in memory and
    given as one invalid line, which the session drops as it drops any line that is not
    JSON-RPC; reading goes on.
    """

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> LoopLines:
        return self

    async def __anext__(self) -> str:
        try:
            line = await self.reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # end of stream
            if not exc.partial:
                raise StopAsyncIteration from None
            line = exc.partial
        except asyncio.LimitOverrunError:
            await self._skip_line()
            return "<line too long>\n"
        return line.decode("utf-8", errors="replace")

    async def _skip_line(self) -> None:
        while True:
            try:
                await self.reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self.reader.readexactly(exc.consumed)
            except asyncio.IncompleteReadError:
                return


class LoopWriter:
    """Text written to a pipe on the event loop (``await write(...)``, ``await flush()``)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def write(self, text: str) -> None:
        """Queue ``text`` (UTF-8) and wait while the pipe's buffer is full."""
        self.writer.write(text.encode("utf-8"))
        await self.writer.drain()

    async def flush(self) -> None:
        """Wait until the pipe takes what was written (a no-op when it keeps up)."""
        await self.writer.drain()


@contextlib.contextmanager
def _claimed(fd: int, divert_to: int) -> Iterator[int]:
    """A private duplicate of ``fd`` (the wire) while ``fd`` points at ``divert_to``; on exit
    ``fd`` is the wire again, in blocking mode as it came."""
    private = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    try:
        os.dup2(divert_to, fd)
    except OSError:
        os.close(private)
        raise
    try:
        yield private
    finally:
        with contextlib.suppress(OSError):  # the pipe transports made it non-blocking
            os.set_blocking(private, True)
        os.dup2(private, fd)
        os.close(private)


@contextlib.asynccontextmanager
async def stdio_streams() -> AsyncIterator[tuple[LoopLines, LoopWriter] | None]:
    """stdin's lines and a stdout writer served by the event loop, the standard descriptors
    claimed meanwhile; None when either is not a pipe or socket (use the SDK's threads)."""
    if not (_loop_servable(0) and _loop_servable(1)):
        yield None
        return
    loop = asyncio.get_running_loop()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        with _claimed(0, null) as wire_in, _claimed(1, 2) as wire_out:
            reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
            # each transport owns (and closes) a duplicate of its wire of its own
            read_transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader),
                open(os.dup(wire_in), "rb", buffering=0))  # noqa: SIM115
            try:
                write_transport, protocol = await loop.connect_write_pipe(
                    asyncio.streams.FlowControlMixin,
                    open(os.dup(wire_out), "wb", buffering=0))  # noqa: SIM115
                try:
                    writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
                    yield LoopLines(reader), LoopWriter(writer)
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()  # the last answers reach the client
                finally:
                    write_transport.close()
            finally:
                read_transport.close()
            await asyncio.sleep(0)  # the transports close their files on the next turn
    finally:
        os.close(null)


async def serve_stdio(lowlevel_server: Any) -> None:
    """Run ``lowlevel_server`` (the SDK's low-level ``Server``) over stdin and stdout until
    the client closes stdin: on the event loop when they are pipes, else on the SDK's
    threads."""
    async with stdio_streams() as streams:
        stdin, stdout = streams if streams is not None else (None, None)
        async with stdio_server(stdin, stdout) as (read_stream, write_stream):  # type: ignore[arg-type]
            await lowlevel_server.run(read_stream, write_stream,
                                      lowlevel_server.create_initialization_options())
