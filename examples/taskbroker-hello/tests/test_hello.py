"""taskbroker-hello: the handlers in-process, then both task types on a real worker."""

from __future__ import annotations

import pytest
import taskbroker_hello

from taskbroker import TaskType
from taskbroker.testing import run_handler
from taskbroker.testing.fixtures import EmbeddedTaskbroker


def _types() -> dict[str, TaskType]:
    found: list[TaskType] = []
    taskbroker_hello.taskbroker_register_task_types(register=found.append)
    return {t.name: t for t in found}


def test_registers_two_task_types() -> None:
    types = _types()
    assert sorted(types) == ["hello_countdown", "hello_greet"]
    assert set(types["hello_countdown"].params_schema()["properties"]) == {
        "start", "step_seconds"}


def test_greet_in_process() -> None:
    result, sink = run_handler(_types()["hello_greet"], {"name": "Ada"})
    assert result == {"greeting": "Hello, Ada!"}
    assert sink.reports == []


def test_countdown_in_process_reports_every_step() -> None:
    result, sink = run_handler(_types()["hello_countdown"], {"start": 3, "step_seconds": 0.01})
    assert result == {"counted_from": 3, "message": "liftoff"}
    assert sink.reports[0] == (0, "3 to go")
    assert sink.reports[-1] == (100, "liftoff")


def test_the_worker_loaded_the_plugin(taskbroker_app: EmbeddedTaskbroker) -> None:
    assert {"hello_greet", "hello_countdown"} <= set(taskbroker_app.task_types())
    assert taskbroker_app.app.plugins.info["hello"].errors == []


def test_greet_on_a_real_worker(run_task) -> None:  # type: ignore[no-untyped-def]
    status = run_task("hello_greet", {"name": "Ada", "shout": True})
    assert status.status == "success", status.error
    assert status.result == {"greeting": "HELLO, ADA!"}


def test_countdown_on_a_real_worker(run_task) -> None:  # type: ignore[no-untyped-def]
    status = run_task("hello_countdown", {"start": 3, "step_seconds": 0.1})
    assert status.status == "success", status.error
    assert status.result == {"counted_from": 3, "message": "liftoff"}
    assert status.progress == 100 and status.message == "finished: success"


def test_countdown_can_be_cancelled(taskbroker_app: EmbeddedTaskbroker) -> None:
    receipt = taskbroker_app.start("hello_countdown", {"start": 600, "step_seconds": 0.1})
    running = taskbroker_app.wait(receipt.task_id,
                                  until=lambda s: s.status == "started" and s.progress > 0)
    assert running.message and running.message.endswith("to go")
    assert taskbroker_app.cancel(receipt.task_id).changed
    stopped = taskbroker_app.wait_stopped(receipt.task_id)
    assert stopped.status == "revoked" and stopped.result is None


def test_bad_params_are_rejected_before_anything_runs(
    taskbroker_app: EmbeddedTaskbroker,
) -> None:
    with pytest.raises(ValueError, match=r"params\.start"):
        taskbroker_app.start("hello_countdown", {"start": 0})
    with pytest.raises(ValueError, match=r"params\.colour: unknown parameter"):
        taskbroker_app.start("hello_greet", {"colour": "red"})
