"""retry: a finished task starts again as a new, linked task through the whole chain."""

from __future__ import annotations

import pytest

from taskbroker.core.pipeline.errors import InvalidRequest, RateLimited, TaskNotFound
from taskbroker.core.pipeline.principal import Principal
from tests.pipeline.conftest import Harness

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def test_a_failed_task_is_retried_as_a_new_linked_task(tb: Harness, alice: Principal) -> None:
    failed = tb.service.start(alice, "test_fail", {"message": "boom"})
    tb.run_pending()
    before = tb.service.status(alice, failed.task_id)
    assert before.status == "failure"
    again = tb.service.retry(alice, failed.task_id)
    assert again.task_id != failed.task_id and again.retry_of == failed.task_id
    assert (again.status, again.task_type) == ("pending", "test_fail")
    # the original is untouched; the new one carries the same params and the link
    assert tb.service.status(alice, failed.task_id) == before
    assert tb.ledger.get(again.task_id).params == tb.ledger.get(failed.task_id).params
    tb.run_pending()
    after = tb.service.status(alice, again.task_id)
    assert (after.status, after.retry_of) == ("failure", failed.task_id)
    assert after.error.startswith("RuntimeError: boom")


def test_only_finished_visible_tasks_can_be_retried(tb: Harness, alice: Principal) -> None:
    pending = tb.service.start(alice, "test_count", {"n": 1, "step_ms": 0})
    with pytest.raises(InvalidRequest, match=r"^task_id: task .* is pending; only a finished"):
        tb.service.retry(alice, pending.task_id)
    bob = Principal("bob", frozenset())
    errors = []
    for task_id in (UNKNOWN_ID, pending.task_id):  # another user's id reads like an unknown one
        with pytest.raises(TaskNotFound) as raised:
            tb.service.retry(bob, task_id)
        errors.append(str(raised.value).replace(task_id, "<id>"))
    assert errors[0] == errors[1]


def test_secret_params_are_not_stored_so_such_a_task_is_not_retried(
        tb: Harness, alice: Principal) -> None:
    task = tb.service.start(alice, "pipe_secret", {"url": "https://x.example", "token": "s3"})
    tb.service.cancel(alice, task.task_id)
    with pytest.raises(InvalidRequest, match="takes secret params"):
        tb.service.retry(alice, task.task_id)


def test_a_caller_bound_param_is_bound_to_the_retrying_caller(tb: Harness) -> None:
    admin = Principal("root", frozenset({"admin"}))
    first = tb.service.start(Principal("ann", frozenset()), "pipe_approval", {"change": "x"})
    tb.run_pending()
    again = tb.service.retry(admin, first.task_id)  # admins see every task
    assert tb.ledger.get(first.task_id).params["approved_by"] == "ann"
    assert tb.ledger.get(again.task_id).params["approved_by"] == "root"
    assert tb.ledger.get(again.task_id).owner == "root"


def test_a_retry_is_a_start_for_the_rate_limits(harness, alice: Principal) -> None:  # type: ignore[no-untyped-def]
    tb = harness(rate_limits="start: 2/minute")
    first = tb.service.start(alice, "test_fail", {"message": "x"})
    tb.run_pending()
    tb.service.retry(alice, first.task_id)
    with pytest.raises(RateLimited, match="for start"):
        tb.service.retry(alice, first.task_id)
