"""A stub :class:`~taskbroker.core.ports.Broker` that keeps messages in memory (dramatiq's
stub_broker tier).

Nothing runs until a test says so: :meth:`StubBroker.run_pending` delivers the queued
messages in this thread through a :class:`~taskbroker.core.runtime.Runtime`, the same code a
Celery worker runs, and returns each delivery's outcome.  Set ``unavailable`` to make
``publish`` and ``ping`` raise :class:`~taskbroker.core.ports.Unavailable`.

A message is a snapshot taken at publish time (as a serialised Celery message is): changing
the params or headers passed to ``publish`` afterwards does not change what is delivered.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskbroker.core.contract.registry import Registry
from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.ports import Broker, Unavailable
from taskbroker.core.runtime import Outcome, Runtime

__all__ = ["Message", "StubBroker"]


@dataclass(frozen=True)
class Message:
    """One published task message."""

    task_type: str
    task_id: str
    queue: str
    params: dict[str, Any]
    owner: str
    roles: frozenset[str]
    priority: int | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    retries: int = 0


class StubBroker(Broker):
    """The broker port in memory: a FIFO of messages, delivered on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Message] = deque()
        #: every message ever published, in order (for assertions)
        self.published: list[Message] = []
        #: ids revoked through :meth:`revoke`
        self.revoked: set[str] = set()
        #: when True, publish and ping raise Unavailable (an outage, for tests)
        self.unavailable = False

    def publish(self, task_type: TaskType, task_id: str, params: Mapping[str, Any], *,
                owner: str, roles: frozenset[str], priority: int | None = None,
                headers: Mapping[str, Any] | None = None) -> None:
        if self.unavailable:
            raise Unavailable("broker unavailable: could not queue the task (stub)")
        message = Message(task_type.name, task_id, task_type.queue, copy.deepcopy(dict(params)),
                          owner, frozenset(roles), priority, copy.deepcopy(dict(headers or {})))
        with self._lock:
            self._queue.append(message)
            self.published.append(message)

    def revoke(self, task_id: str, *, terminate: bool = False) -> None:
        with self._lock:
            self.revoked.add(task_id)

    def ping(self) -> None:
        if self.unavailable:
            raise Unavailable("broker unavailable (stub)")

    def message_ids(self, queues: Iterable[str]) -> set[str] | None:
        wanted = set(queues)
        with self._lock:
            return {m.task_id for m in self._queue if m.queue in wanted}

    def lose_messages(self) -> list[Message]:
        """Drop every queued message (a broker restart without persistence, for tests)."""
        with self._lock:
            lost = list(self._queue)
            self._queue.clear()
            return lost

    @property
    def pending(self) -> list[Message]:
        """Messages published and not delivered yet, oldest first."""
        with self._lock:
            return list(self._queue)

    def run_pending(self, registry: Registry, runtime: Runtime, *,
                    worker: str = "stub-worker", max_deliveries: int = 10_000
                    ) -> list[tuple[Message, Outcome]]:
        """Deliver queued messages in this thread until none is left; retries go to the back.

        Returns every delivery with its outcome, in delivery order.
        """
        done: list[tuple[Message, Outcome]] = []
        while len(done) < max_deliveries:
            with self._lock:
                if not self._queue:
                    break
                message = self._queue.popleft()
            task_type = registry.get(message.task_type)
            outcome = runtime.execute(task_type, message.task_id, message.params,
                                      owner=message.owner, roles=message.roles, worker=worker,
                                      retries=message.retries)
            done.append((message, outcome))
            if outcome.status == "retry":
                with self._lock:
                    self._queue.append(dataclasses.replace(message,
                                                           retries=message.retries + 1))
        return done
