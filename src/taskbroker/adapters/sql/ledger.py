"""The SQL ledger: task records in SQLite or PostgreSQL through SQLAlchemy 2 Core.

Every state change is a conditional UPDATE, so concurrent writers (a cancel racing a worker,
a re-delivered message) cannot move a task out of a terminal state.  Single statements run on
an autocommit view of the engine (one round trip each instead of BEGIN + statement + COMMIT);
the view shares the engine's pool, so an in-memory SQLite database is one database.

Database errors are translated at this edge (:func:`_translated`): an unreachable database is
:class:`~taskbroker.core.ports.Unavailable`, a refused value
:class:`~taskbroker.core.ports.Rejected`; a connection that died in the pool (a database
restart) is retried once on a fresh one.

Why one module of ~440 lines: it is one class implementing the whole Ledger port, so every
statement against the tasks table (and the conditions that make each transition safe) can be
read side by side; splitting it by method group would scatter those conditions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

from taskbroker.adapters.sql.direct import direct_statements
from taskbroker.adapters.sql.engine import engine_for
from taskbroker.adapters.sql.tables import purged, task_events, tasks, workers
from taskbroker.adapters.sql.tables import secrets as secret_keys
from taskbroker.core.loop_bridge import off_loop, on_loop
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

__all__ = ["SqlLedger", "loop_native", "translate_db_errors"]

log = logging.getLogger("taskbroker.ledger")

P = ParamSpec("P")
T = TypeVar("T")

_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(TaskRecord))


def _port_error(exc: Exception) -> PortError:
    """The port's error for a database error (its message safe for clients)."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return Unavailable("ledger database unavailable: try again shortly")
    if isinstance(exc, TypeError | ValueError) or (
            isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)):
        # a value the driver or a JSON column cannot take (serialised before the statement)
        return Rejected("the ledger database refused a value (it is not JSON, or not a type "
                        "it can store)")
    if isinstance(exc, DataError):
        return Rejected("the ledger database refused a value (a character or size it cannot "
                        "store)")
    return PortError(f"ledger database error ({type(exc).__name__})")


def translate_db_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Run ``fn``, retrying once on a connection that died in the pool, and translate
    database errors into the port's errors (the original is chained for the server log).

    On the event loop (:func:`~taskbroker.core.loop_bridge.run_on_loop`) ``fn`` runs in a
    worker thread: SQLAlchemy blocks.  Methods whose statements await on the loop are
    decorated with :func:`loop_native` instead."""
    return _translated(fn, native=False)


def loop_native(fn: Callable[P, T]) -> Callable[P, T]:
    """:func:`translate_db_errors` for a method that runs on the event loop when its ledger
    has :attr:`SqlLedger.direct` statements (which await there) and in a worker thread
    otherwise."""
    return _translated(fn, native=True)


def _translated(fn: Callable[P, T], *, native: bool) -> Callable[P, T]:
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if on_loop() and not (native and args[0].direct is not None):  # type: ignore[attr-defined]
            return off_loop(wrapper, *args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise _port_error(exc) from exc
        except (SQLAlchemyError, TypeError, ValueError) as exc:
            if isinstance(exc, PortError):
                raise
            raise _port_error(exc) from exc
        # the pool dropped the dead connection: one more try on a fresh one
        try:
            return fn(*args, **kwargs)
        except (SQLAlchemyError, TypeError, ValueError) as exc:
            if isinstance(exc, PortError):
                raise
            raise _port_error(exc) from exc
    return wrapper


# statements built once (building them per call costs more than the round trip on a hot path)
_INSERT = insert(tasks)
_GET = select(tasks).where(tasks.c.id == bindparam("id"))
_GET_OWNED = select(tasks).where(tasks.c.id == bindparam("id"), tasks.c.owner == bindparam("owner"))
#: the columns a listing of active tasks shows
ACTIVE_COLUMNS = (tasks.c.id, tasks.c.task_name, tasks.c.task_type, tasks.c.status,
                  tasks.c.started_at, tasks.c.queued_at, tasks.c.progress, tasks.c.owner)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


#: the columns a history listing shows (ports.TaskRow)
ROW_COLUMNS = (tasks.c.id, tasks.c.task_type, tasks.c.owner, tasks.c.status, tasks.c.progress,
               tasks.c.message, tasks.c.error, tasks.c.queued_at, tasks.c.started_at,
               tasks.c.completed_at, tasks.c.retry_of, tasks.c.idempotency_key, tasks.c.worker,
               tasks.c.attempts)


def _row(r: Any) -> TaskRow:
    return TaskRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _aware(r[7]), _aware(r[8]),
                   _aware(r[9]), r[10], r[11], r[12], r[13])


def _add_event(conn: Connection, task_id: str, kind: str, at: dt.datetime, *,
               progress: int | None = None, message: str | None = None,
               actor: str | None = None) -> None:
    """Append to a task's timeline unless it holds MAX_TASK_EVENTS already, in one statement
    (INSERT ... SELECT ... WHERE the task's count is under the bound)."""
    held = (select(func.count()).select_from(task_events)
            .where(task_events.c.task_id == task_id).scalar_subquery())
    row = select(
        literal(task_id, String(64)), literal(at, DateTime(timezone=True)),
        literal(kind, String(16)), literal(progress, Integer),
        literal(None if message is None else message[:2000], Text),
        literal(None if actor is None else actor[:255], String(255)),
    ).where(held < MAX_TASK_EVENTS)
    conn.execute(insert(task_events).from_select(
        ["task_id", "at", "kind", "progress", "message", "actor"], row))


def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere (its wildcards escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _record(row: Mapping[str, Any]) -> TaskRecord:
    """A :class:`TaskRecord` from a result row of the tasks table."""
    values = {c: row[c] for c in _RECORD_FIELDS}
    for key in ("queued_at", "started_at", "completed_at", "ended_at", "heartbeat_at"):
        values[key] = _aware(values[key])
    return TaskRecord(**values)


class SqlLedger(Ledger):
    """The :class:`~taskbroker.core.ports.Ledger` over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        """The ledger on ``engine``, whose schema :mod:`.migrate` made (``taskbroker db
        upgrade``, or ``serve``/``worker`` at start)."""
        self.engine = engine
        #: the same pool in autocommit mode: one round trip per single-statement read or write
        self.ac = engine.execution_options(isolation_level="AUTOCOMMIT")
        #: a start's insert and a status's read on the driver's cursor (PostgreSQL + psycopg)
        self.direct = direct_statements(engine)
        self.loop_io = self.direct is not None

    @classmethod
    def from_url(cls, url: str) -> SqlLedger:
        """The ledger on this process's engine for ``url``."""
        return cls(engine_for(url))

    # --- writes from the service ------------------------------------------------------

    @loop_native
    def create(self, *, task_id: str, task_type: str, task_name: str, owner: str,
               params: Mapping[str, Any], priority: int | None = None,
               idempotency_key: str | None = None, retry_of: str | None = None,
               trace_id: str | None = None,
               now: dt.datetime | None = None) -> TaskRecord | None:
        """Insert a queued record in one autocommitted statement (see the port).

        A concurrent create with the same ``(owner, idempotency_key)`` loses on the unique
        index and gets the winner's record back.
        """
        now = now or utcnow()
        values = dict(
            id=task_id, task_type=task_type, task_name=task_name, owner=owner,
            params=dict(params), status=QUEUED, progress=0, queued_at=now, updated_at=now,
            cancel_requested=False, attempts=0, priority=priority,
            idempotency_key=idempotency_key, retry_of=retry_of, trace_id=trace_id,
        )
        try:
            if self.direct is not None:
                self.direct.insert(values)
            else:
                with self.ac.connect() as conn:
                    conn.execute(_INSERT, values)
        except IntegrityError:
            if idempotency_key is not None:
                existing = self.by_idempotency_key(owner, idempotency_key)
                if existing is not None:
                    return existing
            mine = self.get(task_id, owner=owner)
            if mine is not None and mine.task_type == task_type:
                return None  # our own insert landed before a retried statement
            raise
        return None

    @translate_db_errors
    def discard(self, task_id: str) -> bool:
        with self.ac.connect() as conn:
            return bool(conn.execute(
                delete(tasks).where(tasks.c.id == task_id, tasks.c.status == QUEUED,
                                    tasks.c.attempts == 0)
            ).rowcount)

    @translate_db_errors
    def by_idempotency_key(self, owner: str, key: str) -> TaskRecord | None:
        """The task ``owner`` started with idempotency ``key``, if any."""
        with self.ac.connect() as conn:
            row = conn.execute(
                select(tasks).where(tasks.c.owner == owner, tasks.c.idempotency_key == key)
            ).mappings().first()
        return _record(row) if row else None

    @translate_db_errors
    def heartbeat(self, task_id: str) -> None:
        """Record that the worker running ``task_id`` is alive."""
        now = utcnow()
        with self.ac.connect() as conn:
            conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.status == STARTED)
                         .values(heartbeat_at=now))

    @translate_db_errors
    def cancel(self, task_id: str, *, owner: str | None = None, by: str | None = None,
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
            if changed:
                _add_event(conn, task_id, REVOKED, now, actor=by)
                self._changed(task_id)
        return self.get(task_id, owner=owner), bool(changed)

    # --- writes from the worker -------------------------------------------------------

    @translate_db_errors
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
            if changed:
                _add_event(conn, task_id, STARTED, now, actor=worker)
                self._changed(task_id)
        return bool(changed)

    @translate_db_errors
    def report_progress(self, task_id: str, progress: int, message: str | None) -> None:
        """Record handler progress (only while started; a late report changes nothing)."""
        now = utcnow()
        values: dict[str, Any] = dict(progress=progress, heartbeat_at=now, updated_at=now)
        if message is not None:
            values["message"] = message[:2000]
        with self.ac.connect() as conn:
            changed = conn.execute(
                update(tasks).where(tasks.c.id == task_id, tasks.c.status == STARTED)
                .values(**values)
            ).rowcount
            if changed:
                if message is not None:
                    _add_event(conn, task_id, "progress", now, progress=progress,
                               message=message)
                self._changed(task_id)

    @translate_db_errors
    def is_cancel_requested(self, task_id: str) -> bool:
        """True once the task was cancelled (or vanished)."""
        with self.ac.connect() as conn:
            value = conn.execute(
                select(tasks.c.cancel_requested).where(tasks.c.id == task_id)
            ).scalar_one_or_none()
        return value is None or bool(value)

    @translate_db_errors
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
            if changed:
                _add_event(conn, task_id, status, now, message=error)
                self._changed(task_id)
        return bool(changed)

    @translate_db_errors
    def mark_ended(self, task_id: str, now: dt.datetime | None = None) -> None:
        """Record that the handler process let go of the task (whatever its status)."""
        now = now or utcnow()
        with self.ac.connect() as conn:
            conn.execute(update(tasks).where(tasks.c.id == task_id).values(ended_at=now))

    # --- reads ------------------------------------------------------------------------

    @loop_native
    def get(self, task_id: str, *, owner: str | None = None) -> TaskRecord | None:
        """The record for ``task_id`` (None when absent or, with ``owner``, not theirs)."""
        if self.direct is not None:
            found = self.direct.get(task_id, owner)
            return _record(found) if found else None
        with self.ac.connect() as conn:
            if owner is None:
                row = conn.execute(_GET, {"id": task_id}).mappings().first()
            else:
                row = conn.execute(_GET_OWNED, {"id": task_id, "owner": owner}).mappings().first()
        return _record(row) if row else None

    @translate_db_errors
    def snapshots(self, task_ids: Iterable[str]) -> dict[str, TaskSnapshot]:
        wanted = list(dict.fromkeys(task_ids))
        found: dict[str, TaskSnapshot] = {}
        with self.ac.connect() as conn:
            for i in range(0, len(wanted), 1000):
                rows = conn.execute(
                    select(tasks.c.id, tasks.c.status, tasks.c.progress, tasks.c.message,
                           tasks.c.updated_at).where(tasks.c.id.in_(wanted[i:i + 1000]))
                ).all()
                for row in rows:
                    found[row[0]] = TaskSnapshot(row[1], row[2], row[3], _aware(row[4]))
        return found

    @translate_db_errors
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

    # --- the history (the console) ------------------------------------------------------

    @translate_db_errors
    def search(self, query: TaskQuery) -> tuple[list[TaskRow], int]:
        """One page of the matching tasks (listing columns only) and their total count."""
        cond: list[Any] = []
        if query.owner is not None:
            cond.append(tasks.c.owner == query.owner)
        if query.task_types:
            cond.append(tasks.c.task_type.in_(query.task_types))
        if query.statuses:
            cond.append(tasks.c.status.in_(query.statuses))
        if query.since is not None:
            cond.append(tasks.c.queued_at >= query.since)
        if query.until is not None:
            cond.append(tasks.c.queued_at < query.until)
        if query.worker is not None:
            cond.append(tasks.c.worker == query.worker)
        if query.text:
            pattern = _like(query.text)
            cond.append(or_(tasks.c.id.like(pattern, escape="\\"),
                            tasks.c.idempotency_key.like(pattern, escape="\\")))
        if query.sort not in SORT_KEYS:
            raise Rejected(f"sort: expected one of {', '.join(SORT_KEYS)}")
        column = tasks.c[query.sort]
        order = (column.desc(), tasks.c.id.desc()) if query.descending \
            else (column.asc(), tasks.c.id.asc())
        with self.ac.connect() as conn:
            rows = conn.execute(select(*ROW_COLUMNS).where(*cond).order_by(*order)
                                .offset(query.offset).limit(query.limit)).all()
            matching = select(tasks.c.id).where(*cond)
            if query.count_limit is not None:
                matching = matching.limit(query.count_limit + 1)
            total = conn.execute(select(func.count()).select_from(matching.subquery())
                                 ).scalar_one()
        return [_row(r) for r in rows], int(total)

    @translate_db_errors
    def events(self, task_id: str) -> list[TaskEvent]:
        """The task's timeline, oldest first."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(task_events.c.at, task_events.c.kind, task_events.c.progress,
                       task_events.c.message, task_events.c.actor)
                .where(task_events.c.task_id == task_id).order_by(task_events.c.id)
            ).all()
        return [TaskEvent(_aware(r[0]) or r[0], r[1], r[2], r[3], r[4]) for r in rows]

    @translate_db_errors
    def retries(self, task_id: str, *, owner: str | None = None) -> list[TaskRow]:
        """The tasks that retry ``task_id``, oldest first."""
        cond = [tasks.c.retry_of == task_id]
        if owner is not None:
            cond.append(tasks.c.owner == owner)
        with self.ac.connect() as conn:
            rows = conn.execute(select(*ROW_COLUMNS).where(*cond)
                                .order_by(tasks.c.queued_at, tasks.c.id)).all()
        return [_row(r) for r in rows]

    @translate_db_errors
    def worker_seen(self, name: str, *, pid: int | None, queues: Iterable[str],
                    started_at: dt.datetime | None, now: dt.datetime | None = None) -> None:
        """Insert or refresh the worker's row."""
        now = now or utcnow()
        values = {"pid": pid, "queues": sorted(queues), "started_at": started_at,
                  "seen_at": now}
        with self.ac.connect() as conn:
            if not conn.execute(update(workers).where(workers.c.name == name)
                                .values(**values)).rowcount:
                try:
                    conn.execute(insert(workers), {"name": name, **values})
                except IntegrityError:  # a concurrent first heartbeat of the same name
                    conn.execute(update(workers).where(workers.c.name == name).values(**values))

    @translate_db_errors
    def worker_gone(self, name: str) -> None:
        """Delete the worker's row."""
        with self.ac.connect() as conn:
            conn.execute(delete(workers).where(workers.c.name == name))

    @translate_db_errors
    def workers(self) -> list[WorkerRow]:
        """Every worker row, most recently seen first."""
        with self.ac.connect() as conn:
            rows = conn.execute(select(workers.c.name, workers.c.pid, workers.c.queues,
                                       workers.c.started_at, workers.c.seen_at)
                                .order_by(workers.c.seen_at.desc())).all()
        return [WorkerRow(r[0], r[1], list(r[2] or []), _aware(r[3]), _aware(r[4]) or r[4])
                for r in rows]

    @translate_db_errors
    def shared_secret(self, name: str) -> bytes:
        """The key named ``name``: read, else made (a concurrent maker's key wins)."""
        query = select(secret_keys.c.value).where(secret_keys.c.name == name)
        with self.ac.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
            if value is None:
                # another process may make it first: then its key is the one
                with contextlib.suppress(IntegrityError):
                    conn.execute(insert(secret_keys),
                                 {"name": name, "value": os.urandom(32).hex()})
                value = conn.execute(query).scalar_one()
        return bytes.fromhex(value)

    @loop_native
    def count_active(self, owner: str) -> int:
        """How many non-terminal tasks ``owner`` has."""
        if self.direct is not None:
            return self.direct.count_active(owner, ACTIVE)
        with self.ac.connect() as conn:
            return conn.execute(
                select(func.count()).select_from(tasks)
                .where(tasks.c.owner == owner, tasks.c.status.in_(ACTIVE))
            ).scalar_one()

    @translate_db_errors
    def active_counts(self) -> list[tuple[str, str, int]]:
        """``(task_type, status, count)`` for every non-terminal combination (for gauges)."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks.c.task_type, tasks.c.status, func.count())
                .where(tasks.c.status.in_(ACTIVE)).group_by(tasks.c.task_type, tasks.c.status)
            ).all()
        return [(r[0], r[1], int(r[2])) for r in rows]

    @translate_db_errors
    def run_seconds(self, task_type: str, *, limit: int = 100) -> list[float]:
        """Run times of the latest successful tasks of ``task_type``, newest first."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks.c.started_at, tasks.c.completed_at)
                .where(tasks.c.task_type == task_type, tasks.c.status == SUCCESS,
                       tasks.c.started_at.is_not(None), tasks.c.completed_at.is_not(None))
                .order_by(tasks.c.completed_at.desc()).limit(limit)
            ).all()
        return [max(0.0, (done - began).total_seconds())
                for began, done in ((_aware(b), _aware(d)) for b, d in rows)
                if began is not None and done is not None]

    @translate_db_errors
    def ids(self, statuses: Iterable[str]) -> list[str]:
        """Ids of tasks in ``statuses`` (maintenance and tests)."""
        with self.ac.connect() as conn:
            return list(conn.execute(
                select(tasks.c.id).where(tasks.c.status.in_(tuple(statuses)))
            ).scalars())

    @translate_db_errors
    def was_purged(self, task_id: str, *, owner: str | None = None) -> bool:
        """True when ``task_id`` existed and was removed by retention."""
        query = select(purged.c.id).where(purged.c.id == task_id)
        if owner is not None:
            query = query.where(purged.c.owner == owner)
        with self.ac.connect() as conn:
            return conn.execute(query).first() is not None

    # --- maintenance (the reaper) ------------------------------------------------------

    @translate_db_errors
    def stale_started(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        """Started tasks whose last heartbeat is older than ``cutoff`` (their worker is gone)."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks).where(tasks.c.status == STARTED, tasks.c.heartbeat_at < cutoff)
                .order_by(tasks.c.heartbeat_at).limit(limit)
            ).mappings().all()
        return [_record(r) for r in rows]

    @translate_db_errors
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
            if changed:
                _add_event(conn, task_id, status, now, message=error, actor="reaper")
                self._changed(task_id)
        return bool(changed)

    @translate_db_errors
    def quiet_retries(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        """Tasks waiting in "retry" that nothing touched since ``cutoff``."""
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks).where(tasks.c.status == RETRY, tasks.c.updated_at < cutoff)
                .limit(limit)
            ).mappings().all()
        return [_record(r) for r in rows]

    @translate_db_errors
    def waiting(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        with self.ac.connect() as conn:
            rows = conn.execute(
                select(tasks).where(tasks.c.status.in_((QUEUED, RETRY)),
                                    tasks.c.updated_at < cutoff)
                .order_by(tasks.c.updated_at).limit(limit)
            ).mappings().all()
        return [_record(r) for r in rows]

    @translate_db_errors
    def abandon(self, task_id: str, *, error: str, unchanged_since: dt.datetime) -> bool:
        now = utcnow()
        with self.ac.connect() as conn:
            changed = conn.execute(
                update(tasks).where(tasks.c.id == task_id, tasks.c.status.in_((QUEUED, RETRY)),
                                    tasks.c.updated_at < unchanged_since)
                .values(status=FAILURE, error=error, completed_at=now, ended_at=now,
                        updated_at=now, progress=100)
            ).rowcount
            if changed:
                _add_event(conn, task_id, FAILURE, now, message=error, actor="reaper")
                self._changed(task_id)
        return bool(changed)

    @translate_db_errors
    def touch(self, task_id: str, *, unchanged_since: dt.datetime | None = None) -> bool:
        cond = [tasks.c.id == task_id]
        if unchanged_since is not None:
            cond.append(tasks.c.updated_at < unchanged_since)
        with self.ac.connect() as conn:
            return bool(conn.execute(update(tasks).where(*cond).values(updated_at=utcnow()))
                        .rowcount)

    @translate_db_errors
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
            conn.execute(delete(task_events).where(task_events.c.task_id.in_(ids)))
            conn.execute(delete(tasks).where(tasks.c.id.in_(ids)))
        return len(victims)

    @translate_db_errors
    def purge_tombstones(self, purged_before: dt.datetime) -> int:
        """Forget purged ids older than the cutoff (they then read as unknown)."""
        with self.ac.connect() as conn:
            return conn.execute(delete(purged).where(purged.c.purged_at < purged_before)).rowcount

    @translate_db_errors
    def ping(self) -> None:
        """Raise when the database cannot be reached."""
        with self.ac.connect() as conn:
            conn.execute(select(1))
