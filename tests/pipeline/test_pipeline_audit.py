"""The audit log: one event per accepted start and cancel, per refused call, and per run of a
type that changes shared state; principal, task type and task id, never a token or a value."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from taskbroker.core.pipeline.errors import PermissionDenied, Unauthenticated
from taskbroker.core.pipeline.principal import Principal
from taskbroker.testing.in_process import in_process_taskbroker

SAMPLE = "tests.support.sample_plugin"


@pytest.fixture
def events() -> Iterator[list[dict]]:
    """Every structlog event of the test, whatever an earlier test configured."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


def _audit(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("audit")]


def test_start_cancel_denied_and_applied_events(events: list[dict]) -> None:
    tb = in_process_taskbroker(plugin_modules=[SAMPLE])
    plain = Principal("pat", frozenset())
    service = tb.app.service
    receipt = tb.start("test_count", {"n": 2, "step_ms": 0}, idempotency_key="k1")
    again = tb.start("test_count", {"n": 2, "step_ms": 0}, idempotency_key="k1")
    cancelled = service.cancel(tb.principal, receipt.task_id)
    with pytest.raises(PermissionDenied):
        service.start(plain, "test_wipe", {})
    with pytest.raises(Unauthenticated):
        service.list_active(Principal("", frozenset()))
    wipe = tb.run_task("test_wipe")
    got = [(e["action"], e["user"], e["task_type"], e["task_id"]) for e in _audit(events)]
    assert got == [
        ("task.start", "tester", "test_count", receipt.task_id),
        ("task.start", "tester", "test_count", receipt.task_id),
        ("task.cancel", "tester", "test_count", receipt.task_id),
        ("access.denied", "pat", "test_wipe", None),
        ("access.denied", "", None, None),
        ("task.start", "tester", "test_wipe", wipe.task_id),
        ("task.applied", "tester", "test_wipe", wipe.task_id),
    ]
    audit = _audit(events)
    assert [a.get("deduplicated") for a in audit[:2]] == [False, True]
    assert again.deduplicated and cancelled.changed and audit[2]["changed"] is True
    assert audit[3]["reason"] == "PermissionDenied" and audit[3]["operation"] == "start"
    assert audit[5]["mutates"] is True and audit[6]["outcome"] == "success"
    assert all(e["log_level"] == "info" for e in audit)


def test_no_event_for_reads_or_for_invalid_calls(events: list[dict]) -> None:
    tb = in_process_taskbroker(plugin_modules=[SAMPLE])
    receipt = tb.start("test_count", {"n": 1, "step_ms": 0})
    tb.status(receipt.task_id)
    tb.app.service.list_active(tb.principal)
    with pytest.raises(ValueError):
        tb.start("test_count", {"n": "many"})
    tb.run_pending()  # test_count does not mutate: no task.applied
    assert [e["action"] for e in _audit(events)] == ["task.start"]


def test_a_retry_is_audited_with_its_original(events: list[dict]) -> None:
    tb = in_process_taskbroker(plugin_modules=[SAMPLE])
    first = tb.run_task("test_count", {"n": 1, "step_ms": 0})
    again = tb.app.service.retry(tb.principal, first.task_id)
    got = [(e["action"], e["task_id"], e.get("retry_of")) for e in _audit(events)]
    assert got == [("task.start", first.task_id, None),
                   ("task.start", again.task_id, first.task_id),
                   ("task.retry", again.task_id, first.task_id)]
