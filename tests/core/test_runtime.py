"""The runtime's handling of a handler's errors, in process on the memory ledger: what the
client is told (kind, message, reference; never driver text), transient errors retried within
the budget, and a ledger that blinks under a running handler."""

from __future__ import annotations

import logging
import re
import uuid

import pytest
from pydantic import BaseModel

from taskbroker.adapters.memory import MemoryLedger
from taskbroker.core.contract.tasktype import NoParams, TaskContext, TaskType
from taskbroker.core.ports import Unavailable
from taskbroker.core.runtime import Runtime

REF = r"\(reference [0-9a-f]{12}\)"


class DriverError(Exception):
    """Stands for a database driver's error (its text carries SQL)."""


def _run(handler, *, idempotent: bool = True, retries: int = 0, max_retries: int = 3,
         params: type[BaseModel] = NoParams):  # type: ignore[no-untyped-def]
    ledger = MemoryLedger()
    tid = str(uuid.uuid4())
    ledger.create(task_id=tid, task_type="t", task_name="tb.t", owner="u", params={})
    task_type = TaskType(name="t", description="d", run=handler, params=params,
                         idempotent=idempotent, max_retries=max_retries)
    runtime = Runtime(ledger, patience=0, heartbeat_interval=60,
                      transient_errors=(Unavailable, ConnectionResetError),
                      private_errors=(DriverError,))
    outcome = runtime.execute(task_type, tid, {}, owner="u", roles=frozenset(), worker="w",
                              retries=retries)
    return outcome, ledger.get(tid)


def test_a_handlers_error_reads_kind_message_and_reference(caplog) -> None:  # type: ignore[no-untyped-def]
    def handler(params: NoParams, ctx: TaskContext) -> dict:
        raise RuntimeError("disk\x00 on\nfire")

    with caplog.at_level(logging.ERROR, logger="taskbroker.worker"):
        outcome, record = _run(handler)
    assert outcome.status == "failure" and record.status == "failure"
    assert re.fullmatch(rf"RuntimeError: disk on fire {REF}", record.error), record.error
    ref = re.search(r"reference ([0-9a-f]{12})", record.error).group(1)
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and logged[0].exc_info is not None, "the traceback is in the worker log"


def test_a_driver_error_hides_its_text() -> None:
    def handler(params: NoParams, ctx: TaskContext) -> dict:
        raise DriverError("SELECT secret FROM users WHERE password = 'hunter2'")

    _, record = _run(handler)
    assert re.fullmatch(rf"InternalError: the task failed on a server error {REF}",
                        record.error), record.error
    assert "hunter2" not in record.error and "SELECT" not in record.error


def test_a_transient_error_is_retried_within_the_budget_then_fails() -> None:
    def handler(params: NoParams, ctx: TaskContext) -> dict:
        raise ConnectionResetError("database went away")

    outcome, record = _run(handler, retries=0, max_retries=2)
    assert outcome.status == "retry" and outcome.retry_in == 1 and record.status == "retry"
    assert record.error.startswith("ConnectionError: ") and "retrying" in record.error
    outcome, record = _run(handler, retries=2, max_retries=2)
    assert outcome.status == "failure" and "retry budget is spent" in record.error


def test_a_transient_error_never_reruns_a_non_idempotent_type() -> None:
    def handler(params: NoParams, ctx: TaskContext) -> dict:
        raise Unavailable("ledger database unavailable")

    outcome, record = _run(handler, idempotent=False)
    assert outcome.status == "failure" and "not idempotent" in record.error


def test_a_blinking_ledger_does_not_break_a_running_handler() -> None:
    ledger = MemoryLedger()
    tid = str(uuid.uuid4())
    ledger.create(task_id=tid, task_type="t", task_name="tb.t", owner="u", params={})
    seen: list[bool] = []

    def handler(params: NoParams, ctx: TaskContext) -> dict:
        ledger.unavailable = True
        ctx.progress(50, "halfway")  # dropped, not raised
        seen.append(ctx.cancelled())  # "not yet", not raised
        ledger.unavailable = False
        ctx.progress(60, "on")
        return {"ok": True}

    task_type = TaskType(name="t", description="d", run=handler)
    outcome = Runtime(ledger, patience=0, heartbeat_interval=60).execute(
        task_type, tid, {}, owner="u", roles=frozenset(), worker="w")
    assert outcome.status == "success" and seen == [False]
    assert ledger.get(tid).result == {"ok": True}


@pytest.mark.parametrize("text,expected", [("a" * 600, "a" * 499 + "\u2026"), ("", "no message")])
def test_long_or_empty_messages(text: str, expected: str) -> None:
    def handler(params: NoParams, ctx: TaskContext) -> dict:
        raise ValueError(text)

    _, record = _run(handler)
    assert record.error.startswith(f"ValueError: {expected} (reference ")
