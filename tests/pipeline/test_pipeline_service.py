"""TaskService end to end in one process: start, status, cancel, list and list_types through
the real middleware, tasks run by the real Runtime from the stub broker's queue.

The handlers' results are worked out by hand (1+..+8 = 36); no test waits on the clock except
for a deadline to give up.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from taskbroker.adapters.memory import MemoryLedger
from taskbroker.core.pipeline.errors import (
    BrokerUnavailable,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    TaskNotFound,
    Unauthenticated,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.ports import Rejected, utcnow
from taskbroker.core.runtime import Outcome
from tests.pipeline.conftest import Harness, make_harness
from tests.pipeline.pipeline_plugin import gate
from tests.support.procs import wait_for

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"
ALL_STATUSES = ("queued", "started", "retry", "success", "failure", "revoked")


@contextmanager
def running_in_background(tb: Harness) -> Iterator[list[list[Any]]]:
    """Run ``tb.run_pending()`` in a thread for the block; its outcomes land in the list."""
    outcomes: list[list[Any]] = []
    worker = threading.Thread(target=lambda: outcomes.append(tb.run_pending()), daemon=True)
    worker.start()
    try:
        yield outcomes
    finally:
        worker.join(timeout=15)
        assert not worker.is_alive(), "run_pending did not finish"


# --- start -> run -> status ------------------------------------------------------------------


def test_a_task_runs_and_reports_its_result(tb: Harness, alice: Principal) -> None:
    receipt = tb.service.start(alice, "test_count", {"n": 8, "step_ms": 0})
    assert (receipt.status, receipt.task_type, receipt.estimated_duration,
            receipt.deduplicated) == ("pending", "test_count", "1 second", False)
    assert receipt.message == (
        "Task test_count queued successfully; expected duration 1 second. Wait with "
        "wait_for_task_tool, or poll get_task_status_tool every 5 s.")
    assert receipt.poll_interval_seconds == 5.0  # no history yet: the declared guess
    before = tb.service.status(alice, receipt.task_id)
    assert (before.status, before.progress, before.result, before.started_at) == (
        "pending", 0, None, None)
    [message] = tb.broker.pending
    assert (message.task_type, message.task_id, message.queue, message.params, message.owner,
            message.roles, message.priority) == (
        "test_count", receipt.task_id, "taskbroker", {"n": 8, "step_ms": 0}, "alice",
        frozenset(), None)
    assert isinstance(message.headers["sent_at"], float)  # for the queue-wait histogram

    [(delivered, outcome)] = tb.run_pending()
    assert delivered.task_id == receipt.task_id
    assert outcome == Outcome("success", result={"sum": 36, "steps": 8})
    final = tb.service.status(alice, receipt.task_id)
    assert (final.status, final.progress, final.result, final.error, final.message) == (
        "success", 100, {"sum": 36, "steps": 8}, None, "finished: success")
    assert final.queued_at is not None and final.started_at is not None
    assert final.completed_at is not None
    assert final.queued_at <= final.started_at <= final.completed_at
    assert tb.broker.pending == []


def test_progress_is_visible_while_the_handler_runs(tb: Harness, alice: Principal,
                                                    request: pytest.FixtureRequest) -> None:
    name = request.node.name
    receipt = tb.service.start(alice, "pipe_gate", {"name": name})
    try:
        with running_in_background(tb) as outcomes:
            running = wait_for(lambda: (s := tb.service.status(alice, receipt.task_id))
                               .status == "started" and s.progress == 50 and s,
                               timeout=10, what="the handler at its gate")
            assert running.message == "at the gate"
            [listed] = tb.service.list_active(alice).tasks
            assert (listed.task_id, listed.status, listed.progress) == (
                receipt.task_id, "started", 50)
            gate(name).set()
    finally:
        gate(name).set()
    assert [o.status for _, o in outcomes[0]] == ["success"]
    final = tb.service.status(alice, receipt.task_id)
    assert (final.status, final.progress, final.result) == ("success", 100, {"passed": name})
    assert tb.service.list_active(alice).total_active == 0


def test_a_failing_handler_ends_as_failure_with_its_error(tb: Harness,
                                                          alice: Principal) -> None:
    receipt = tb.service.start(alice, "test_fail", {"message": "disk on fire"})
    [(_, outcome)] = tb.run_pending()
    expected = r"RuntimeError: disk on fire \(reference [0-9a-f]{12}\)"
    assert outcome.status == "failure" and re.fullmatch(expected, outcome.error or "")
    final = tb.service.status(alice, receipt.task_id)
    assert (final.status, final.error, final.result, final.progress) == (
        "failure", outcome.error, None, 100)


def test_a_retryable_error_is_retried_up_to_max_retries_then_fails(
        tb: Harness, alice: Principal) -> None:
    receipt = tb.service.start(alice, "pipe_flaky")  # max_retries=2
    [(_, first)] = tb.run_pending(max_deliveries=1)
    assert (first.status, first.error) == ("retry", "RetryableError: upstream busy")
    waiting = tb.service.status(alice, receipt.task_id)
    assert (waiting.status, waiting.error) == ("retry", "RetryableError: upstream busy")
    assert [m.retries for m in tb.broker.pending] == [1]
    rest = tb.run_pending()
    assert [(m.retries, o.status) for m, o in rest] == [(1, "retry"), (2, "failure")]
    final = tb.service.status(alice, receipt.task_id)
    assert (final.status, final.error, final.progress) == (
        "failure", "RetryableError: upstream busy (gave up after 2 retries)", 100)
    record = tb.ledger.get(receipt.task_id)
    assert record is not None and record.attempts == 3


def test_a_retried_task_can_still_succeed(tb: Harness, alice: Principal) -> None:
    receipt = tb.service.start(alice, "pipe_flaky_until", {"fail_times": 2})
    assert [o.status for _, o in tb.run_pending()] == ["retry", "retry", "success"]
    final = tb.service.status(alice, receipt.task_id)
    assert (final.status, final.result, final.error) == ("success", {"attempt": 3}, None)


def test_a_result_the_ledger_cannot_store_ends_the_task_as_failure(
        tb: Harness, alice: Principal) -> None:
    receipt = tb.service.start(alice, "pipe_bad_result")
    [(_, outcome)] = tb.run_pending()
    assert outcome.status == "failure"
    assert tb.service.status(alice, receipt.task_id).status == "failure"


# --- cancel ----------------------------------------------------------------------------------


def test_a_cancelled_queued_task_never_runs(tb: Harness, alice: Principal,
                                            tmp_path: Path) -> None:
    cancelled_marker, kept_marker = tmp_path / "cancelled", tmp_path / "kept"
    doomed = tb.service.start(alice, "test_parked", {"path": str(cancelled_marker)})
    kept = tb.service.start(alice, "test_parked", {"path": str(kept_marker)})
    receipt = tb.service.cancel(alice, doomed.task_id)
    assert (receipt.task_id, receipt.status, receipt.changed) == (doomed.task_id, "revoked",
                                                                  True)
    assert receipt.message == (f"Task {doomed.task_id} has been canceled; it was queued and "
                               "will not run.")
    assert receipt.canceled_at is not None
    assert tb.broker.revoked == {doomed.task_id}
    outcomes = {m.task_id: o.status for m, o in tb.run_pending()}
    assert outcomes == {doomed.task_id: "skipped", kept.task_id: "success"}
    assert not cancelled_marker.exists()  # the handler never ran
    assert kept_marker.read_text() == f"{kept.task_id}\n"
    status = tb.service.status(alice, doomed.task_id)
    assert (status.status, status.progress, status.message, status.started_at) == (
        "revoked", 100, "finished: canceled", None)


def test_cancelling_a_running_task_stops_its_handler(tb: Harness, alice: Principal) -> None:
    receipt = tb.service.start(alice, "test_sleep", {"seconds": 60})
    with running_in_background(tb) as outcomes:
        wait_for(lambda: tb.service.status(alice, receipt.task_id).progress == 10,
                 timeout=10, what="the handler to start")
        cancel = tb.service.cancel(alice, receipt.task_id)
        assert (cancel.status, cancel.changed) == ("revoked", True)
        assert "it was running" in cancel.message
    assert [o.status for _, o in outcomes[0]] == ["revoked"]
    final = tb.service.status(alice, receipt.task_id)
    assert (final.status, final.result, final.progress) == ("revoked", None, 100)
    record = tb.ledger.get(receipt.task_id)
    assert record is not None and record.ended_at is not None  # the handler let go


def test_cancelling_a_finished_task_changes_nothing(tb: Harness, alice: Principal) -> None:
    done = tb.service.start(alice, "test_count", {"n": 2, "step_ms": 0})
    tb.run_pending()
    receipt = tb.service.cancel(alice, done.task_id)
    assert (receipt.status, receipt.changed, receipt.canceled_at) == ("success", False, None)
    assert receipt.message == (f"Task {done.task_id} had already finished (success); nothing "
                               "was changed.")
    status = tb.service.status(alice, done.task_id)
    assert (status.status, status.result) == ("success", {"sum": 3, "steps": 2})
    assert tb.broker.revoked == set()

    revoked = tb.service.start(alice, "test_echo")
    first = tb.service.cancel(alice, revoked.task_id)
    again = tb.service.cancel(alice, revoked.task_id)
    assert (again.status, again.changed, again.canceled_at) == (
        "revoked", False, first.canceled_at)


# --- idempotency -----------------------------------------------------------------------------


def test_an_idempotency_key_returns_the_original_task(tb: Harness, alice: Principal,
                                                      bob: Principal) -> None:
    request = {"n": 3, "step_ms": 0}
    first = tb.service.start(alice, "test_count", request, idempotency_key="nightly")
    again = tb.service.start(alice, "test_count", dict(request), idempotency_key="nightly")
    assert (again.task_id, again.deduplicated, again.queued_at, again.status) == (
        first.task_id, True, first.queued_at, "pending")
    assert again.message == ("Task test_count was already started with this idempotency_key; "
                             "returning the original task (now pending).")
    assert len(tb.broker.published) == 1
    tb.run_pending()
    later = tb.service.start(alice, "test_count", request, idempotency_key="nightly")
    assert (later.task_id, later.status) == (first.task_id, "success")
    assert later.message.endswith("(now success).")
    bobs = tb.service.start(bob, "test_count", request, idempotency_key="nightly")
    assert bobs.task_id != first.task_id and bobs.deduplicated is False
    assert len(tb.broker.published) == 2


@pytest.mark.parametrize(("task_type", "params"), [
    ("test_count", {"n": 9, "step_ms": 0}),   # other params
    ("test_count", {}),                       # the defaults are other params too
    ("test_echo", {}),                        # another type
])
def test_a_reused_key_with_a_different_request_is_a_value_error(
        tb: Harness, alice: Principal, task_type: str, params: dict) -> None:
    first = tb.service.start(alice, "test_count", {"n": 3, "step_ms": 0}, idempotency_key="k")
    with pytest.raises(InvalidRequest) as raised:
        tb.service.start(alice, task_type, params, idempotency_key="k")
    assert str(raised.value).startswith(
        f"idempotency_key: 'k' was already used for a different request (task {first.task_id}")
    assert len(tb.broker.published) == 1


def test_a_replay_is_answered_at_the_rate_limit_and_the_active_cap(
        tmp_path: Path, alice: Principal) -> None:
    tb2 = make_harness(tmp_path, rate_limits="start: 2/minute; status: 100/minute",
                       max_active_per_user=1)
    request = {"n": 3, "step_ms": 0}
    first = tb2.service.start(alice, "test_count", request, idempotency_key="once")
    # the cap (1 active) and then the start limit (2/minute) refuse new starts...
    with pytest.raises(RateLimited, match="max_active_per_user=1"):
        tb2.service.start(alice, "test_count", request)
    with pytest.raises(RateLimited, match="for start"):
        tb2.service.start(alice, "test_count", request)
    # ...but a replay of the first start still learns what became of its task
    for _ in range(3):
        again = tb2.service.start(alice, "test_count", request, idempotency_key="once")
        assert (again.task_id, again.deduplicated, again.status) == (
            first.task_id, True, "pending")


# --- visibility ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["status", "cancel"])
def test_unknown_and_other_users_ids_are_not_found_alike(
        tb: Harness, alice: Principal, bob: Principal, admin: Principal,
        operation: str) -> None:
    alices = tb.service.start(alice, "test_echo").task_id
    call: Callable[[Principal, str], Any] = getattr(tb.service, operation)
    errors = []
    for task_id in (UNKNOWN_ID, alices):
        with pytest.raises(TaskNotFound) as raised:
            call(bob, task_id)
        errors.append((type(raised.value), str(raised.value).replace(task_id, "<id>")))
    assert errors[0] == errors[1] == (TaskNotFound, "task_id '<id>': no such task")
    assert tb.service.status(alice, alices).status == "pending"  # bob changed nothing
    assert call(admin, alices).task_id == alices  # admins see everybody's tasks


def test_a_purged_task_reads_as_expired_only_for_its_owner(tb: Harness, alice: Principal,
                                                           bob: Principal) -> None:
    task_id = tb.service.start(alice, "test_echo").task_id
    tb.run_pending()
    assert tb.ledger.purge(utcnow() + dt.timedelta(days=1)) == 1
    expired = tb.service.status(alice, task_id)
    assert (expired.status, expired.progress, expired.error) == (
        "expired", 100, "the task's record was purged by ledger retention")
    with pytest.raises(TaskNotFound):
        tb.service.status(bob, task_id)


def test_list_active_is_scoped_to_the_owner(tb: Harness, alice: Principal, bob: Principal,
                                            admin: Principal, tmp_path: Path) -> None:
    def park(who: Principal, n: int) -> str:
        return tb.service.start(who, "test_parked", {"path": str(tmp_path / f"m{n}")}).task_id

    order = [park(alice, 0), park(bob, 1), park(alice, 2), park(bob, 3), park(alice, 4)]
    counted = tb.service.start(alice, "test_count", {"n": 1}).task_id
    mine = tb.service.list_active(alice)
    assert [t.task_id for t in mine.tasks] == [order[0], order[2], order[4], counted]
    assert mine.total_active == 4
    assert {(t.owner, t.status, t.progress, t.task_name) for t in mine.tasks[:3]} == {
        ("alice", "pending", 0, "taskbroker.tasks.test_parked")}
    assert [t.task_id for t in tb.service.list_active(bob).tasks] == [order[1], order[3]]
    everyone = tb.service.list_active(admin)
    assert ([t.task_id for t in everyone.tasks], everyone.total_active) == ([*order, counted], 6)
    two = tb.service.list_active(admin, limit=2)
    assert ([t.task_id for t in two.tasks], two.total_active) == (order[:2], 6)
    only = tb.service.list_active(alice, "test_count")
    assert ([t.task_id for t in only.tasks], only.total_active) == ([counted], 1)
    tb.run_pending()
    assert tb.service.list_active(admin).total_active == 0


def test_list_types_describes_every_registered_type(tb: Harness, alice: Principal) -> None:
    types = {t.name: t for t in tb.service.list_types(alice)}
    assert sorted(types) == [
        "pipe_approval", "pipe_bad_result", "pipe_flaky", "pipe_flaky_until", "pipe_gate",
        "pipe_secret", "test_admin_only", "test_count", "test_echo", "test_fail",
        "test_hard_limit", "test_idem", "test_once", "test_parked", "test_roster",
        "test_secret", "test_sleep", "test_soft_limit", "test_sql", "test_sql_once",
        "test_stubborn", "test_wipe"]
    count = types["test_count"]
    assert (count.description, count.required_role, count.estimated_duration, count.queue,
            count.plugin, count.plugin_version, count.idempotent, count.soft_time_limit,
            count.time_limit) == ("Count with progress.", None, "1 second", "taskbroker",
                                  "tests.support.sample_plugin", None, True, 540.0, 600.0)
    assert count.params_schema["properties"]["n"] == {
        "default": 5, "maximum": 1000, "minimum": 1, "title": "N", "type": "integer"}
    assert types["test_admin_only"].required_role == "admin"
    assert types["test_parked"].queue == "parked"
    assert (types["test_hard_limit"].soft_time_limit, types["test_hard_limit"].time_limit,
            types["test_hard_limit"].idempotent) == (1, 3, False)
    assert types["pipe_flaky"].plugin == "tests.pipeline.pipeline_plugin"


# --- what the chain does to a start ----------------------------------------------------------


def test_the_caller_param_is_filled_and_cannot_be_forged(tb: Harness,
                                                         alice: Principal) -> None:
    receipt = tb.service.start(alice, "pipe_approval", {"change": "deploy"})
    record = tb.ledger.get(receipt.task_id)
    assert record is not None
    assert record.params == {"change": "deploy", "approved_by": "alice"}
    [(message, outcome)] = tb.run_pending()
    assert message.params == {"change": "deploy", "approved_by": "alice"}
    assert outcome.result == {"change": "deploy", "approved_by": "alice"}
    with pytest.raises(PermissionDenied) as raised:
        tb.service.start(alice, "pipe_approval", {"change": "deploy", "approved_by": "bob"})
    assert str(raised.value) == ("permission denied: params.approved_by must be the "
                                 "authenticated caller ('alice') or omitted")
    assert len(tb.broker.published) == 1


def test_a_required_role_is_enforced(tb: Harness, alice: Principal, admin: Principal) -> None:
    with pytest.raises(PermissionDenied) as raised:
        tb.service.start(alice, "test_admin_only")
    assert str(raised.value) == ("permission denied: task type 'test_admin_only' requires the "
                                 "'admin' role")
    assert tb.broker.published == []
    receipt = tb.service.start(admin, "test_admin_only")
    [(_, outcome)] = tb.run_pending()
    assert outcome.result == {"owner": "root"}
    assert tb.service.status(admin, receipt.task_id).status == "success"


def test_secret_params_reach_the_handler_but_are_never_stored(tb: Harness,
                                                              alice: Principal) -> None:
    receipt = tb.service.start(alice, "pipe_secret", {"url": "https://x.example",
                                                      "token": "s3cr3t-t0ken"})
    record = tb.ledger.get(receipt.task_id)
    assert record is not None and record.params == {"url": "https://x.example", "token": "***"}
    [(message, outcome)] = tb.run_pending()
    assert message.params["token"] == "s3cr3t-t0ken"
    assert outcome.result == {"url": "https://x.example", "token_length": 12}


def test_priority_reaches_the_message_and_the_record(tb: Harness, alice: Principal) -> None:
    receipt = tb.service.start(alice, "test_echo", priority=5)
    [message] = tb.broker.pending
    record = tb.ledger.get(receipt.task_id)
    assert (message.priority, record.priority if record else None) == (5, 5)


def test_calls_without_identity_are_refused(tb: Harness) -> None:
    for who in (None, Principal("", frozenset({"admin"}))):
        for call in (lambda p: tb.service.start(p, "test_echo"),
                     lambda p: tb.service.status(p, UNKNOWN_ID),
                     lambda p: tb.service.cancel(p, UNKNOWN_ID),
                     lambda p: tb.service.list_active(p),
                     lambda p: tb.service.list_types(p)):
            with pytest.raises(Unauthenticated):
                call(who)
    assert tb.broker.published == []


def test_malformed_starts_are_refused_before_anything_is_queued(tb: Harness,
                                                               alice: Principal) -> None:
    with pytest.raises(InvalidRequest) as raised:
        tb.service.start(alice, "test_cuont", {})
    assert str(raised.value).startswith("task_type: unknown task type 'test_cuont'; valid "
                                        "task types: pipe_approval, pipe_bad_result,")
    with pytest.raises(InvalidRequest) as raised:
        tb.service.start(alice, "test_count", {"n": "many"})
    assert "params.n: Input should be a valid integer" in str(raised.value)
    with pytest.raises(InvalidRequest):
        tb.service.start(alice, "test_count", {}, priority=True)
    assert (tb.broker.published, tb.ledger.ids(ALL_STATUSES)) == ([], [])


def test_the_active_task_cap_through_the_chain(harness: Callable[..., Harness],
                                               alice: Principal, bob: Principal) -> None:
    tb = harness(max_active_per_user=2)
    first = tb.service.start(alice, "test_echo")
    tb.service.start(alice, "test_echo")
    with pytest.raises(RateLimited) as raised:
        tb.service.start(alice, "test_echo")
    assert (raised.value.limit, raised.value.retry_after) == ("max_active_per_user=2", 10.0)
    tb.service.start(bob, "test_echo")  # bob has his own cap
    tb.service.cancel(alice, first.task_id)
    tb.service.start(alice, "test_echo")  # a slot freed
    assert len(tb.broker.published) == 4


def test_rate_limits_count_refused_calls_too(harness: Callable[..., Harness],
                                             alice: Principal) -> None:
    tb = harness(rate_limits="status: 2/hour")
    for bad in ("not an id", "../../etc/passwd"):  # validation runs after the limiter
        with pytest.raises(InvalidRequest):
            tb.service.status(alice, bad)
    with pytest.raises(RateLimited) as raised:
        tb.service.status(alice, UNKNOWN_ID)
    assert str(raised.value) == "rate limit exceeded for status: 2 per 1 hour"
    assert raised.value.retry_after > 0


# --- the ports' errors through the service ---------------------------------------------------


def test_an_unreachable_ledger_is_broker_unavailable(tb: Harness, alice: Principal) -> None:
    known = tb.service.start(alice, "test_echo").task_id
    tb.ledger.unavailable = True
    calls: list[Callable[[], Any]] = [
        lambda: tb.service.start(alice, "test_echo"),
        lambda: tb.service.status(alice, known),
        lambda: tb.service.cancel(alice, known),
        lambda: tb.service.list_active(alice),
    ]
    for call in calls:
        with pytest.raises(BrokerUnavailable) as raised:
            call()
        assert isinstance(raised.value, ConnectionError)
        assert str(raised.value) == "ledger database unavailable: try again shortly"
    assert len(tb.broker.published) == 1  # the refused start published nothing
    assert len(tb.service.list_types(alice)) == len(tb.app.plugins.registry)  # no ledger
    tb.ledger.unavailable = False
    assert tb.service.status(alice, known).status == "pending"


@pytest.mark.parametrize("key", [None, "retry-me"])
def test_an_unreachable_broker_leaves_no_record(tb: Harness, alice: Principal,
                                                key: str | None) -> None:
    tb.broker.unavailable = True
    with pytest.raises(BrokerUnavailable) as raised:
        tb.service.start(alice, "test_echo", idempotency_key=key)
    assert isinstance(raised.value, ConnectionError)
    assert str(raised.value) == "broker unavailable: could not queue the task (stub)"
    assert tb.ledger.ids(ALL_STATUSES) == []
    assert tb.service.list_active(alice).total_active == 0
    tb.broker.unavailable = False
    receipt = tb.service.start(alice, "test_echo", idempotency_key=key)
    assert receipt.deduplicated is False  # the failed start did not take the key
    assert tb.ledger.ids(ALL_STATUSES) == [receipt.task_id]


def test_a_value_the_ledger_refuses_is_an_invalid_request(tmp_path: Path,
                                                          alice: Principal) -> None:
    class Refusing(MemoryLedger):
        def get(self, task_id: str, *, owner: str | None = None) -> Any:
            raise Rejected("the ledger database refused a value")

    tb = make_harness(tmp_path, ledger=Refusing())
    with pytest.raises(InvalidRequest) as raised:
        tb.service.status(alice, UNKNOWN_ID)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == "the ledger database refused a value"


def test_estimates_come_from_the_recorded_runs(tb: Harness, alice: Principal) -> None:
    for _ in range(3):
        tb.service.start(alice, "test_count", {"n": 2, "step_ms": 0})
    tb.run_pending()
    runs = tb.ledger.run_seconds("test_count")
    assert len(runs) == 3 and all(r < 1 for r in runs)
    tb.service.estimates.ttl = 0  # no cached guess
    [info] = [t for t in tb.service.list_types(alice) if t.name == "test_count"]
    ordered = sorted(runs)
    assert (info.measured_runs, info.median_seconds, info.p90_seconds) == (
        3, round(ordered[1], 3), round(ordered[2], 3))
    assert (info.estimated_duration, info.poll_interval_seconds) == (
        "under 1 second (last 3 runs)", 0.5)
    receipt = tb.service.start(alice, "test_count", {"n": 2, "step_ms": 0})
    assert (receipt.estimated_duration, receipt.poll_interval_seconds) == (
        "under 1 second (last 3 runs)", 0.5)
