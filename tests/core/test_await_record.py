"""The worker's wait for a record whose commit it raced (a deterministic replay of the race)."""

from __future__ import annotations

from taskbroker.core.celery_app import _await_record


class RacingLedger:
    """Commits the record exactly between the worker's mark_started and its get."""

    def __init__(self) -> None:
        self.committed = False
        self.starts = 0

    def mark_started(self, task_id: str, *, worker: str) -> bool:
        self.starts += 1
        ok = self.committed
        self.committed = True  # the service's commit lands right after this read
        return ok

    def get(self, task_id: str) -> object | None:
        return object() if self.committed else None


class RevokedLedger(RacingLedger):
    """The record appears, but was revoked before the worker could start it."""

    def mark_started(self, task_id: str, *, worker: str) -> bool:
        self.starts += 1
        self.committed = True
        return False


def test_record_committed_between_reads_is_started() -> None:
    ledger = RacingLedger()
    assert _await_record(ledger, "t", "w", patience=1) is True  # type: ignore[arg-type]
    assert ledger.starts == 2


def test_revoked_meanwhile_is_not_started() -> None:
    ledger = RevokedLedger()
    assert _await_record(ledger, "t", "w", patience=1) is False  # type: ignore[arg-type]
