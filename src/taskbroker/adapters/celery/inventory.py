"""Which task messages a Celery broker holds right now, read from the transport's own storage.

For lost-message recovery (:mod:`taskbroker.core.reaper`): a queued ledger record whose id is
in none of these places lost its message.

* Redis (kombu's transport): each queue is a list (and one list per priority step, named
  ``<queue>\\x06\\x16<step>``); messages delivered to a worker and not acknowledged yet (running,
  prefetched, or waiting for their ETA) are in the ``unacked`` hash until acknowledged.
* Filesystem (embedded mode): one file per queued message in the queue folder; a message a
  worker took is no longer there (this transport keeps no unacked copy), so a prefetched
  message can look lost and be published again, which the ledger's conditional start makes
  harmless.

Messages are read in batches and only their ``headers.id`` is kept.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from celery import Celery

__all__ = ["queued_task_ids"]

log = logging.getLogger("taskbroker.broker")

_BATCH = 1000


def queued_task_ids(app: Celery, queues: Iterable[str]) -> set[str] | None:
    """Ids of the task messages on ``queues`` (queued or delivered and unacknowledged), or None
    when this transport cannot tell."""
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        driver = conn.transport.driver_type
        if driver == "redis":
            return set(_redis_ids(channel, list(queues)))
        if driver == "filesystem":
            return set(_filesystem_ids(channel, list(queues)))
    return None


def _message_id(raw: Any) -> str | None:
    try:
        message = json.loads(raw)
        if isinstance(message, list):  # an unacked entry: [message, exchange, routing key]
            message = message[0]
        task_id = message["headers"]["id"]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return task_id if isinstance(task_id, str) else None


def _redis_ids(channel: Any, queues: list[str]) -> Iterator[str]:
    client = channel.client
    for queue in queues:
        for step in channel.priority_steps:
            key = channel._q_for_pri(queue, step)
            start = 0
            while True:
                batch = client.lrange(key, start, start + _BATCH - 1)
                for raw in batch:
                    if (task_id := _message_id(raw)) is not None:
                        yield task_id
                if len(batch) < _BATCH:
                    break
                start += _BATCH
    cursor = 0
    while True:
        cursor, entries = client.hscan(channel.unacked_key, cursor, count=_BATCH)
        for raw in entries.values():
            if (task_id := _message_id(raw)) is not None:
                yield task_id
        if cursor == 0:
            break


def _filesystem_ids(channel: Any, queues: list[str]) -> Iterator[str]:
    folder = channel.data_folder_in
    wanted = {f"{queue}.msg" for queue in queues}
    for name in os.listdir(folder):
        if name.partition(".")[2] not in wanted:  # "<stamp>_<uuid>.<queue>.msg"
            continue
        try:
            with open(os.path.join(folder, name), "rb") as fh:
                raw = fh.read()
        except OSError:  # taken by a worker meanwhile
            continue
        if (task_id := _message_id(raw)) is not None:
            yield task_id
