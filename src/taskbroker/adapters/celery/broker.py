"""The :class:`~taskbroker.core.ports.Broker` over a Celery app (Redis, or the filesystem
transport in embedded mode); kombu's errors become :class:`~taskbroker.core.ports.Unavailable`.

On the event loop (:func:`~taskbroker.core.loop_bridge.run_on_loop`) a publish over Redis
awaits its LPUSH with redis.asyncio; its message is Celery's (the first of a task type and
priority, captured before kombu pushes it) or made from that one (:mod:`.message_template`).
Any other transport, and the first publish to each queue (kombu declares the queue then, a
blocking round trip), run in a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from taskbroker.adapters.celery.app import REDIS_TRANSPORT
from taskbroker.adapters.celery.inventory import queued_task_ids
from taskbroker.adapters.celery.message_template import MessageTemplate
from taskbroker.adapters.celery.redis_transport import CAPTURED
from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.loop_bridge import LoopLocal, await_io, off_loop, on_loop
from taskbroker.core.ports import Broker, Unavailable

__all__ = ["CeleryBroker"]

log = logging.getLogger("taskbroker.broker")


class CeleryBroker(Broker):
    """:class:`Broker` over a Celery app; publishing reuses a pooled producer connection."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        #: redis.asyncio clients for publishing on the event loop (None: not over Redis)
        self.loop_redis: LoopLocal[Any] | None = _loop_redis(app)
        self._declared: set[str] = set()  # queues a publish has reached from this process
        self.loop_io = self.loop_redis is not None
        #: (task type, priority) -> the message made last for it on the loop
        self._templates: dict[tuple[str, int | None], MessageTemplate] = {}

    def publish(self, task_type: TaskType, task_id: str, params: Mapping[str, Any], *,
                owner: str, roles: frozenset[str], priority: int | None = None,
                headers: Mapping[str, Any] | None = None) -> None:
        args = (task_type, task_id, params, owner, roles, priority, headers)
        if not on_loop():
            self._send(*args)
        elif self.loop_redis is None or task_type.queue not in self._declared:
            off_loop(self._send, *args)
        else:
            self._send_on_loop(*args)
        self._declared.add(task_type.queue)

    def _send_on_loop(self, task_type: TaskType, task_id: str, params: Mapping[str, Any],
                      owner: str, roles: frozenset[str], priority: int | None,
                      headers: Mapping[str, Any] | None) -> int:
        """Publish with the LPUSH awaited on the loop; returns how many were awaited.  The
        message comes from the type's template, or from Celery (captured), which then makes
        the template."""
        import redis.exceptions

        assert self.loop_redis is not None
        template = self._templates.get((task_type.name, priority))
        if template is not None:
            kwargs, kwargsrepr = _task_kwargs(params, owner, roles)
            pushes = [(template.key, template.fill(task_id, kwargs, kwargsrepr, headers or {}))]
        else:
            pushes = []
            token = CAPTURED.set(pushes)
            try:
                self._send(task_type, task_id, params, owner, roles, priority, headers)
            finally:
                CAPTURED.reset(token)
            if len(pushes) == 1 and len(self._templates) < MAX_TEMPLATES:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self._templates[(task_type.name, priority)] = MessageTemplate(
                        *pushes[0], custom_headers=headers or {})
        try:
            for key, message in pushes:
                await_io(self.loop_redis.get().lpush(key, message))
            return len(pushes)
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            raise Unavailable(
                f"broker unavailable: could not queue the task ({type(exc).__name__})"
            ) from None

    def _send(self, task_type: TaskType, task_id: str, params: Mapping[str, Any],
              owner: str, roles: frozenset[str], priority: int | None,
              headers: Mapping[str, Any] | None) -> None:
        kwargs, kwargsrepr = _task_kwargs(params, owner, roles)
        try:
            self.app.send_task(
                task_type.celery_name,
                kwargs=kwargs,
                # what Celery logs and shows (events, flower) instead of the arguments:
                # params may hold personal data, so only their keys
                argsrepr="()",
                kwargsrepr=kwargsrepr,
                task_id=task_id,
                queue=task_type.queue,
                priority=priority,
                headers=dict(headers or {}),
                retry=False,
                # The ledger holds results. Without this, Celery's Redis result backend would
                # make this process subscribe to a result channel for every task it sends and
                # never read them (an ever-growing subscription set and pubsub buffer), and
                # the worker would write every state twice.
                ignore_result=True,
            )
        except (OperationalError, OSError, TimeoutError) as exc:
            raise Unavailable(
                f"broker unavailable: could not queue the task ({type(exc).__name__})"
            ) from None

    def revoke(self, task_id: str, *, terminate: bool = False) -> None:
        try:
            self.app.control.revoke(task_id, terminate=terminate, signal="SIGTERM")
        except (OperationalError, OSError, TimeoutError) as exc:
            # The ledger already says revoked and the worker checks it before running,
            # so a lost broadcast cannot make a revoked task run.
            log.warning("revoke broadcast for %s failed: %s", task_id, type(exc).__name__)

    def message_ids(self, queues: Iterable[str]) -> set[str] | None:
        try:
            return queued_task_ids(self.app, queues)
        except Exception as exc:  # kombu, redis-py or the filesystem: the broker is away
            raise Unavailable(f"broker unavailable ({type(exc).__name__})") from None

    def ping(self) -> None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(
                    max_retries=1, timeout=self.app.conf.broker_connection_timeout
                )
                if conn.transport.driver_type == "filesystem":
                    # opening a filesystem "connection" touches no file: check the folders
                    _check_folders(conn.default_channel)
        except Exception as exc:
            raise Unavailable(f"broker unavailable ({type(exc).__name__})") from None


def _check_folders(channel: Any) -> None:
    """Raise OSError unless the filesystem transport's folders exist and take files."""
    for folder in {channel.data_folder_in, channel.data_folder_out}:
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise OSError(f"broker folder {folder} is missing or not writable")


#: how many (task type, priority) message templates a broker keeps at most
MAX_TEMPLATES = 1000


def _task_kwargs(params: Mapping[str, Any], owner: str, roles: frozenset[str]
                 ) -> tuple[dict[str, Any], str]:
    """A task message's keyword arguments and what Celery shows of them (params may hold
    personal data: only their keys)."""
    kwargsrepr = f"{{'params': <keys {sorted(params)}>, 'owner': {owner!r}}}"[:500]
    return {"params": dict(params), "owner": owner, "roles": sorted(roles)}, kwargsrepr


def _loop_redis(app: Celery) -> LoopLocal[Any] | None:
    """redis.asyncio clients (one per event loop) on the broker's Redis, with the transport's
    timeouts and one retry; None unless the app publishes through our Redis transport
    without a key prefix."""
    options = app.conf.broker_transport_options or {}
    if app.conf.broker_transport != REDIS_TRANSPORT or options.get("global_keyprefix"):
        return None
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    url, timeout = app.conf.broker_url, options.get("socket_timeout")

    def make() -> Any:
        return redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=options.get(
                "socket_connect_timeout", timeout), retry=Retry(NoBackoff(), 1))

    async def close(client: Any) -> None:
        await client.aclose()

    return LoopLocal(make, close)
