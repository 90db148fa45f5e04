"""Waiting for tasks without polling the ledger per waiter.

One :class:`TaskWatcher` per process (per event loop) serves every client that waits for a
task: the MCP wait tool, a typed tool call waiting for its task, the console's live list.  A
single background loop reads the snapshots of *all* watched tasks in one query every
``interval`` seconds (:meth:`Ledger.snapshots`) and wakes the waiters of the tasks that
changed; with nobody waiting it reads nothing.  A thousand waiters cost one query per interval,
not a thousand.

Waiters are coroutines (anyio): a waiting client holds no thread.  :meth:`TaskWatcher.follow`
yields a task's snapshot whenever it changes, until it is terminal or the deadline passes.
Who may watch what is not decided here: callers check the task through the service first
(identity, rate limits, ownership) and only then follow its id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio

from taskbroker.core.ports import TERMINAL, Ledger, TaskSnapshot

__all__ = ["TaskWatcher"]

log = logging.getLogger("taskbroker.waiting")


@dataclass
class _Waiters:
    """The waiters of one task and the last snapshot they were told about."""

    events: set[anyio.Event] = field(default_factory=set)
    last: TaskSnapshot | None = None
    followers: int = 0


class TaskWatcher:
    """Wakes coroutines waiting for task changes; one ledger query per interval for all.

    Args:
        ledger: where snapshots are read.
        interval: seconds between reads while somebody waits.
        run_sync: how the blocking ledger read leaves the event loop (default: a worker
            thread per read).
    """

    def __init__(self, ledger: Ledger, *, interval: float = 0.5,
                 run_sync: Callable[..., object] | None = None) -> None:
        self.ledger = ledger
        self.interval = interval
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
            while self._watched:
                await anyio.sleep(self.interval)
                ids = list(self._watched)
                if not ids:
                    continue
                try:
                    found = await self._read(ids)
                except Exception as exc:  # the ledger blinked: waiters keep waiting
                    log.warning("task watcher: ledger read failed (%s)", type(exc).__name__)
                    continue
                for task_id in ids:
                    waiters = self._watched.get(task_id)
                    if waiters is None:
                        continue
                    snapshot = found.get(task_id)
                    if snapshot is not None and snapshot != waiters.last:
                        waiters.last = snapshot
                        for event in list(waiters.events):
                            event.set()
        finally:
            self._loop_running = False


#: the running read loops (asyncio keeps only weak references to tasks)
_background: set[asyncio.Task[None]] = set()
