"""Run the synchronous service on the event loop, its I/O awaited there (a greenlet bridge).

TaskService and its adapters are synchronous: an MCP server runs each call in a worker thread
so that a database or broker round trip never blocks the event loop.  Each such hop wakes a
thread, and the thread and the loop then hand the GIL back and forth around every blocking
system call (measured on a start over HTTP with 16 clients: ~25 context switches and ~40 futex
calls per call, against none for a server that awaits its I/O on the loop).

:func:`run_on_loop` runs a synchronous call in a greenlet on the loop instead (the technique
of SQLAlchemy's asyncio extension).  Code inside it hands an awaitable to the loop with
:func:`await_io` and resumes with its result; the adapters that can do their I/O natively
(psycopg's async connection, redis.asyncio) do so when :func:`on_loop` is true.  Any other
blocking call must go through :func:`off_loop`, which runs it in a worker thread there and
inline everywhere else, and a lock held across an awaited round trip must be taken with
:func:`acquire` (a blocked ``acquire()`` on the loop's thread would stop the loop for good).
Worker threads are few (anyio's 40 by default): nothing on the loop may wait in one for
something only another call on the loop can release.

Objects bound to one event loop (async connections) live in a :class:`LoopLocal`; whoever
runs the loop closes them with :func:`close_loop_locals` before it ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio
from greenlet import getcurrent, greenlet

__all__ = ["LoopLocal", "acquire", "await_io", "close_loop_locals", "off_loop", "on_loop",
           "run_on_loop"]

T = TypeVar("T")


class _OnLoop(greenlet):  # type: ignore[misc]
    """The greenlet of one :func:`run_on_loop` call."""

    taskbroker_on_loop = True


async def run_on_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on this event loop, awaiting what it hands over with
    :func:`await_io`.

    Like a worker thread's call, it runs to its end once begun: a cancelled caller waits
    for it (a start must not stop between its record and its message).  ``fn`` sees a copy
    of the caller's context variables.
    """
    child = _OnLoop(functools.partial(fn, *args, **kwargs), getcurrent())
    child.gr_context = contextvars.copy_context()
    with anyio.CancelScope(shield=True):
        pending = child.switch()
        while not child.dead:
            try:
                value = await pending
            except BaseException:  # handed to the code that awaited it
                pending = child.throw(*sys.exc_info())
            else:
                pending = child.switch(value)
    return pending  # type: ignore[no-any-return]


def on_loop() -> bool:
    """True inside :func:`run_on_loop`: blocking I/O here would stop the event loop."""
    return getattr(getcurrent(), "taskbroker_on_loop", False)


def await_io(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` on the loop from synchronous code inside :func:`run_on_loop` and
    return its result (or raise its error)."""
    current = getcurrent()
    if not getattr(current, "taskbroker_on_loop", False):
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise RuntimeError("await_io() outside run_on_loop()")
    return current.parent.switch(awaitable)  # type: ignore[no-any-return]


def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the blocking ``fn``: in a worker thread when on the loop (with this context's
    variables), else right here."""
    if not on_loop():
        return fn(*args, **kwargs)
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await_io(anyio.to_thread.run_sync(call))


#: first and longest pause between two tries of a held lock on the loop (seconds)
LOCK_POLL_FIRST, LOCK_POLL_MAX = 0.0005, 0.02


def acquire(lock: threading.Lock) -> None:
    """Take ``lock``.  On the loop its holder may be a call awaiting on this same loop, so a
    blocking ``acquire()`` would stop the loop for good; a held lock is tried again after
    pauses awaited on the loop (0.5 ms, doubling up to 20 ms), which takes no worker thread
    (the holder may need one to finish)."""
    if not on_loop():
        lock.acquire()
        return
    pause = LOCK_POLL_FIRST
    while not lock.acquire(blocking=False):
        await_io(asyncio.sleep(pause))
        pause = min(2 * pause, LOCK_POLL_MAX)


_locals: weakref.WeakSet[LoopLocal[Any]] = weakref.WeakSet()


class LoopLocal(Generic[T]):
    """One object per running event loop, made on first use.

    Args:
        make: builds the object (called on the loop).
        close: closes one (awaited by :func:`close_loop_locals`).
    """

    def __init__(self, make: Callable[[], T], close: Callable[[T], Awaitable[None]]) -> None:
        self._make, self._close = make, close
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary())
        _locals.add(self)

    def get(self) -> T:
        """This loop's object (call it on the loop)."""
        loop = asyncio.get_running_loop()
        found = self._by_loop.get(loop)
        if found is None:
            found = self._by_loop[loop] = self._make()
        return found

    async def close(self) -> None:
        """Close this loop's object, if one was made."""
        found = self._by_loop.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await self._close(found)


async def close_loop_locals() -> None:
    """Close every :class:`LoopLocal` object of the running loop (errors are not raised:
    this runs as a server stops)."""
    for local in list(_locals):
        try:
            await local.close()
        except Exception:  # a dead connection is closed enough
            continue
