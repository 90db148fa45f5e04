"""Task-change notifications over Redis pub/sub: how servers learn that a task moved without
polling the ledger for it.

Every process that writes task state (workers, servers canceling, reapers) publishes the
task's id on one channel after the write (:class:`ChangePublisher`, set as the ledger's
``on_change``).  Each server process holds at most one subscription (:class:`ChangeFeed`),
and only while some client waits for a task; its :class:`~taskbroker.core.waiting.TaskWatcher`
then reads just the tasks that changed.  The ledger stays the truth: a notification carries
only an id, and a lost one is caught by the watcher's slow fallback read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import anyio
import redis
import redis.asyncio as aioredis

__all__ = ["ChangeFeed", "ChangePublisher", "channel_for"]

log = logging.getLogger("taskbroker.changes")

#: seconds between reconnection attempts of a subscription that lost Redis
RECONNECT_SECONDS = 1.0


def channel_for(url: str) -> str:
    """The channel of ``url``'s deployment (pub/sub ignores database numbers: the number is
    part of the name, so deployments on one Redis server with their own databases stay
    apart)."""
    path = urlsplit(url).path.strip("/") or "0"
    return f"taskbroker:task-changes:{path}"


class ChangePublisher:
    """Publishes task ids (the ledger's ``on_change``); best effort, never blocks for long.

    Args:
        url: the Redis URL (the broker's).
        timeout: seconds a publish may take before it is given up.
    """

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        self.channel = channel_for(url)
        self._client = redis.Redis.from_url(url, socket_timeout=timeout,
                                            socket_connect_timeout=timeout)
        self._quiet_until = 0.0

    def __call__(self, task_id: str) -> None:
        """Publish ``task_id``; a failure is logged (at most once a minute) and dropped."""
        try:
            self._client.publish(self.channel, task_id)
        except redis.RedisError as exc:
            now = time.monotonic()
            if now >= self._quiet_until:
                self._quiet_until = now + 60
                log.warning("task-change notification not published (%s); waiting clients "
                            "fall back to slower reads", type(exc).__name__)


class ChangeFeed:
    """One subscription to the change channel, as an async stream of task ids.

    :meth:`listen` yields ``None`` each time the subscription is (re)established, so a caller
    can read everything it watches once (changes made while it was not subscribed), then the
    id of every task that changes.  It reconnects after losing Redis until cancelled.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.channel = channel_for(url)

    async def listen(self) -> AsyncIterator[str | None]:
        """``None`` at every (re)subscription, then task ids as they are published."""
        while True:
            client = aioredis.Redis.from_url(self.url)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                yield None
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        yield data.decode() if isinstance(data, bytes) else str(data)
            except (redis.RedisError, OSError) as exc:
                log.warning("task-change subscription lost (%s); reconnecting",
                            type(exc).__name__)
            finally:
                with anyio.CancelScope(shield=True):
                    try:
                        await pubsub.aclose()
                        await client.aclose()
                    except Exception:  # the connection is gone already
                        pass
            await anyio.sleep(RECONNECT_SECONDS)
