"""The reaper: nothing stays "started" after its worker died, and old records are purged.

A running task's worker writes a heartbeat to the ledger every few seconds.  When a started
task's heartbeat is older than ``stale_after``, its worker is gone (SIGKILL, OOM, node loss):
an idempotent task with retry budget left is set back to "retry" and re-published; anything
else ends as failure "worker lost".  The broker may still re-deliver the original message
later; the ledger's conditional start makes that delivery a no-op.  Several reapers (one per
server replica) may run at once: every change is a conditional UPDATE, so exactly one wins.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass

from taskbroker.core.contract.registry import Registry
from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.ports import Broker, Ledger, Unavailable, utcnow

__all__ = ["ReapReport", "Reaper"]

log = logging.getLogger("taskbroker.reaper")


@dataclass
class ReapReport:
    """What one pass did."""

    requeued: int = 0
    failed: int = 0
    purged: int = 0
    forgotten: int = 0


class Reaper:
    """Periodic maintenance of the ledger (stale tasks, retention)."""

    def __init__(self, ledger: Ledger, broker: Broker, registry: Registry, *,
                 stale_after: float, interval: float, retention_days: float | None,
                 tombstone_days: float) -> None:
        self.ledger, self.broker, self.registry = ledger, broker, registry
        self.stale_after, self.interval = stale_after, interval
        self.retention_days, self.tombstone_days = retention_days, tombstone_days
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: dt.datetime | None = None) -> ReapReport:
        """One pass: reclaim stale started tasks, purge past retention."""
        now = now or utcnow()
        report = ReapReport()
        cutoff = now - dt.timedelta(seconds=self.stale_after)
        for record in self.ledger.stale_started(cutoff):
            task_type = (self.registry.get(record.task_type)
                         if record.task_type in self.registry else None)
            rerun = (task_type is not None and task_type.idempotent
                     and not task_type.secret_params
                     and record.attempts <= task_type.max_retries)
            if not rerun:
                if self.ledger.reclaim_stale(record.id, cutoff, status="failure",
                                             error="worker lost"):
                    report.failed += 1
                    log.warning("task %s: worker lost, marked failed", record.id)
                continue
            assert task_type is not None
            if not self.ledger.reclaim_stale(record.id, cutoff, status="retry",
                                             error="worker lost; re-delivered"):
                continue
            if self._republish(record.id, task_type, record.params, record.owner):
                report.requeued += 1
                log.warning("task %s: worker lost, re-published", record.id)
        # a "retry" record nobody touched for long lost its message (e.g. a publish that
        # failed during a broker outage): publish again; a duplicate delivery is a no-op
        quiet = now - dt.timedelta(seconds=self.stale_after + 120)
        for record in self.ledger.quiet_retries(quiet):
            if record.task_type in self.registry:
                self._republish(record.id, self.registry.get(record.task_type), record.params,
                                record.owner)
        if self.retention_days is not None:
            report.purged = self.ledger.purge(now - dt.timedelta(days=self.retention_days),
                                              now=now)
            report.forgotten = self.ledger.purge_tombstones(
                now - dt.timedelta(days=self.tombstone_days))
        return report

    def _republish(self, task_id: str, task_type: TaskType, params: dict, owner: str) -> bool:
        try:
            self.broker.publish(task_type, task_id, params, owner=owner, roles=frozenset())
        except Unavailable:
            log.warning("task %s: broker unavailable, re-publish deferred", task_id)
            return False
        self.ledger.touch(task_id)
        return True

    def start(self) -> None:
        """Run passes every ``interval`` seconds in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="taskbroker-reaper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                report = self.run_once()
                if report.requeued or report.failed or report.purged:
                    log.info("reaper: %s", report)
            except Exception as exc:  # the database may be away; try again next time
                log.warning("reaper pass failed: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
