"""The Broker port's contract: one suite, run against every adapter.

Adapters (the ``subject`` fixture's params): :class:`StubBroker` (a message is deliverable when
it is in ``.pending``), :class:`CeleryBroker` on the session's private redis-server (a database
of its own, so no worker of another test consumes), and :class:`CeleryBroker` on the embedded
mode's filesystem transport.  Deliverability of a Celery message is proven by consuming the
raw message with kombu from the same app's connection, as a worker would receive it (task id
from the protocol-2 headers, kwargs from the JSON body) -- no worker is started.

"celery-redis-on-loop" is the same CeleryBroker publishing as an MCP server's start does: on
an event loop (:func:`~taskbroker.core.loop_bridge.run_on_loop`), the message Celery's own
(captured) for a type's first task and made from it for the next ones, the LPUSH awaited
with redis.asyncio.

Every adapter also has a "down" twin: the stub with ``unavailable`` set, a CeleryBroker on a
port nothing listens on (short TASKBROKER_BROKER_TIMEOUT), and the filesystem transport whose
broker directory went away.  ``KNOWN_BREAKS`` lists the clauses an adapter breaks today
(strict expected failures; see ``conftest.py``).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

import anyio
import pytest
from celery import Celery

from taskbroker.adapters.celery.app import make_celery_app
from taskbroker.adapters.celery.broker import CeleryBroker
from taskbroker.adapters.memory import StubBroker
from taskbroker.core.contract.tasktype import NoParams, TaskType
from taskbroker.core.loop_bridge import close_loop_locals, run_on_loop
from taskbroker.core.ports import Broker, Unavailable
from taskbroker.core.settings import Settings
from tests.support.procs import Redis, free_port

#: every adapter of the port; a new one adds its name here and a branch in ``_open``
ADAPTERS = ("stub", "celery-redis", "celery-redis-on-loop", "celery-filesystem")

#: (test, adapter) -> why the adapter breaks that clause today (strict xfail, see conftest)
KNOWN_BREAKS: dict[tuple[str, str], str] = {}

#: a Redis database no other test's worker consumes from
REDIS_DB = 12
#: seconds a down Celery broker may take per attempt (TASKBROKER_BROKER_TIMEOUT)
DOWN_TIMEOUT = 0.5


@dataclass(frozen=True)
class Delivered:
    """A message as a worker would receive it."""

    task: str
    task_id: str
    queue: str
    params: dict[str, Any]
    owner: str
    roles: frozenset[str]
    priority: int | None
    headers: dict[str, Any]


@dataclass
class BrokerUnderTest:
    """One adapter: its broker, how a worker receives from it, and a broker of its kind that
    cannot reach its service."""

    kind: str
    broker: Broker
    receive: Callable[[str, float], Delivered | None]
    task_name: Callable[[TaskType], str]
    make_down: Callable[[], Broker]
    closers: list[Callable[[], None]] = field(default_factory=list)


def task_type(queue: str | None = None) -> TaskType:
    """A task type on a queue of its own."""
    name = f"contract_{uuid.uuid4().hex[:8]}"
    return TaskType(name=name, description="Contract test type.", run=lambda p, c: {},
                    params=NoParams, queue=queue or f"q-{name}")


# --- the adapters ----------------------------------------------------------------------------


def _stub() -> BrokerUnderTest:
    broker = StubBroker()
    received: set[int] = set()

    def receive(queue: str, timeout: float) -> Delivered | None:
        for n, m in enumerate(broker.pending):
            if m.queue == queue and n not in received:
                received.add(n)
                return Delivered(m.task_type, m.task_id, m.queue, m.params, m.owner, m.roles,
                                 m.priority, m.headers)
        return None

    def make_down() -> Broker:
        down = StubBroker()
        down.unavailable = True
        return down

    return BrokerUnderTest("stub", broker, receive, lambda t: t.name, make_down)


def _receive_raw(app: Celery, queue: str, timeout: float) -> Delivered | None:
    """Consume one raw message from ``queue`` with kombu, as a worker would."""
    with app.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        try:
            message = simple.get(timeout=timeout)
        except Empty:
            return None
        finally:
            simple.close()
    assert message.content_type == "application/json"
    args, kwargs, _embed = json.loads(message.body)
    assert args == []
    return Delivered(
        task=message.headers["task"], task_id=message.headers["id"],
        queue=message.delivery_info["routing_key"], params=kwargs["params"],
        owner=kwargs["owner"], roles=frozenset(kwargs["roles"]),
        priority=message.properties.get("priority"), headers=dict(message.headers),
    )


class OnLoopBroker(CeleryBroker):
    """A CeleryBroker whose every publish runs on an event loop, as an MCP server's start."""

    awaited = 0  # LPUSHes awaited on the loop

    def _send_on_loop(self, *args: Any) -> int:
        pushed = super()._send_on_loop(*args)
        self.awaited += pushed
        return pushed

    def publish(self, task_type: TaskType, *args: Any, **kwargs: Any) -> None:
        assert self.loop_io
        self._declared.add(task_type.queue)  # the awaited LPUSH even for a queue's first message

        async def main() -> None:
            try:
                await run_on_loop(super(OnLoopBroker, self).publish, task_type, *args, **kwargs)
            finally:
                await close_loop_locals()

        before = self.awaited
        anyio.run(main)
        assert self.awaited == before + 1  # not kombu's own blocking LPUSH


def _celery(kind: str, settings: Settings, make_down: Callable[[], Broker],
            broker: type[CeleryBroker] = CeleryBroker) -> BrokerUnderTest:
    app = make_celery_app(settings)
    return BrokerUnderTest(kind, broker(app), lambda q, t: _receive_raw(app, q, t),
                           lambda t: t.celery_name, make_down, [app.close])


def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> BrokerUnderTest:
    if kind == "stub":
        return _stub()
    if kind in ("celery-redis", "celery-redis-on-loop"):
        redis: Redis = request.getfixturevalue("redis_server")
        broker = OnLoopBroker if kind.endswith("on-loop") else CeleryBroker

        def redis_down() -> Broker:
            url = f"redis://127.0.0.1:{free_port()}/{REDIS_DB}"
            app = make_celery_app(Settings(redis_url=url, data_dir=tmp_path / "down",
                                           broker_timeout=DOWN_TIMEOUT))
            under_test.closers.append(app.close)
            return broker(app)

        settings = Settings(redis_url=f"redis://127.0.0.1:{redis.port}/{REDIS_DB}",
                            data_dir=tmp_path, broker_timeout=2.0)
        under_test = _celery(kind, settings, redis_down, broker)
        return under_test
    if kind == "celery-filesystem":
        def filesystem_down() -> Broker:
            down_dir = tmp_path / "down"
            app = make_celery_app(Settings(data_dir=down_dir, redis_url=None,
                                           broker_timeout=DOWN_TIMEOUT))
            under_test.closers.append(app.close)
            shutil.rmtree(down_dir / "broker")  # the volume holding the queue went away
            return CeleryBroker(app)

        under_test = _celery(kind, Settings(data_dir=tmp_path, redis_url=None), filesystem_down)
        return under_test
    raise AssertionError(f"no such adapter {kind!r}")


@pytest.fixture(params=ADAPTERS)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BrokerUnderTest]:
    """Each adapter, up; its Celery apps are closed afterwards."""
    under_test = _open(request.param, request, tmp_path)
    try:
        yield under_test
    finally:
        for close in under_test.closers:
            close()


@pytest.fixture
def down(subject: BrokerUnderTest) -> Broker:
    """A broker of the subject's kind whose service cannot be reached."""
    return subject.make_down()


# --- publishing ------------------------------------------------------------------------------


def test_a_published_task_is_delivered_on_its_type_queue(subject: BrokerUnderTest) -> None:
    first, second = task_type(), task_type()
    first_id, second_id = str(uuid.uuid4()), str(uuid.uuid4())
    subject.broker.publish(first, first_id, {"n": 8, "nested": {"k": ["a", "b"]}},
                           owner="alice", roles=frozenset({"analyst", "admin"}))
    subject.broker.publish(second, second_id, {}, owner="bob", roles=frozenset())

    def essentials(got: Delivered | None) -> tuple[Any, ...] | None:
        return None if got is None else (got.task, got.task_id, got.queue, got.params,
                                         got.owner, got.roles)

    # each message waits on its own type's queue (received in the other order), once
    assert essentials(subject.receive(second.queue, 5)) == (
        subject.task_name(second), second_id, second.queue, {}, "bob", frozenset())
    assert essentials(subject.receive(first.queue, 5)) == (
        subject.task_name(first), first_id, first.queue, {"n": 8, "nested": {"k": ["a", "b"]}},
        "alice", frozenset({"analyst", "admin"}))
    assert subject.receive(first.queue, 0.2) is None
    assert subject.receive(second.queue, 0.2) is None


def test_priority_and_headers_travel_with_the_message(subject: BrokerUnderTest) -> None:
    kind, task_id = task_type(), str(uuid.uuid4())
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    subject.broker.publish(kind, task_id, {"x": 1}, owner="alice", roles=frozenset(),
                           priority=7, headers={"sent_at": 1234.5, "traceparent": traceparent})
    got = subject.receive(kind.queue, 5)
    assert got is not None
    assert (got.task_id, got.priority) == (task_id, 7)
    assert got.headers["sent_at"] == 1234.5
    assert got.headers["traceparent"] == traceparent


def test_a_message_is_a_snapshot_taken_at_publish(subject: BrokerUnderTest) -> None:
    kind, task_id = task_type(), str(uuid.uuid4())
    params: dict[str, Any] = {"items": [1, 2]}
    headers: dict[str, Any] = {"sent_at": 1.0, "tags": ["a"]}
    subject.broker.publish(kind, task_id, params, owner="alice", roles=frozenset(),
                           headers=headers)
    params["items"].append(3)
    headers["tags"].append("b")
    got = subject.receive(kind.queue, 5)
    assert got is not None
    assert got.params == {"items": [1, 2]}
    assert got.headers["tags"] == ["a"]


def test_publish_raises_unavailable_when_the_broker_is_down(down: Broker) -> None:
    with pytest.raises(Unavailable) as raised:
        down.publish(task_type(), str(uuid.uuid4()), {"x": 1}, owner="alice",
                     roles=frozenset())
    assert isinstance(raised.value, ConnectionError)
    text = str(raised.value)
    assert text.startswith("broker unavailable")
    assert "redis://" not in text and "127.0.0.1" not in text


# --- revoking and probing --------------------------------------------------------------------


def test_revoke_never_raises(subject: BrokerUnderTest, down: Broker) -> None:
    kind, task_id = task_type(), str(uuid.uuid4())
    subject.broker.publish(kind, task_id, {}, owner="alice", roles=frozenset())
    assert subject.broker.revoke(task_id) is None
    assert subject.broker.revoke(str(uuid.uuid4()), terminate=True) is None  # unknown id
    assert down.revoke(task_id, terminate=True) is None  # a lost broadcast is logged


def test_ping_passes_when_the_broker_is_up(subject: BrokerUnderTest) -> None:
    assert subject.broker.ping() is None


def test_ping_raises_unavailable_when_the_broker_is_down(subject: BrokerUnderTest,
                                                         down: Broker) -> None:
    with pytest.raises(Unavailable) as raised:
        down.ping()
    assert isinstance(raised.value, ConnectionError)
    assert "127.0.0.1" not in str(raised.value)


# --- the broker's inventory (lost-message recovery) --------------------------------------------


def test_message_ids_lists_what_the_broker_holds(subject: BrokerUnderTest) -> None:
    mine, other = task_type(), task_type()
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for task_id, priority in zip(ids, (None, 3, 9), strict=True):  # priority sub-queues too
        subject.broker.publish(mine, task_id, {}, owner="alice", roles=frozenset(),
                               priority=priority)
    elsewhere = str(uuid.uuid4())
    subject.broker.publish(other, elsewhere, {}, owner="alice", roles=frozenset())
    held = subject.broker.message_ids([mine.queue])
    assert held is not None and set(ids) <= held and elsewhere not in held
    assert subject.broker.message_ids([f"q-nothing-{uuid.uuid4().hex[:6]}"]) == set()
    both = subject.broker.message_ids([mine.queue, other.queue])
    assert both is not None and set(ids) | {elsewhere} <= both


def test_a_delivered_unacknowledged_message_is_still_held(redis_server: Redis) -> None:
    """Redis keeps a message a worker took (and has not acknowledged) in its unacked hash:
    the inventory must count it, or a busy worker's prefetched task would look lost."""
    settings = Settings(redis_url=redis_server.url.rsplit("/", 1)[0] + "/13",
                        broker_timeout=2.0)
    app = make_celery_app(settings)
    try:
        broker = CeleryBroker(app)
        kind = task_type()
        task_id = str(uuid.uuid4())
        broker.publish(kind, task_id, {}, owner="alice", roles=frozenset())
        with app.connection_for_read() as conn:
            taken = conn.SimpleQueue(kind.queue, no_ack=False)
            try:
                message = taken.get(timeout=5)
                assert message.headers["id"] == task_id
                assert task_id in (broker.message_ids([kind.queue]) or set())
                message.ack()
            finally:
                taken.close()
        assert task_id not in (broker.message_ids([kind.queue]) or set())
    finally:
        app.close()
