"""Kombu's Redis transport with one Redis client per channel (the distributed broker).

Kombu's Redis channel builds a new ``redis.Redis`` client (over the channel's shared
connection pool) for every message it publishes; building one fills its table of ~160
response callbacks, about 70 microseconds of CPU, which was a tenth of a start's publish.
Here the channel builds that client once and reuses it: the client holds no connection of
its own (each command borrows one from the pool), and a redis-py client is thread-safe.

A publish on the event loop (:meth:`~taskbroker.adapters.celery.broker.CeleryBroker.publish`
inside :func:`~taskbroker.core.loop_bridge.run_on_loop`) lets Celery and kombu build the
message as always, and the channel hands over the LPUSH it would send (:data:`CAPTURED`),
which the broker then awaits on the loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from kombu.transport import redis
from kombu.utils.json import dumps

__all__ = ["CAPTURED", "Channel", "Transport"]

#: where a publish on the event loop collects the (key, message) of its LPUSH instead of
#: sending it; None: send as usual
CAPTURED: ContextVar[list[tuple[str, str]] | None] = ContextVar("taskbroker_captured_pushes",
                                                                 default=None)


class Channel(redis.Channel):
    """Redis channel that reuses one client for the commands it sends outside a pipeline."""

    _shared_client: Any = None

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        """``client`` when given, else this channel's one client (built on first use)."""
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None:
            shared = self._shared_client = self._create_client()
        yield shared

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Deliver ``message`` to ``queue`` (kombu's LPUSH), or hand the LPUSH to
        :data:`CAPTURED` when a publish on the event loop collects it."""
        pushes = CAPTURED.get()
        if pushes is None or kwargs.get("_publish_batch") is not None or (
                self._expires and queue in self._expires):
            super()._put(queue, message, **kwargs)
            return
        priority = self._get_message_priority(message, reverse=False)
        pushes.append((self._q_for_pri(queue, priority), dumps(message)))

    def close(self) -> None:
        """Close the channel and forget its client (a new channel builds its own)."""
        self._shared_client = None
        super().close()


class Transport(redis.Transport):
    """Kombu's Redis transport over :class:`Channel`."""

    Channel = Channel
