"""Serving MCP over stdin and stdout from the event loop, without a thread per read or write.

The SDK's ``stdio_server()`` reads and writes the standard streams through worker threads
(``anyio.wrap_file``): every message in costs a thread hop for its line, every answer two
(write, flush).  Over stdio one client's calls arrive one at a time, so nothing amortises
those wake-ups; they were most of a stdio call's server CPU.  When stdin and stdout are pipes
or sockets (as with every MCP client that starts the server as its child), this module serves
them with asyncio's pipe transports on the event loop instead and hands the SDK's
``stdio_server()`` those streams.  Anything else (a regular file, a terminal) keeps the SDK's
threads.

On pipes the SDK's reader and writer tasks are left out too: :class:`MessageReader` parses
each line in the task that asks for the next message, and :class:`MessageWriter` writes each
answer from the task that sends it (the SDK's read and write stream protocols).  Through
``stdio_server()`` every message in and every answer out also crossed a zero-buffer memory
stream to a task of its own: a wake-up and a few turns of the loop per message, which over
stdio (one call at a time) nothing amortises.

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
from types import TracebackType
from typing import Any

import anyio
from mcp import types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

__all__ = ["MAX_LINE_BYTES", "LoopLines", "LoopWriter", "MessageReader", "MessageWriter",
           "serve_stdio", "stdio_streams"]

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


class _Closable:
    """``async with`` closes the stream, as with the SDK's memory streams."""

    _closed = False

    async def aclose(self) -> None:
        """Refuse further use (the pipe itself belongs to :func:`stdio_streams`)."""
        self._closed = True

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()


class MessageReader(_Closable):
    """The SDK's read stream over stdin's lines: each line parsed as one JSON-RPC message in
    the task that receives it.  A line that is not JSON-RPC comes out as the exception that
    says why (the session drops it), as from the SDK's reader; the end of stdin ends the
    stream."""

    #: no per-message sender context: the receiving task's own is used
    last_context: Any = None

    def __init__(self, lines: LoopLines) -> None:
        self._lines = lines

    async def receive(self) -> SessionMessage | Exception:
        """The next message (or parse error); ``anyio.EndOfStream`` at the end of stdin."""
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            line = await self._lines.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None
        try:
            return SessionMessage(types.jsonrpc_message_adapter.validate_json(line,
                                                                              by_name=False))
        except Exception as exc:  # not JSON-RPC: handed on, like the SDK's reader does
            return exc

    def __aiter__(self) -> MessageReader:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class MessageWriter(_Closable):
    """The SDK's write stream over stdout: each message written as one JSON line by the task
    that sends it (one ``write`` per message, so concurrent answers never interleave), which
    waits while the pipe's buffer is full.  A pipe the client closed raises
    ``anyio.BrokenResourceError``, which the session treats as a connection gone."""

    def __init__(self, out: LoopWriter) -> None:
        self._out = out

    async def send(self, item: SessionMessage, /) -> None:
        """Write ``item``'s message as a line."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._out.writer.transport.is_closing():
            raise anyio.BrokenResourceError
        line = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
        try:
            await self._out.write(line)
        except OSError as exc:  # ConnectionResetError, BrokenPipeError
            raise anyio.BrokenResourceError from exc


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
    options = lowlevel_server.create_initialization_options()
    async with stdio_streams() as streams:
        if streams is not None:
            lines, out = streams
            await lowlevel_server.run(MessageReader(lines), MessageWriter(out), options)
            return
        async with stdio_server() as (read_stream, write_stream):
            await lowlevel_server.run(read_stream, write_stream, options)
