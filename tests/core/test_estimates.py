"""Estimates from history: median and p90 of recorded run times, the poll interval, and the
declared guess while there is too little history (hand-checked figures)."""

from __future__ import annotations

import pytest

from taskbroker import NoParams, TaskType
from taskbroker.adapters.memory import MemoryLedger
from taskbroker.core.estimates import DEFAULT_POLL_SECONDS, Estimate, EstimateBook, describe_range
from taskbroker.core.ports import Unavailable

T = TaskType(name="t", description="x", run=lambda p, c: {}, params=NoParams,
             estimated_duration="2-5 minutes")


@pytest.mark.parametrize(("low", "high", "text"), [
    (0.01, 0.05, "under 1 second"),
    (0.4, 1.2, "about 1 second"),
    (2.3, 7.0, "2-7 seconds"),
    (40, 89, "40-89 seconds"),
    (100, 170, "2-3 minutes"),        # 1.67 and 2.83 minutes round to 2 and 3
    (100, 130, "about 2 minutes"),    # 1.67 and 2.17 both round to 2
    (120, 300, "2-5 minutes"),
    (3600, 7200, "1-2 hours"),
])
def test_describe_range(low: float, high: float, text: str) -> None:
    assert describe_range(low, high) == text


class FakeLedger(MemoryLedger):
    """A ledger whose run times are given, counting reads (and failing on demand)."""

    def __init__(self, runs: list[float]) -> None:
        super().__init__()
        self.runs, self.reads, self.down = runs, 0, False

    def run_seconds(self, task_type: str, *, limit: int = 100) -> list[float]:
        self.reads += 1
        if self.down:
            raise Unavailable("down")
        return self.runs[:limit]


def test_median_and_nearest_rank_p90() -> None:
    book = EstimateBook(FakeLedger([float(x) for x in range(10, 0, -1)]))  # 10..1 s
    # median of 1..10 = 5.5; p90 nearest rank: the 9th of 10 = 9; poll = 5.5 / 2 = 2.75
    assert book.estimate(T) == Estimate("6-9 seconds (last 10 runs)", 2.8, 5.5, 9.0, 10)


def test_fast_types_poll_at_half_a_second_and_slow_ones_at_thirty() -> None:
    fast = EstimateBook(FakeLedger([0.01, 0.02, 0.05])).estimate(T)
    assert (fast.text, fast.poll_interval_seconds) == ("under 1 second (last 3 runs)", 0.5)
    # median 700 s (11.7 minutes), p90 900 s
    slow = EstimateBook(FakeLedger([600.0, 700.0, 900.0])).estimate(T)
    assert (slow.text, slow.poll_interval_seconds) == ("12-15 minutes (last 3 runs)", 30.0)


def test_too_little_history_keeps_the_declared_guess() -> None:
    assert EstimateBook(FakeLedger([1.0, 2.0])).estimate(T) == Estimate(
        "2-5 minutes", DEFAULT_POLL_SECONDS)


def test_estimates_are_cached_and_a_ledger_outage_never_fails() -> None:
    now = [0.0]
    ledger = FakeLedger([1.0, 2.0, 3.0])
    book = EstimateBook(ledger, ttl=60, clock=lambda: now[0])
    first = book.estimate(T)
    now[0] = 59
    assert book.estimate(T) == first and ledger.reads == 1
    now[0], ledger.down = 61, True
    assert book.estimate(T) == first and ledger.reads == 2  # kept the last good one
    assert EstimateBook(ledger).estimate(T).text == "2-5 minutes"  # nothing known yet
