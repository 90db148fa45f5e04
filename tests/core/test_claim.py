"""How a worker claims a task whose record it may see before the insert lands
(deterministic replays of the races, with a scripted ledger)."""

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


def test_message_before_record_waits_for_it() -> None:
    ledger = ScriptedLedger(starts=[False, False, True], gets=[None, None])
    assert Runtime(ledger, patience=1).claim("t", "w") is True  # type: ignore[arg-type]


def test_revoked_or_finished_record_is_not_started() -> None:
    for rec in (Rec("revoked", True), Rec("started"), Rec("success"), Rec("queued", True)):
        ledger = ScriptedLedger(starts=[False], gets=[rec])
        assert Runtime(ledger, patience=1).claim("t", "w") is False  # type: ignore[arg-type]
        assert ledger.start_calls == 1


def test_no_record_ever_is_dropped_after_the_wait() -> None:
    ledger = ScriptedLedger(starts=[False] * 1000, gets=[None] * 1000)
    assert Runtime(ledger, patience=1, claim_wait=0.05).claim("t", "w") is False  # type: ignore[arg-type]
