"""The reaper: nothing stays "started" after its worker died, nothing stays "queued" after the
broker lost its message, and old records are purged.

A running task's worker writes a heartbeat to the ledger every few seconds.  When a started
task's heartbeat is older than ``stale_after``, its worker is gone (SIGKILL, OOM, node loss):
an idempotent task with retry budget left is set back to "retry" and re-published; anything
else ends as failure "worker lost".  The broker may still re-deliver the original message
later; the ledger's conditional start makes that delivery a no-op.  Several reapers (one per
server replica) may run at once: every change is a conditional UPDATE, so exactly one wins.

Lost messages: a queued (or retrying) record nothing touched for ``lost_after`` seconds is
checked against the broker's inventory (:meth:`Broker.message_ids`); one missing from two
consecutive scans lost its message (a Redis without persistence restarted, a queue was
flushed) and is published again, or failed "lost by the broker" when its message cannot be
rebuilt (secret parameters are not kept in the ledger).  A record that is merely waiting
behind busy workers is found in the inventory and left alone, however many there are; the
scan only runs while such old records exist, and examines at most ``lost_batch`` of them per
pass, at most every ``lost_after / 4`` seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from taskbroker.core.contract.registry import Registry
from taskbroker.core.contract.tasktype import TaskType
from taskbroker.core.ports import FAILURE, RETRY, Broker, Ledger, Unavailable, utcnow

__all__ = ["ReapReport", "Reaper"]

log = logging.getLogger("taskbroker.reaper")


@dataclass
class ReapReport:
    """What one pass did."""

    requeued: int = 0
    failed: int = 0
    purged: int = 0
    forgotten: int = 0
    recovered: int = 0
    abandoned: int = 0


class Reaper:
    """Periodic maintenance of the ledger (stale tasks, retention)."""

    def __init__(self, ledger: Ledger, broker: Broker, registry: Registry, *,
                 stale_after: float, interval: float, retention_days: float | None,
                 tombstone_days: float, lost_after: float = 60.0, lost_batch: int = 500,
                 on_report: Callable[[ReapReport], None] | None = None) -> None:
        self.ledger, self.broker, self.registry = ledger, broker, registry
        self.stale_after, self.interval = stale_after, interval
        self.retention_days, self.tombstone_days = retention_days, tombstone_days
        self.lost_after, self.lost_batch = lost_after, lost_batch
        self.on_report = on_report
        self._suspects: set[str] = set()  # missing from the broker at the previous scan
        self._next_scan = dt.datetime.min.replace(tzinfo=dt.UTC)
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
                if self.ledger.reclaim_stale(record.id, cutoff, status=FAILURE,
                                             error="worker lost"):
                    report.failed += 1
                    log.warning("task %s: worker lost, marked failed", record.id)
                continue
            assert task_type is not None
            if not self.ledger.reclaim_stale(record.id, cutoff, status=RETRY,
                                             error="worker lost; re-delivered"):
                continue
            if self._republish(record.id, task_type, record.params, record.owner):
                report.requeued += 1
                log.warning("task %s: worker lost, re-published", record.id)
        self._recover_lost_messages(now, report)
        if self.retention_days is not None:
            report.purged = self.ledger.purge(now - dt.timedelta(days=self.retention_days),
                                              now=now)
            report.forgotten = self.ledger.purge_tombstones(
                now - dt.timedelta(days=self.tombstone_days))
        return report

    def _recover_lost_messages(self, now: dt.datetime, report: ReapReport) -> None:
        cutoff = now - dt.timedelta(seconds=self.lost_after)
        if now < self._next_scan:
            return
        waiting = self.ledger.waiting(cutoff, limit=self.lost_batch)
        if not waiting:
            self._suspects = set()
            return
        # two scans confirm a loss; spacing them a quarter of lost_after apart bounds the cost
        # of a long legitimate queue (each scan reads the broker's whole inventory)
        self._next_scan = now + dt.timedelta(seconds=self.lost_after / 4)
        queues = {self.registry.get(r.task_type).queue for r in waiting
                  if r.task_type in self.registry}
        try:
            present = self.broker.message_ids(queues)
        except Unavailable:
            return  # the broker is away: nothing can be told, and nothing republished
        if present is None:
            # this broker cannot list its messages: fall back to re-publishing "retry"
            # records nothing touched for long (a duplicate delivery is a no-op)
            quiet = now - dt.timedelta(seconds=self.stale_after + 120)
            for record in self.ledger.quiet_retries(quiet):
                if record.task_type in self.registry:
                    self._republish(record.id, self.registry.get(record.task_type),
                                    record.params, record.owner)
            return
        missing = {r.id for r in waiting if r.id not in present}
        confirmed, self._suspects = missing & self._suspects, missing - self._suspects
        for record in waiting:
            if record.id not in confirmed:
                continue
            task_type = (self.registry.get(record.task_type)
                         if record.task_type in self.registry else None)
            if task_type is None or task_type.secret_params:
                why = ("its task type is no longer registered" if task_type is None
                       else "its secret parameters are not kept, so its message cannot be "
                            "rebuilt; start it again")
                if self.ledger.abandon(record.id, unchanged_since=cutoff,
                                       error=f"lost by the broker: {why}"):
                    report.abandoned += 1
                    log.warning("task %s: message lost by the broker; failed (%s)", record.id,
                                why)
                continue
            if self._republish(record.id, task_type, record.params, record.owner,
                               unchanged_since=cutoff):
                report.recovered += 1
                log.warning("task %s: message lost by the broker; published again", record.id)

    def _republish(self, task_id: str, task_type: TaskType, params: dict, owner: str, *,
                   unchanged_since: dt.datetime | None = None) -> bool:
        if unchanged_since is not None and not self.ledger.touch(
                task_id, unchanged_since=unchanged_since):
            return False  # another reaper (or the task itself) moved first
        try:
            self.broker.publish(task_type, task_id, params, owner=owner, roles=frozenset())
        except Unavailable:
            log.warning("task %s: broker unavailable, re-publish deferred", task_id)
            return False
        if unchanged_since is None:
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
                if report.requeued or report.failed or report.purged or report.recovered:
                    log.info("reaper: %s", report)
                if self.on_report is not None:
                    self.on_report(report)
            except Exception as exc:  # the database may be away; try again next time
                log.warning("reaper pass failed: %s", type(exc).__name__)

    def stop(self) -> None:
        """Stop the background thread."""
        self._stop.set()
