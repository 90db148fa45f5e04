"""How long a task of a type takes, from its recorded history, and how often to poll it.

The declared ``estimated_duration`` of a task type is a guess written once ("2-5 minutes");
once the ledger holds a few successful runs of the type, :class:`EstimateBook` answers from
them instead: the median and the 90th percentile (nearest rank) of the last ``limit`` run times,
read at most once per ``ttl`` seconds per type and process.  The advised poll interval is half
the median, between 0.5 and 30 seconds.  A ledger that cannot answer leaves the declared
guess in place: an estimate never fails a call.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.ports import Ledger

__all__ = ["DEFAULT_POLL_SECONDS", "Estimate", "EstimateBook", "describe_range"]

log = logging.getLogger("taskbroker.estimates")

#: the poll interval advised while a type has too little history
DEFAULT_POLL_SECONDS = 5.0
_MIN_POLL, _MAX_POLL = 0.5, 30.0


@dataclass(frozen=True)
class Estimate:
    """What a client is told about a type's duration.

    Attributes:
        text: ``estimated_duration`` (from history when measured, else the declared guess).
        poll_interval_seconds: how often to poll a task of this type.
        median_seconds, p90_seconds: of the measured runs (None when not measured).
        measured_runs: how many runs the figures come from (0: the declared guess).
    """

    text: str
    poll_interval_seconds: float
    median_seconds: float | None = None
    p90_seconds: float | None = None
    measured_runs: int = 0


def describe_range(low: float, high: float) -> str:
    """``low``..``high`` seconds in words: ``under 1 second``, ``2-7 seconds``, ``about 3
    minutes``, ``2-5 minutes``, ``1-2 hours``."""
    if high < 1:
        return "under 1 second"
    unit, size = (("second", 1.0) if high < 90 else ("minute", 60.0) if high < 5400
                  else ("hour", 3600.0))
    a, b = max(1, round(low / size)), max(1, round(high / size))
    if a >= b:
        return f"about {b} {unit}{'s' if b > 1 else ''}"
    return f"{a}-{b} {unit}s"


class EstimateBook:
    """Estimates per task type from the ledger's recent run times (cached ``ttl`` seconds).

    Args:
        ledger: where run times come from (:meth:`~taskbroker.core.ports.Ledger.run_seconds`).
        ttl: seconds an estimate is reused before the ledger is read again.
        limit: how many recent runs an estimate is made of.
        min_runs: fewer measured runs than this keep the declared guess.
    """

    def __init__(self, ledger: Ledger, *, ttl: float = 60.0, limit: int = 100,
                 min_runs: int = 3, clock: Callable[[], float] = time.monotonic) -> None:
        self.ledger, self.ttl, self.limit, self.min_runs = ledger, ttl, limit, min_runs
        self._clock = clock
        self._cache: dict[str, tuple[float, Estimate]] = {}
        self._lock = threading.Lock()

    def fresh(self, task_type: TaskType) -> Estimate | None:
        """The cached estimate for ``task_type`` if it is still fresh, without any I/O (for
        callers on an event loop), else None."""
        with self._lock:
            cached = self._cache.get(task_type.name)
        if cached is not None and self._clock() - cached[0] < self.ttl:
            return cached[1]
        return None

    def estimate(self, task_type: TaskType) -> Estimate:
        """The estimate for ``task_type`` (never raises)."""
        found = self.fresh(task_type)
        if found is not None:
            return found
        now = self._clock()
        with self._lock:
            cached = self._cache.get(task_type.name)
        try:
            runs = self.ledger.run_seconds(task_type.name, limit=self.limit)
        except Exception as exc:  # the ledger is down: keep what we had, or the guess
            log.debug("no run times for %s (%s)", task_type.name, type(exc).__name__)
            return cached[1] if cached is not None else self.declared(task_type)
        found = self.from_runs(task_type, runs)
        with self._lock:
            self._cache[task_type.name] = (now, found)
        return found

    def declared(self, task_type: TaskType) -> Estimate:
        """The type's own guess, with the default poll interval."""
        return Estimate(task_type.estimated_duration, DEFAULT_POLL_SECONDS)

    def from_runs(self, task_type: TaskType, runs: list[float]) -> Estimate:
        """The estimate ``runs`` (seconds) support, or the declared guess when too few."""
        if len(runs) < self.min_runs:
            return self.declared(task_type)
        ordered = sorted(runs)
        median = statistics.median(ordered)
        p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
        poll = min(_MAX_POLL, max(_MIN_POLL, round(median / 2, 1)))
        return Estimate(f"{describe_range(median, p90)} (last {len(ordered)} runs)", poll,
                        round(median, 3), round(p90, 3), len(ordered))
