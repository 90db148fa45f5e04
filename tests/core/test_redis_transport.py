"""The distributed broker's Redis transport reuses one client per channel, and loses
nothing: every message published from many threads is consumed once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from kombu import Connection

from taskbroker.adapters.celery.app import REDIS_TRANSPORT, make_celery_app
from taskbroker.adapters.celery.redis_transport import Transport
from taskbroker.core.settings import Settings
from tests.support.procs import Redis


def test_distributed_app_uses_the_transport(redis_server: Redis) -> None:
    app = make_celery_app(Settings(redis_url=redis_server.url, database_url="sqlite://"))
    assert app.conf.broker_transport == REDIS_TRANSPORT
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, Transport)


def test_one_client_per_channel(redis_server: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []
    original = redis.Redis.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    with Connection(redis_server.url, transport=Transport) as conn:
        queue = conn.SimpleQueue("tb-transport-test")
        queue.put({"n": -1})  # the channel's own setup
        monkeypatch.setattr(redis.Redis, "__init__", counting)
        for i in range(20):
            queue.put({"n": i})
        monkeypatch.undo()
        # kombu's own channel would have built one client per message (20)
        assert len(built) <= 1
        got = []
        for _ in range(21):
            message = queue.get(timeout=10)
            got.append(message.payload["n"])
            message.ack()
        queue.close()
    assert sorted(got) == list(range(-1, 20))


def test_threads_publishing_lose_nothing(redis_server: Redis) -> None:
    sent = list(range(400))
    with Connection(redis_server.url, transport=Transport) as conn:
        queue = conn.SimpleQueue("tb-transport-threads")

        def publish(part: list[int]) -> None:
            with Connection(redis_server.url, transport=Transport) as own:
                q = own.SimpleQueue("tb-transport-threads")
                for n in part:
                    q.put({"n": n})
                q.close()

        threads = [threading.Thread(target=publish, args=(sent[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        got: list[int] = []
        while len(got) < len(sent):
            message = queue.get(timeout=30)
            got.append(message.payload["n"])
            message.ack()
        for t in threads:
            t.join(30)
        queue.close()
    assert sorted(got) == sent
