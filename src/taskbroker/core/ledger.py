"""The ledger: our own durable record of every task, the source of truth for its state.

Celery's result backend forgets (results expire, PENDING means "unknown" as much as "queued");
the ledger does not.  It is written on submit, by the worker as the task runs, and by cancel.
Every state change is a conditional UPDATE, so concurrent writers (a cancel racing a worker,
a re-delivered message) cannot move a task out of a terminal state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from taskbroker.core.database import engine_for, url_of

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "ActiveRow",
    "Ledger",
    "TaskRecord",
    "utcnow",
]

QUEUED, STARTED, RETRY = "queued", "started", "retry"
SUCCESS, FAILURE, REVOKED = "success", "failure", "revoked"
ACTIVE = (QUEUED, STARTED, RETRY)
TERMINAL = (SUCCESS, FAILURE, REVOKED)

metadata = MetaData()

tasks = Table(
    "taskbroker_tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("task_type", String(64), nullable=False),
    Column("task_name", String(160), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False, default=0),
    Column("message", Text),
    Column("result", JSON),
    Column("error", Text),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("worker", String(255)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("priority", Integer),
    Column("idempotency_key", String(200)),
    UniqueConstraint("owner", "idempotency_key", name="uq_taskbroker_tasks_idem"),
    Index("ix_taskbroker_tasks_status", "status", "task_type"),
    Index("ix_taskbroker_tasks_owner_status", "owner", "status"),
    Index("ix_taskbroker_tasks_completed", "completed_at"),
)

purged = Table(
    "taskbroker_purged",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("purged_at", DateTime(timezone=True), nullable=False),
)


# statements built once (building them per call costs more than the round trip on a hot path)
_INSERT = insert(tasks)
_GET = select(tasks).where(tasks.c.id == bindparam("id"))
_GET_OWNED = select(tasks).where(tasks.c.id == bindparam("id"), tasks.c.owner == bindparam("owner"))
#: the columns a listing of active tasks shows
ACTIVE_COLUMNS = (tasks.c.id, tasks.c.task_name, tasks.c.task_type, tasks.c.status,
                  tasks.c.started_at, tasks.c.queued_at, tasks.c.progress, tasks.c.owner)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class TaskRecord:
    """One task as the ledger knows it."""

    id: str
    task_type: str
    task_name: str
    owner: str
    params: dict[str, Any]
    status: str
    progress: int
    message: str | None
    result: dict[str, Any] | None
    error: str | None
    queued_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    ended_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    cancel_requested: bool
    worker: str | None
    attempts: int
    priority: int | None
    idempotency_key: str | None

    @property
    def terminal(self) -> bool:
        """True when the task reached success, failure or revoked."""
        return self.status in TERMINAL

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TaskRecord:
        """Build a record from a result row of the tasks table."""
        values = {c: row[c] for c in cls.__dataclass_fields__}
        for key in ("queued_at", "started_at", "completed_at", "ended_at", "heartbeat_at"):
            values[key] = _aware(values[key])
        return cls(**values)


class ActiveRow(NamedTuple):
    """One active task as a listing shows it."""

    id: str
    task_name: str
    task_type: str
    status: str
    started_at: dt.datetime | None
    queued_at: dt.datetime
    progress: int
    owner: str


class Ledger:
    """Reads and conditional writes of task records over one SQLAlchemy engine."""

    def __init__(self, engine: Engine, *, create: bool = True) -> None:
        self.engine = engine
        #: twin engine in autocommit mode: one round trip per single-statement read or write
        self.ac = engine_for(url_of(engine), autocommit=True)
        if create:
            metadata.create_all(engine)

    # --- writes from the service ------------------------------------------------------

    def create(
        self,
        *,
        task_id: str,
        task_type: str,
        task_name: str,
        owner: str,
        params: Mapping[str, Any],
        priority: int | None = None,
        idempotency_key: str | None = None,
        now: dt.datetime | None = None,
        publish: Callable[[], None] | None = None,
    ) -> TaskRecord | None:
        """Insert a queued record and publish its message.

        Without an ``idempotency_key`` (the fast path) the message is published first and the
        record inserted after it in one autocommitted statement: a failed publish leaves no
        record, and a failed insert (or a crash between the two) leaves a message without a
        record, which the worker drops after a short wait; the caller never received that
        id, so nothing accepted is lost and no record is ever left queued without a message.
        A worker that sees the message before the insert lands waits for it.

        With an ``idempotency_key`` the insert and the publish share one transaction, so
        concurrent starts with the same key queue exactly one message: the others wait on
        the unique index, publish nothing, and get the original record back.

        Returns None when the record was inserted, else the existing record for the key.
        """
        now = now or utcnow()
        values = dict(
            id=task_id, task_type=task_type, task_name=task_name, owner=owner,
            params=dict(params), status=QUEUED, progress=0, queued_at=now, updated_at=now,
            cancel_requested=False, attempts=0, priority=priority,
            idempotency_key=idempotency_key,
        )
        if idempotency_key is None:
            if publish is not None:
                publish()
            with self.ac.connect() as conn:
                conn.execute(_INSERT, values)
            return None
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT, values)
                if publish is not None:
                    publish()
        except IntegrityError:
            existing = self.by_idempotency_key(owner, idempotency_key)
            if existing is None:  # the holder vanished between insert and read: retry once
                return self.create(task_id=task_id, task_type=task_type, task_name=task_name,
                                   owner=owner, params=params, priority=priority,
                                   idempotency_key=idempotency_key, now=now, publish=publish)
            return existing
        return None

    def by_idempotency_key(self, owner: str, key: str) -> TaskRecord | None:
        """The task ``owner`` started with idempotency ``key``, if any."""
        with self.ac.connect() as conn:
            row = conn.execute(
                select(tasks).where(tasks.c.owner == owner, tasks.c.idempotency_key == key)
            ).mappings().first()
        return TaskRecord.from_row(row) if row else None

    def heartbeat(self, task_id: str) -> None:
        """Record that the worker running ``task_id`` is alive."""
        now = utcnow()
        with self.ac.connect() as conn:
            conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status == STARTED)
                         .values(heartbeat_at=now))

    def cancel(self, task_id: str, *, owner: str | None = None,
               now: dt.datetime | None = None) -> tuple[TaskRecord | None, bool]:
        """Mark a non-terminal task revoked and flag it for its handler.

        Returns ``(record, changed)``: the record after the attempt (None when not visible to
        ``owner``) and whether this call revoked it.
        """
        now = now or utcnow()
        cond = [tasks.c.id == task_id, tasks.c.status.in_(ACTIVE)]
        if owner is not None:
            cond.append(tasks.c.owner == owner)
        with self.ac.connect() as conn:
            changed = conn.execute(
                update(tasks).where(and_(*cond)).values(
                    status=REVOKED, cancel_requested=True, completed_at=now, updated_at=now,
                    progress=100, message="canceled",
                )
            ).rowcount
        return self.get(task_id, owner=owner), bool(changed)

    # --- writes from the worker -------------------------------------------------------

    def mark_started(self, task_id: str, *, worker: str | None,
                     now: dt.datetime | None = None) -> bool:
        """Move a queued (or retrying) task to started; False when it must not run.

        False means the task was revoked, already running elsewhere, or already finished:
        the caller must then skip the handler (this is what makes re-delivery safe).
        """
        now = now or utcnow()
        with self.ac.connect() as conn:
            changed = conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.status.in_((QUEUED, RETRY)),
                       tasks.c.cancel_requested.is_(False))
                .values(status=STARTED, started_at=func.coalesce(tasks.c.started_at, now),
                        heartbeat_at=now, ended_at=None, updated_at=now, worker=worker,
                        attempts=tasks.c.attempts + 1, progress=0, message=None)
            ).rowcount
        return bool(changed)

    def report_progress(self, task_id: str, progress: int, message: str | None) -> None:
        """Record handler progress (only while started; a late report changes nothing)."""
        now = utcnow()
        values: dict[str, Any] = dict(progress=progress, heartbeat_at=now, updated_at=now)
        if message is not None:
            values["message"] = message[:2000]
        with self.ac.connect() as conn:
            conn.execute(
                update(tasks).where(tasks.c.id == task_id, tasks.c.status == STARTED)
                .values(**values)
            )

    def is_cancel_requested(self, task_id: str) -> bool:
        """True once the task was cancelled (or vanished)."""
        with self.ac.connect() as conn:
            value = conn.execute(
                select(tasks.c.cancel_requested).where(tasks.c.id == task_id)
            ).scalar_one_or_none()
        return value is None or bool(value)

    def finish(self, task_id: str, *, status: str, result: Mapping[str, Any] | None = None,
               error: str | None = None, now: dt.datetime | None = None) -> bool:
        """End a started task with ``status`` (success, failure or retry); False if it was not
        started any more (cancelled meanwhile, or finished by someone else)."""
        now = now or utcnow()
        values: dict[str, Any] = dict(status=status, ended_at=now, updated_at=now, error=error)
        if status in TERMINAL:
            values.update(completed_at=now, progress=100)
        if result is not None:
            values["result"] = dict(result)
        with self.ac.connect() as conn:
            changed = conn.execute(
                update(tasks).where(tasks.c.id == task_id, tasks.c.status == STARTED)
                .values(**values)
            ).rowcount
        return bool(changed)

    def mark_ended(self, task_id: str, now: dt.datetime | None = None) -> None:
        """Record that the handler process let go of the task (whatever its status)."""
        now = now or utcnow()
        with self.ac.connect() as conn:
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(ended_at=now))

    def fail_unstarted(self, task_id: str, error: str, now: dt.datetime | None = None) -> bool:
        """Fail a task that never got to run (e.g. rejected by the worker before start)."""
        now = now or utcnow()
        with self.ac.connect() as conn:
            changed = conn.execute(
                update(tasks).where(tasks.c.id == task_id, tasks.c.status.in_(ACTIVE))
                .values(status=FAILURE, error=error, completed_at=now, ended_at=now,
                        updated_at=now, progress=100)
            ).rowcount
        return bool(changed)

    # --- reads ------------------------------------------------------------------------

    def get(self, task_id: str, *, owner: str | None = None) -> TaskRecord | None:
        """The record for ``task_id`` (None when absent or, with ``owner``, not theirs)."""
        with self.ac.connect() as conn:
            if owner is None:
                row = conn.execute(_GET, {"id": task_id}).mappings().first()
            else:
                row = conn.execute(_GET_OWNED, {"id": task_id, "owner": owner}).mappings().first()
        return TaskRecord.from_row(row) if row else None

    def list_active(self, *, owner: str | None = None, task_type: str | None = None,
                    limit: int = 1000) -> tuple[list[ActiveRow], int]:
        """Queued, started and retrying tasks, oldest first, and how many there are in all.

        Only the columns a listing shows are read (no params, results or errors).
        """
        cond = [tasks.c.status.in_(ACTIVE)]
        if owner is not None:
            cond.append(tasks.c.owner == owner)
        if task_type is not None:
            cond.append(tasks.c.task_type == task_type)
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(*ACTIVE_COLUMNS).where(*cond).order_by(tasks.c.queued_at).limit(limit)
            ).all()
            total = len(rows)
            if total >= limit:
                total = conn.execute(
                    select(func.count()).select_from(tasks).where(*cond)
                ).scalar_one()
        return [ActiveRow(r[0], r[1], r[2], r[3], _aware(r[4]), _aware(r[5]), r[6], r[7])
                for r in rows], total

    def count_active(self, owner: str) -> int:
        """How many non-terminal tasks ``owner`` has."""
        with self.ac.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(tasks)
                .where(tasks.c.owner == owner, tasks.c.status.in_(ACTIVE))
            ).scalar_one()

    def active_counts(self) -> list[tuple[str, str, int]]:
        """``(task_type, status, count)`` for every non-terminal combination (for gauges)."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks.c.task_type, tasks.c.status, func.count())
                .where(tasks.c.status.in_(ACTIVE)).group_by(tasks.c.task_type, tasks.c.status)
            ).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def ids(self, statuses: Iterable[str]) -> list[str]:
        """Ids of tasks in ``statuses`` (maintenance and tests)."""
        with self.ac.connect() as conn:
            return list(conn.execute(
                select(tasks.c.id).where(tasks.c.status.in_(tuple(statuses)))
            ).scalars())

    def was_purged(self, task_id: str, *, owner: str | None = None) -> bool:
        """True when ``task_id`` existed and was removed by retention."""
        query = select(purged.c.id).where(purged.c.id == task_id)
        if owner is not None:
            query = query.where(purged.c.owner == owner)
        with self.ac.connect() as conn:
            return conn.execute(query).first() is not None

    # --- maintenance (the reaper) ------------------------------------------------------

    def stale_started(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        """Started tasks whose last heartbeat is older than ``cutoff`` (their worker is gone)."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks).where(tasks.c.status == STARTED, tasks.c.heartbeat_at < cutoff)
                .order_by(tasks.c.heartbeat_at).limit(limit)
            ).mappings().all()
        return [TaskRecord.from_row(r) for r in rows]

    def reclaim_stale(self, task_id: str, cutoff: dt.datetime, *, status: str,
                      error: str) -> bool:
        """Move a stale started task to ``status`` (retry or failure); False if someone else
        (its worker, another reaper, a cancel) changed it first."""
        now = utcnow()
        values: dict[str, Any] = dict(status=status, error=error, updated_at=now, ended_at=now)
        if status in TERMINAL:
            values.update(completed_at=now, progress=100)
        with self.ac.connect() as conn:
            changed = conn.execute(
                update(tasks).where(tasks.c.id == task_id, tasks.c.status == STARTED,
                                    tasks.c.heartbeat_at < cutoff).values(**values)
            ).rowcount
        return bool(changed)

    def quiet_retries(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        """Tasks waiting in "retry" that nothing touched since ``cutoff``."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks).where(tasks.c.status == RETRY, tasks.c.updated_at < cutoff)
                .limit(limit)
            ).mappings().all()
        return [TaskRecord.from_row(r) for r in rows]

    def touch(self, task_id: str) -> None:
        """Bump ``updated_at`` (a re-publish happened)."""
        with self.ac.connect() as conn:
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(updated_at=utcnow()))

    def purge(self, completed_before: dt.datetime, *, limit: int = 5000,
              now: dt.datetime | None = None) -> int:
        """Delete terminal records completed before the cutoff, leaving tombstones."""
        now = now or utcnow()
        with self.engine.begin() as conn:
            victims = conn.execute(
                select(tasks.c.id, tasks.c.owner).where(
                    tasks.c.status.in_(TERMINAL), tasks.c.completed_at < completed_before
                ).limit(limit)
            ).all()
            if not victims:
                return 0
            ids = [v[0] for v in victims]
            conn.execute(insert(purged), [
                {"id": v[0], "owner": v[1], "purged_at": now} for v in victims
            ])
            conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))
        return len(victims)

    def purge_tombstones(self, purged_before: dt.datetime) -> int:
        """Forget purged ids older than the cutoff (they then read as unknown)."""
        with self.ac.connect() as conn:
            return conn.execute(delete(purged).where(purged.c.purged_at < purged_before)).rowcount

    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self.ac.connect() as conn:
            conn.execute(select(1))
