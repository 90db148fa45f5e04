"""TaskService end to end: real Redis broker, real PostgreSQL ledger, real Celery worker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskbroker.app import App
from taskbroker.core.pipeline.errors import InvalidRequest, TaskNotFound
from taskbroker.core.pipeline.principal import Principal
from tests.conftest import start_worker
from tests.support.procs import wait_for

pytestmark = pytest.mark.usefixtures("worker")


def wait_status(app: App, who: Principal, task_id: str, *statuses: str, timeout: float = 60):
    """Poll until the task reaches one of ``statuses``; return the status."""
    return wait_for(
        lambda: (s := app.service.status(who, task_id)).status in statuses and s,
        timeout=timeout, what=f"{task_id} in {statuses}",
    )


def test_start_reports_progress_and_result(dist_app: App, alice: Principal) -> None:
    receipt = dist_app.service.start(alice, "test_count", {"n": 8, "step_ms": 150})
    assert receipt.status == "pending" and receipt.task_type == "test_count"
    seen = set()

    def progressed():
        s = dist_app.service.status(alice, receipt.task_id)
        if s.status == "started":
            seen.add(s.progress)
        return s.status == "success" and s

    final = wait_for(progressed, timeout=60, interval=0.02, what="success")
    assert final.result == {"sum": 36, "steps": 8}  # 1+..+8, computed by the handler
    assert final.progress == 100 and final.error is None
    assert final.started_at is not None and final.completed_at >= final.started_at
    assert final.message == "finished: success"
    assert any(0 < p < 100 for p in seen), f"no intermediate progress seen: {seen}"


def test_failure_carries_the_error(dist_app: App, alice: Principal) -> None:
    receipt = dist_app.service.start(alice, "test_fail", {"message": "disk on fire"})
    final = wait_status(dist_app, alice, receipt.task_id, "failure")
    assert re.fullmatch(r"RuntimeError: disk on fire \(reference [0-9a-f]{12}\)", final.error)
    assert final.result is None and final.progress == 100


def test_unknown_id_is_not_found(dist_app: App, alice: Principal) -> None:
    with pytest.raises(TaskNotFound, match="no such task"):
        dist_app.service.status(alice, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(TaskNotFound):
        dist_app.service.cancel(alice, "00000000-0000-0000-0000-000000000000")


def test_bad_params_and_unknown_type_are_rejected_before_enqueue(
    dist_app: App, alice: Principal
) -> None:
    before = dist_app.service.list_active(alice).total_active
    with pytest.raises(InvalidRequest) as err:
        dist_app.service.start(alice, "test_count", {"n": 0, "colour": "red"})
    msg = str(err.value)
    assert "params.n: Input should be greater than or equal to 1" in msg
    assert "params.colour: unknown parameter" in msg
    assert "n (integer >=1 <=1000, default 5)" in msg
    with pytest.raises(InvalidRequest) as err:
        dist_app.service.start(alice, "test_cuont", {})
    assert "unknown task type 'test_cuont'" in str(err.value)
    assert "test_count" in str(err.value) and "test_sleep" in str(err.value)
    assert dist_app.service.list_active(alice).total_active == before


def test_cancel_running_task_stops_handler(dist_app: App, alice: Principal) -> None:
    receipt = dist_app.service.start(alice, "test_sleep", {"seconds": 120})
    wait_status(dist_app, alice, receipt.task_id, "started")
    cancel = dist_app.service.cancel(alice, receipt.task_id)
    assert cancel.changed and cancel.status == "revoked" and cancel.canceled_at is not None
    # revoked in the ledger at once, before the handler has even noticed
    assert dist_app.service.status(alice, receipt.task_id).status == "revoked"
    record = wait_for(lambda: (r := dist_app.ledger.get(receipt.task_id)).ended_at and r,
                      timeout=30, what="handler stopped")
    assert record.status == "revoked" and record.result is None


def test_cancel_stubborn_task_terminates_it(dist_app: App, alice: Principal) -> None:
    receipt = dist_app.service.start(alice, "test_stubborn", {"seconds": 120})
    wait_status(dist_app, alice, receipt.task_id, "started")
    assert dist_app.service.cancel(alice, receipt.task_id).changed
    # the grace period is 2 s in this environment; the watchdog then kills the child
    record = wait_for(lambda: (r := dist_app.ledger.get(receipt.task_id)).ended_at and r,
                      timeout=60, what="stubborn handler terminated")
    assert record.status == "revoked"
    # the pool replaced the killed child and the worker still runs tasks
    after = dist_app.service.start(alice, "test_count", {"n": 2, "step_ms": 0})
    assert wait_status(dist_app, alice, after.task_id, "success").result["sum"] == 3


def test_cancel_finished_task_changes_nothing(dist_app: App, alice: Principal) -> None:
    receipt = dist_app.service.start(alice, "test_count", {"n": 1, "step_ms": 0})
    wait_status(dist_app, alice, receipt.task_id, "success")
    cancel = dist_app.service.cancel(alice, receipt.task_id)
    assert not cancel.changed and cancel.status == "success"
    assert "already finished (success)" in cancel.message
    assert dist_app.service.status(alice, receipt.task_id).status == "success"


def test_queued_task_cancelled_never_runs_and_list_active(
    dist_app: App, alice: Principal, dist_env: dict[str, str], tmp_path: Path
) -> None:
    # "parked" has no consumer yet, so these stay queued
    marker_a, marker_b = tmp_path / "a", tmp_path / "b"
    a = dist_app.service.start(alice, "test_parked", {"path": str(marker_a)})
    b = dist_app.service.start(alice, "test_parked", {"path": str(marker_b)})
    running = dist_app.service.start(alice, "test_sleep", {"seconds": 60})
    wait_status(dist_app, alice, running.task_id, "started")

    listing = dist_app.service.list_active(alice)
    by_id = {t.task_id: t for t in listing.tasks}
    assert by_id[a.task_id].status == "pending" and by_id[a.task_id].started_at is None
    assert by_id[running.task_id].status == "started"
    assert by_id[running.task_id].task_name == "taskbroker.tasks.test_sleep"
    assert by_id[running.task_id].started_at is not None
    parked = dist_app.service.list_active(alice, task_type="test_parked")
    assert {t.task_id for t in parked.tasks} == {a.task_id, b.task_id}
    assert parked.total_active == 2
    first = dist_app.service.list_active(alice, task_type="test_parked", limit=1)
    assert [t.task_id for t in first.tasks] == [a.task_id] and first.total_active == 2
    with pytest.raises(InvalidRequest, match=r"limit: expected an integer 1\.\.1000, got 0"):
        dist_app.service.list_active(alice, limit=0)

    assert dist_app.service.cancel(alice, a.task_id).changed
    # now let a worker consume "parked": b runs, a (revoked) must not
    parked_worker = start_worker(dist_env, name="parked", queues="parked", concurrency=1)
    try:
        wait_status(dist_app, alice, b.task_id, "success")
    finally:
        parked_worker.stop()
    dist_app.service.cancel(alice, running.task_id)
    assert marker_b.exists()
    assert not marker_a.exists(), "a cancelled queued task ran"
    assert dist_app.service.status(alice, a.task_id).status == "revoked"


def test_idempotency_key_returns_the_first_task(dist_app: App, alice: Principal,
                                                bob: Principal) -> None:
    first = dist_app.service.start(alice, "test_count", {"n": 1}, idempotency_key="k-1")
    again = dist_app.service.start(alice, "test_count", {"n": 1}, idempotency_key="k-1")
    other = dist_app.service.start(bob, "test_count", {"n": 1}, idempotency_key="k-1")
    assert again.task_id == first.task_id and again.deduplicated
    assert other.task_id != first.task_id and not other.deduplicated
