"""How a worker claims a delivered task (deterministic replays of the races, with a scripted
ledger).  The service commits a record before it publishes its message, so a message without
a record is dropped at once: it must never hold a worker slot."""

from __future__ import annotations

from dataclasses import dataclass

from taskbroker.core.runtime import Runtime


@dataclass
class Rec:
    status: str = "queued"
    cancel_requested: bool = False


class ScriptedLedger:
    """``mark_started`` and ``get`` answer from scripts, one answer per call."""

    def __init__(self, starts: list[bool], gets: list[Rec | None]) -> None:
        self.starts, self.gets = list(starts), list(gets)
        self.start_calls = 0

    def mark_started(self, task_id: str, *, worker: str) -> bool:
        self.start_calls += 1
        return self.starts.pop(0)

    def get(self, task_id: str) -> Rec | None:
        return self.gets.pop(0)


def test_record_inserted_between_the_two_reads_is_started() -> None:
    # the first start finds no row; the insert lands; get sees a startable record
    ledger = ScriptedLedger(starts=[False, True], gets=[Rec()])
    assert Runtime(ledger, patience=1).claim("t", "w") is True  # type: ignore[arg-type]
    assert ledger.start_calls == 2


def test_a_message_without_a_record_is_dropped_at_once() -> None:
    # one start attempt, one read, no waiting (the old code polled for 5 s here)
    ledger = ScriptedLedger(starts=[False], gets=[None])
    assert Runtime(ledger, patience=1).claim("t", "w") is False  # type: ignore[arg-type]
    assert ledger.start_calls == 1 and ledger.gets == []


def test_revoked_or_finished_record_is_not_started() -> None:
    for rec in (Rec("revoked", True), Rec("started"), Rec("success"), Rec("queued", True)):
        ledger = ScriptedLedger(starts=[False], gets=[rec])
        assert Runtime(ledger, patience=1).claim("t", "w") is False  # type: ignore[arg-type]
        assert ledger.start_calls == 1
