"""A task message made from a template is the message Celery makes, field by field (the
oracle is Celery itself: its message for the same task, captured before kombu pushes it)."""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskbroker.adapters.celery.app import make_celery_app
from taskbroker.adapters.celery.broker import CeleryBroker, _task_kwargs
from taskbroker.adapters.celery.message_template import MessageTemplate
from taskbroker.adapters.celery.redis_transport import CAPTURED
from taskbroker.core.contract.tasktype import NoParams, TaskType
from taskbroker.core.settings import Settings
from tests.support.procs import Redis

REDIS_DB = 13


@pytest.fixture
def broker(redis_server: Redis, tmp_path: Path) -> Iterator[CeleryBroker]:
    app = make_celery_app(Settings(redis_url=f"redis://127.0.0.1:{redis_server.port}/{REDIS_DB}",
                                   data_dir=tmp_path))
    try:
        yield CeleryBroker(app)
    finally:
        app.close()


def _celery_message(broker: CeleryBroker, task_type: TaskType, task_id: str,
                    params: dict[str, Any], owner: str, roles: frozenset[str],
                    priority: int | None, headers: dict[str, Any]) -> tuple[str, str]:
    pushes: list[tuple[str, str]] = []
    token = CAPTURED.set(pushes)
    try:
        broker._send(task_type, task_id, params, owner, roles, priority, headers)
    finally:
        CAPTURED.reset(token)
    assert len(pushes) == 1
    return pushes[0]


def _comparable(message: str) -> dict[str, Any]:
    parsed = json.loads(message)
    parsed["body"] = json.loads(base64.b64decode(parsed["body"]))
    tag = parsed["properties"].pop("delivery_tag")
    assert uuid.UUID(tag).version == 4  # a fresh tag per message
    return parsed


def _random_task(rng: random.Random) -> tuple[str, dict[str, Any], str, frozenset[str],
                                               dict[str, Any]]:
    word = lambda: "".join(rng.choices(string.ascii_letters + "é ✓", k=rng.randint(0, 12)))  # noqa: E731
    params = {word(): rng.choice([rng.randint(-5, 10**6), word(), None, [1, word()],
                                  {"n": rng.random()}]) for _ in range(rng.randint(0, 5))}
    headers = {k: word() for k in rng.sample(["traceparent", "tracestate", "x-published"],
                                             rng.randint(0, 3))}
    roles = frozenset(rng.sample(["admin", "analyst", "ops"], rng.randint(0, 3)))
    return str(uuid.uuid4()), params, f"user-{word()}", roles, headers


@pytest.mark.parametrize("priority", [None, 0, 7])
def test_a_filled_template_is_the_message_celery_makes(broker: CeleryBroker,
                                                       priority: int | None) -> None:
    rng = random.Random(1000 + (priority or 0))
    task_type = TaskType(name=f"tmpl_{uuid.uuid4().hex[:6]}", description="Template test.",
                         run=lambda p, c: {}, params=NoParams)
    first = _random_task(rng)
    key, made = _celery_message(broker, task_type, first[0], first[1], first[2], first[3],
                                priority, {"traceparent": "00-aa", "x-published": 1.5})
    template = MessageTemplate(key, made, custom_headers=["traceparent", "x-published"])
    for _ in range(25):
        task_id, params, owner, roles, headers = _random_task(rng)
        want_key, want = _celery_message(broker, task_type, task_id, params, owner, roles,
                                         priority, headers)
        kwargs, kwargsrepr = _task_kwargs(params, owner, roles)
        got = template.fill(task_id, kwargs, kwargsrepr, headers)
        assert template.key == want_key
        assert _comparable(got) == _comparable(want)


def test_a_message_with_positional_arguments_is_no_template() -> None:
    body = base64.b64encode(json.dumps([[1], {}, {}]).encode()).decode()
    message = json.dumps({"body": body, "content-type": "application/json",
                          "headers": {"task": "t"}, "properties": {"body_encoding": "base64"}})
    with pytest.raises(ValueError, match="positional"):
        MessageTemplate("q", message, custom_headers=())
