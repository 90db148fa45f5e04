"""Waiting for tasks without polling the ledger per waiter.

One :class:`TaskWatcher` per process (per event loop) serves every client that waits for a
task: the MCP wait tool, a typed tool call waiting for its task, the console's live pages.
A single background loop reads the snapshots of watched tasks (:meth:`Ledger.snapshots`) and
wakes the waiters of the tasks that changed; with nobody waiting it reads nothing.

Two ways to know when to read:

* with a change feed (distributed mode: Redis pub/sub, one subscription per process while
  anybody waits, see :mod:`taskbroker.adapters.redis.changes`), the loop reads only the
  tasks whose ids were published, as they are published (batched over ``batch_seconds``),
  plus every watched task once per ``fallback_interval`` in case a notification was lost:
  a waiter whose task does not move costs next to nothing;
* without one (embedded mode), it reads every watched task in one query every ``interval``.

Either way a thousand waiters cost one query per read, not a thousand.

Waiters are coroutines (anyio): a waiting client holds no thread.  :meth:`TaskWatcher.follow`
yields a task's snapshot whenever it changes, until it is terminal or the deadline passes.
Who may watch what is not decided here: callers check the task through the service first
(identity, rate limits, ownership) and only then follow its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from taskbroker.core.pipeline.errors import RateLimited
from taskbroker.core.ports import TERMINAL, Ledger, TaskSnapshot

__all__ = ["ChangeSource", "TaskWatcher", "WaitSlots"]

log = logging.getLogger("taskbroker.waiting")


class ChangeSource(Protocol):
    """Where a watcher hears of task changes (e.g. a Redis pub/sub subscription)."""

    def listen(self) -> AsyncIterator[str | None]:
        """``None`` whenever the source (re)connects (anything may have changed meanwhile),
        then the id of every task that changes, until cancelled."""
        ...


@dataclass
class _Waiters:
    """The waiters of one task and the last snapshot they were told about."""

    events: set[anyio.Event] = field(default_factory=set)
    last: TaskSnapshot | None = None
    followers: int = 0


class TaskWatcher:
    """Wakes coroutines waiting for task changes; one ledger query per read for all.

    Args:
        ledger: where snapshots are read.
        interval: without a feed, seconds between reads while somebody waits.
        changes: a change feed; reads then follow its notifications.
        fallback_interval: with a feed, seconds between reads of every watched task.
        batch_seconds: with a feed, how long notifications are gathered into one read.
        linger_seconds: with a feed, how long the subscription outlives the last waiter.
        run_sync: how the blocking ledger read leaves the event loop (default: a worker
            thread per read).
    """

    def __init__(self, ledger: Ledger, *, interval: float = 0.5,
                 changes: ChangeSource | None = None, fallback_interval: float = 5.0,
                 batch_seconds: float = 0.05, linger_seconds: float = 30.0,
                 run_sync: Callable[..., object] | None = None) -> None:
        self.ledger = ledger
        self.interval = interval
        self.changes = changes
        self.fallback_interval = fallback_interval
        self.batch_seconds = batch_seconds
        self.linger_seconds = linger_seconds
        self._watched: dict[str, _Waiters] = {}
        self._loop_running = False
        self._run_sync = run_sync
        #: ledger reads made so far (for tests and benchmarks: one per interval, not per waiter)
        self.reads = 0

    @property
    def watching(self) -> int:
        """How many tasks have waiters now."""
        return len(self._watched)

    async def follow(self, task_id: str, *, timeout: float) -> AsyncIterator[TaskSnapshot]:
        """Yield ``task_id``'s snapshot now and at every change, until it is terminal (the
        terminal snapshot is yielded) or ``timeout`` seconds pass.  Yields nothing for a task
        that does not exist."""
        deadline = anyio.current_time() + max(0.0, timeout)
        waiters = self._watched.setdefault(task_id, _Waiters())
        waiters.followers += 1
        try:
            current = await self._read_one(task_id, waiters)
            if current is None:
                return
            yield current
            while current.status not in TERMINAL:
                latest = waiters.last
                if latest is not None and latest != current:
                    # read while this follower was away (a slow consumer between yields):
                    # no wake-up would come for it again
                    current = latest
                    yield current
                    continue
                event = anyio.Event()
                waiters.events.add(event)
                self._ensure_loop()
                with anyio.move_on_after(deadline - anyio.current_time()):
                    await event.wait()
                waiters.events.discard(event)
                latest = waiters.last
                if latest is None or latest == current:
                    if anyio.current_time() >= deadline:
                        return
                    continue
                current = latest
                yield current
        finally:
            waiters.followers -= 1
            if waiters.followers == 0 and self._watched.get(task_id) is waiters:
                del self._watched[task_id]

    async def _read_one(self, task_id: str, waiters: _Waiters) -> TaskSnapshot | None:
        if waiters.last is None:
            found = await self._read([task_id])
            waiters.last = found.get(task_id)
        return waiters.last

    async def _read(self, task_ids: list[str]) -> dict[str, TaskSnapshot]:
        self.reads += 1
        if self._run_sync is not None:
            return self._run_sync(self.ledger.snapshots, task_ids)  # type: ignore[return-value]
        return await anyio.to_thread.run_sync(self.ledger.snapshots, task_ids)

    def _ensure_loop(self) -> None:
        """Start the shared read loop (a task of its own on the running event loop, not bound
        to the waiter that happened to start it); it ends when nobody waits."""
        if self._loop_running:
            return
        self._loop_running = True
        task = asyncio.get_running_loop().create_task(self._loop())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _loop(self) -> None:
        try:
            if self.changes is None:
                while self._watched:
                    await anyio.sleep(self.interval)
                    await self._refresh(list(self._watched))
            else:
                await self._follow_feed(self.changes)
        finally:
            self._loop_running = False
            if self._watched:  # a waiter arrived while the loop was winding down
                self._ensure_loop()

    async def _follow_feed(self, changes: ChangeSource) -> None:
        """Read what the feed names (batched), and everything once per fallback interval."""
        pending: set[str] = set()
        wake = [anyio.Event()]

        async def listen() -> None:
            async for task_id in changes.listen():
                if task_id is None:  # (re)subscribed: whatever changed meanwhile is unknown
                    pending.update(self._watched)
                elif task_id in self._watched:
                    pending.add(task_id)
                else:
                    continue
                wake[0].set()

        async with anyio.create_task_group() as group:
            group.start_soon(listen)
            idle_until: float | None = None
            while True:
                # keep the subscription a while after the last waiter left (waits come in
                # bursts; a new subscription costs a connection)
                now = anyio.current_time()
                if self._watched:
                    idle_until = None
                elif idle_until is None:
                    idle_until = now + self.linger_seconds
                elif now >= idle_until:
                    break
                timeout = self.fallback_interval if idle_until is None \
                    else min(self.fallback_interval, idle_until - now)
                with anyio.move_on_after(timeout) as quiet:
                    await wake[0].wait()
                    await anyio.sleep(self.batch_seconds)  # let a burst of changes gather
                wake[0] = anyio.Event()
                ids = list(self._watched) if quiet.cancelled_caught else \
                    [i for i in pending if i in self._watched]
                pending.clear()
                if ids:
                    await self._refresh(ids)
            group.cancel_scope.cancel()

    async def _refresh(self, ids: list[str]) -> None:
        """Read ``ids`` in one query and wake the waiters of those that changed."""
        if not ids:
            return
        try:
            found = await self._read(ids)
        except Exception as exc:  # the ledger blinked: waiters keep waiting
            log.warning("task watcher: ledger read failed (%s)", type(exc).__name__)
            return
        for task_id in ids:
            waiters = self._watched.get(task_id)
            if waiters is None:
                continue
            snapshot = found.get(task_id)
            if snapshot is not None and snapshot != waiters.last:
                waiters.last = snapshot
                for event in list(waiters.events):
                    event.set()


#: the running read loops (asyncio keeps only weak references to tasks)
_background: set[asyncio.Task[None]] = set()


class WaitSlots:
    """How many waits each user may hold open at once in this process: MCP calls inside the
    wait tool or a typed tool, and the console's live-update streams (each holds memory in
    the server: about 90 KB for an MCP call).  ``per_user`` 0 means no limit.

    Sessions are capped per user, but one session may carry any number of calls (and one
    browser any number of streams): without this, one user could open waits until the
    server runs out of memory.
    """

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._open: dict[str, int] = {}

    def full(self, user: str) -> bool:
        """True when ``user`` holds every slot they may (a new wait would be refused)."""
        return bool(self.per_user) and self._open.get(user, 0) >= self.per_user

    @contextlib.asynccontextmanager
    async def hold(self, user: str) -> AsyncIterator[None]:
        """A slot for one waiting call of ``user``; RateLimited when they have none left."""
        held = self._open.get(user, 0)
        if self.per_user and held >= self.per_user:
            raise RateLimited(
                f"too many waits at once: {held} calls of this user are already waiting "
                f"(at most {self.per_user}, TASKBROKER_MAX_WAITS_PER_USER); wait for one to "
                "end, or poll the task's status", limit=f"{self.per_user} open waits",
                retry_after=1.0)
        self._open[user] = held + 1
        try:
            yield
        finally:
            left = self._open[user] - 1
            if left:
                self._open[user] = left
            else:
                del self._open[user]
