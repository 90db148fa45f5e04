"""An in-process :class:`~taskbroker.core.ports.Ledger`: task records in a dict, under a lock.

For fast tests of the pipeline and for plugin authors (``taskbroker.testing``): it keeps every
promise of the port (conditional state changes, idempotency keys, tombstones) and passes the
same contract suite as the SQL ledger, but lives and dies with its process.  Set
``unavailable`` to make every call raise :class:`~taskbroker.core.ports.Unavailable`.

Like the SQL ledger, it stores params and results as JSON: what it hands back is what a JSON
column would (tuples come back as lists, int keys as strings), a value JSON cannot hold is
:class:`~taskbroker.core.ports.Rejected`, and every record read is a copy, so mutating it (or
the dict passed in) never changes the stored task.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from taskbroker.core.ports import (
    ACTIVE,
    FAILURE,
    MAX_TASK_EVENTS,
    QUEUED,
    RETRY,
    REVOKED,
    SORT_KEYS,
    STARTED,
    SUCCESS,
    TERMINAL,
    ActiveRow,
    Ledger,
    PortError,
    Rejected,
    TaskEvent,
    TaskQuery,
    TaskRecord,
    TaskRow,
    TaskSnapshot,
    Unavailable,
    WorkerRow,
    utcnow,
)

__all__ = ["MemoryLedger"]


def _as_json(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``value`` as a JSON column would hand it back; Rejected when JSON cannot hold it."""
    try:
        stored: dict[str, Any] = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise Rejected(f"the ledger refused a value: {what} is not JSON ({type(exc).__name__})"
                       ) from None
    return stored


def _copy(record: TaskRecord) -> TaskRecord:
    """A record the caller may mutate without touching the stored one."""
    return dataclasses.replace(record, params=copy.deepcopy(record.params),
                               result=copy.deepcopy(record.result))


def _copy_or_none(record: TaskRecord | None) -> TaskRecord | None:
    return None if record is None else _copy(record)


def _row(r: TaskRecord) -> TaskRow:
    return TaskRow(r.id, r.task_type, r.owner, r.status, r.progress, r.message, r.error,
                   r.queued_at, r.started_at, r.completed_at, r.retry_of, r.idempotency_key,
                   r.worker, r.attempts)


def _matches(r: TaskRecord, q: TaskQuery) -> bool:
    return ((q.owner is None or r.owner == q.owner)
            and (not q.task_types or r.task_type in q.task_types)
            and (not q.statuses or r.status in q.statuses)
            and (q.since is None or r.queued_at >= q.since)
            and (q.until is None or r.queued_at < q.until)
            and (q.worker is None or r.worker == q.worker)
            and (not q.text or q.text in r.id or q.text in (r.idempotency_key or "")))


class MemoryLedger(Ledger):
    """The ledger port in memory (thread-safe; one process)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tasks: dict[str, TaskRecord] = {}
        self._updated: dict[str, dt.datetime] = {}
        self._purged: dict[str, tuple[str, dt.datetime]] = {}
        self._events: dict[str, list[TaskEvent]] = {}
        self._workers: dict[str, WorkerRow] = {}
        self._secrets: dict[str, bytes] = {}
        #: when True, every call raises Unavailable (an outage, for tests)
        self.unavailable = False

    @classmethod
    def from_url(cls, url: str) -> MemoryLedger:
        """A new, empty ledger (``memory://``: the URL names no place)."""
        return cls()

    # --- helpers -----------------------------------------------------------------------

    def _check(self) -> None:
        if self.unavailable:
            raise Unavailable("ledger database unavailable: try again shortly")

    def _set(self, task_id: str, now: dt.datetime | None = None, **changes: Any) -> TaskRecord:
        record = dataclasses.replace(self._tasks[task_id], **changes)
        self._tasks[task_id] = record
        self._updated[task_id] = now or utcnow()
        return record

    def _event(self, task_id: str, kind: str, at: dt.datetime, *, progress: int | None = None,
               message: str | None = None, actor: str | None = None) -> None:
        timeline = self._events.setdefault(task_id, [])
        if len(timeline) < MAX_TASK_EVENTS:
            timeline.append(TaskEvent(at, kind, progress,
                                      None if message is None else message[:2000],
                                      None if actor is None else actor[:255]))

    def _visible(self, task_id: str, owner: str | None) -> TaskRecord | None:
        record = self._tasks.get(task_id)
        if record is None or (owner is not None and record.owner != owner):
            return None
        return record

    # --- writes from the service -------------------------------------------------------

    def create(self, *, task_id: str, task_type: str, task_name: str, owner: str,
               params: Mapping[str, Any], priority: int | None = None,
               idempotency_key: str | None = None, retry_of: str | None = None,
               trace_id: str | None = None,
               now: dt.datetime | None = None) -> TaskRecord | None:
        with self._lock:
            self._check()
            if idempotency_key is not None:
                existing = self._by_key(owner, idempotency_key)
                if existing is not None:
                    return _copy(existing)
            if task_id in self._tasks:
                raise PortError(f"the ledger refused the record: task id {task_id!r} exists")
            stored_params = _as_json(params, "params")
            now = now or utcnow()
            self._tasks[task_id] = TaskRecord(
                id=task_id, task_type=task_type, task_name=task_name, owner=owner,
                params=stored_params, status=QUEUED, progress=0, message=None, result=None,
                error=None, queued_at=now, started_at=None, completed_at=None, ended_at=None,
                heartbeat_at=None, cancel_requested=False, worker=None, attempts=0,
                priority=priority, idempotency_key=idempotency_key, retry_of=retry_of,
                trace_id=trace_id,
            )
            self._updated[task_id] = now
            return None

    def discard(self, task_id: str) -> bool:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            if record is None or record.status != QUEUED or record.attempts:
                return False
            del self._tasks[task_id]
            del self._updated[task_id]
            return True

    def _by_key(self, owner: str, key: str) -> TaskRecord | None:
        return next((r for r in self._tasks.values()
                     if r.owner == owner and r.idempotency_key == key), None)

    def by_idempotency_key(self, owner: str, key: str) -> TaskRecord | None:
        with self._lock:
            self._check()
            return _copy_or_none(self._by_key(owner, key))

    def cancel(self, task_id: str, *, owner: str | None = None, by: str | None = None,
               now: dt.datetime | None = None) -> tuple[TaskRecord | None, bool]:
        with self._lock:
            self._check()
            record = self._visible(task_id, owner)
            if record is None or record.status not in ACTIVE:
                return _copy_or_none(record), False
            now = now or utcnow()
            self._event(task_id, REVOKED, now, actor=by)
            after = _copy(self._set(task_id, now, status=REVOKED, cancel_requested=True,
                                    completed_at=now, progress=100, message="canceled"))
        self._changed(task_id)
        return after, True

    # --- writes from the worker --------------------------------------------------------

    def mark_started(self, task_id: str, *, worker: str | None,
                     now: dt.datetime | None = None) -> bool:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            if record is None or record.status not in (QUEUED, RETRY) or record.cancel_requested:
                return False
            now = now or utcnow()
            self._set(task_id, now, status=STARTED, started_at=record.started_at or now,
                      heartbeat_at=now, ended_at=None, worker=worker,
                      attempts=record.attempts + 1, progress=0, message=None)
            self._event(task_id, STARTED, now, actor=worker)
        self._changed(task_id)
        return True

    def heartbeat(self, task_id: str) -> None:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            if record is not None and record.status == STARTED:
                self._tasks[task_id] = dataclasses.replace(record, heartbeat_at=utcnow())

    def report_progress(self, task_id: str, progress: int, message: str | None) -> None:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            if record is None or record.status != STARTED:
                return
            now = utcnow()
            changes: dict[str, Any] = {"progress": progress, "heartbeat_at": now}
            if message is not None:
                changes["message"] = message[:2000]
                self._event(task_id, "progress", now, progress=progress, message=message)
            self._set(task_id, now, **changes)
        self._changed(task_id)

    def is_cancel_requested(self, task_id: str) -> bool:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            return record is None or record.cancel_requested

    def finish(self, task_id: str, *, status: str, result: Mapping[str, Any] | None = None,
               error: str | None = None, now: dt.datetime | None = None) -> bool:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            if record is None or record.status != STARTED:
                return False
            now = now or utcnow()
            changes: dict[str, Any] = {"status": status, "ended_at": now, "error": error}
            if status in TERMINAL:
                changes.update(completed_at=now, progress=100)
            if result is not None:
                changes["result"] = _as_json(result, "the result")
            self._set(task_id, now, **changes)
            self._event(task_id, status, now, message=error)
        self._changed(task_id)
        return True

    def mark_ended(self, task_id: str, now: dt.datetime | None = None) -> None:
        with self._lock:
            self._check()
            if task_id in self._tasks:
                self._tasks[task_id] = dataclasses.replace(self._tasks[task_id],
                                                           ended_at=now or utcnow())

    # --- reads -------------------------------------------------------------------------

    def get(self, task_id: str, *, owner: str | None = None) -> TaskRecord | None:
        with self._lock:
            self._check()
            return _copy_or_none(self._visible(task_id, owner))

    def snapshots(self, task_ids: Iterable[str]) -> dict[str, TaskSnapshot]:
        with self._lock:
            self._check()
            return {i: TaskSnapshot(r.status, r.progress, r.message, self._updated[i])
                    for i in dict.fromkeys(task_ids) if (r := self._tasks.get(i)) is not None}

    def _active(self, owner: str | None, task_type: str | None) -> list[TaskRecord]:
        return sorted((r for r in self._tasks.values()
                       if r.status in ACTIVE and (owner is None or r.owner == owner)
                       and (task_type is None or r.task_type == task_type)),
                      key=lambda r: r.queued_at)

    def list_active(self, *, owner: str | None = None, task_type: str | None = None,
                    limit: int = 1000) -> tuple[list[ActiveRow], int]:
        with self._lock:
            self._check()
            rows = self._active(owner, task_type)
            return [ActiveRow(r.id, r.task_name, r.task_type, r.status, r.started_at,
                              r.queued_at, r.progress, r.owner) for r in rows[:limit]], len(rows)

    def count_active(self, owner: str) -> int:
        with self._lock:
            self._check()
            return len(self._active(owner, None))

    def run_seconds(self, task_type: str, *, limit: int = 100) -> list[float]:
        """Run times of the latest successful tasks of ``task_type``, newest first."""
        with self._lock:
            self._check()
            done = [r for r in self._tasks.values()
                    if r.task_type == task_type and r.status == SUCCESS
                    and r.started_at is not None and r.completed_at is not None]
        done.sort(key=lambda r: r.completed_at, reverse=True)  # type: ignore[arg-type,return-value]
        return [max(0.0, (r.completed_at - r.started_at).total_seconds())  # type: ignore[operator]
                for r in done[:limit]]

    def active_counts(self) -> list[tuple[str, str, int]]:
        with self._lock:
            self._check()
            counts: dict[tuple[str, str], int] = {}
            for r in self._tasks.values():
                if r.status in ACTIVE:
                    counts[(r.task_type, r.status)] = counts.get((r.task_type, r.status), 0) + 1
            return [(t, s, n) for (t, s), n in sorted(counts.items())]

    # --- the history (the console) ------------------------------------------------------

    def search(self, query: TaskQuery) -> tuple[list[TaskRow], int]:
        if query.sort not in SORT_KEYS:
            raise Rejected(f"sort: expected one of {', '.join(SORT_KEYS)}")
        with self._lock:
            self._check()
            found = [r for r in self._tasks.values() if _matches(r, query)]

        def key(r: TaskRecord) -> tuple[Any, ...]:
            value = getattr(r, query.sort)
            # SQL puts NULLs last ascending and first descending (PostgreSQL; SQLite the
            # reverse); here they sort as the smallest value, like SQLite
            return (value is not None, value if value is not None else 0, r.id)

        found.sort(key=key, reverse=query.descending)
        page = found[query.offset:query.offset + query.limit]
        total = len(found) if query.count_limit is None else min(len(found),
                                                                 query.count_limit + 1)
        return [_row(r) for r in page], total

    def events(self, task_id: str) -> list[TaskEvent]:
        with self._lock:
            self._check()
            return list(self._events.get(task_id, []))

    def retries(self, task_id: str, *, owner: str | None = None) -> list[TaskRow]:
        with self._lock:
            self._check()
            found = [r for r in self._tasks.values() if r.retry_of == task_id
                     and (owner is None or r.owner == owner)]
        return [_row(r) for r in sorted(found, key=lambda r: (r.queued_at, r.id))]

    def worker_seen(self, name: str, *, pid: int | None, queues: Iterable[str],
                    started_at: dt.datetime | None, now: dt.datetime | None = None) -> None:
        with self._lock:
            self._check()
            self._workers[name] = WorkerRow(name, pid, sorted(queues), started_at,
                                            now or utcnow())

    def worker_gone(self, name: str) -> None:
        with self._lock:
            self._check()
            self._workers.pop(name, None)

    def workers(self) -> list[WorkerRow]:
        with self._lock:
            self._check()
            return sorted(self._workers.values(), key=lambda w: w.seen_at, reverse=True)

    def shared_secret(self, name: str) -> bytes:
        with self._lock:
            self._check()
            return self._secrets.setdefault(name, os.urandom(32))

    def ids(self, statuses: Iterable[str]) -> list[str]:
        wanted = set(statuses)
        with self._lock:
            self._check()
            return [r.id for r in self._tasks.values() if r.status in wanted]

    def was_purged(self, task_id: str, *, owner: str | None = None) -> bool:
        with self._lock:
            self._check()
            tomb = self._purged.get(task_id)
            return tomb is not None and (owner is None or tomb[0] == owner)

    # --- maintenance -------------------------------------------------------------------

    def stale_started(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        with self._lock:
            self._check()
            stale = [r for r in self._tasks.values() if r.status == STARTED
                     and r.heartbeat_at is not None and r.heartbeat_at < cutoff]
            stale.sort(key=lambda r: r.heartbeat_at or cutoff)
            return [_copy(r) for r in stale[:limit]]

    def reclaim_stale(self, task_id: str, cutoff: dt.datetime, *, status: str,
                      error: str) -> bool:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            if (record is None or record.status != STARTED or record.heartbeat_at is None
                    or record.heartbeat_at >= cutoff):
                return False
            now = utcnow()
            changes: dict[str, Any] = {"status": status, "error": error, "ended_at": now}
            if status in TERMINAL:
                changes.update(completed_at=now, progress=100)
            self._set(task_id, now, **changes)
            self._event(task_id, status, now, message=error, actor="reaper")
        self._changed(task_id)
        return True

    def quiet_retries(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        with self._lock:
            self._check()
            quiet = [r for r in self._tasks.values()
                     if r.status == RETRY and self._updated[r.id] < cutoff][:limit]
            return [_copy(r) for r in quiet]

    def waiting(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        with self._lock:
            self._check()
            found = [r for r in self._tasks.values()
                     if r.status in (QUEUED, RETRY) and self._updated[r.id] < cutoff]
            return sorted(found, key=lambda r: self._updated[r.id])[:limit]

    def abandon(self, task_id: str, *, error: str, unchanged_since: dt.datetime) -> bool:
        with self._lock:
            self._check()
            record = self._tasks.get(task_id)
            if (record is None or record.status not in (QUEUED, RETRY)
                    or self._updated[task_id] >= unchanged_since):
                return False
            now = utcnow()
            self._set(task_id, now, status=FAILURE, error=error, completed_at=now,
                      ended_at=now, progress=100)
            self._event(task_id, FAILURE, now, message=error, actor="reaper")
        self._changed(task_id)
        return True

    def touch(self, task_id: str, *, unchanged_since: dt.datetime | None = None) -> bool:
        with self._lock:
            self._check()
            if task_id not in self._tasks:
                return False
            if unchanged_since is not None and self._updated[task_id] >= unchanged_since:
                return False
            self._updated[task_id] = utcnow()
            return True

    def purge(self, completed_before: dt.datetime, *, limit: int = 5000,
              now: dt.datetime | None = None) -> int:
        with self._lock:
            self._check()
            victims = [r for r in self._tasks.values() if r.status in TERMINAL
                       and r.completed_at is not None and r.completed_at < completed_before]
            for r in victims[:limit]:
                del self._tasks[r.id]
                del self._updated[r.id]
                self._events.pop(r.id, None)
                self._purged[r.id] = (r.owner, now or utcnow())
            return len(victims[:limit])

    def purge_tombstones(self, purged_before: dt.datetime) -> int:
        with self._lock:
            self._check()
            old = [k for k, (_, at) in self._purged.items() if at < purged_before]
            for k in old:
                del self._purged[k]
            return len(old)

    def ping(self) -> None:
        self._check()
