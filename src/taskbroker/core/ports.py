"""The ports: what the core needs from a ledger and from a broker, in the core's own words.

Two things are swappable behind these small abstract classes:

* :class:`Ledger`: the durable record of every task (the source of truth for its state).
  Adapters: :mod:`taskbroker.adapters.sql` (SQLite, PostgreSQL) and
  :mod:`taskbroker.adapters.memory` (in process, for fast tests and plugin authors).
* :class:`Broker`: hands a task to the workers and takes it back.  Adapters:
  :mod:`taskbroker.adapters.celery` (Redis, or the filesystem transport) and
  :mod:`taskbroker.adapters.memory` (a stub that runs messages in process on demand).

Errors cross a port in the port's vocabulary (:class:`Unavailable`, :class:`Rejected`,
:class:`PortError`): an adapter translates its driver's exceptions at its edge, so nothing
above the adapters names a sqlalchemy, psycopg, kombu or celery exception.  Every adapter
passes the shared contract suite in ``tests/ports``.
"""

from __future__ import annotations

import abc
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from taskbroker.core.contract.tasktype import TaskType

__all__ = [
    "ACTIVE",
    "FAILURE",
    "QUEUED",
    "RETRY",
    "REVOKED",
    "STARTED",
    "SUCCESS",
    "TERMINAL",
    "ActiveRow",
    "Broker",
    "Ledger",
    "PortError",
    "Rejected",
    "TaskEvent",
    "TaskQuery",
    "TaskRecord",
    "TaskRow",
    "TaskSnapshot",
    "Unavailable",
    "WorkerRow",
    "utcnow",
]

_log = logging.getLogger("taskbroker.ledger")

# --- the ledger's task states ----------------------------------------------------------------
# (what clients see is derived from these in core.pipeline.models)

QUEUED, STARTED, RETRY = "queued", "started", "retry"
SUCCESS, FAILURE, REVOKED = "success", "failure", "revoked"
#: states of a task that may still run
ACTIVE = (QUEUED, STARTED, RETRY)
#: states a task never leaves
TERMINAL = (SUCCESS, FAILURE, REVOKED)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


# --- errors ----------------------------------------------------------------------------------


class PortError(Exception):
    """Base of the errors an adapter raises across a port.

    Messages are written for clients: no SQL, bound parameters, hosts or passwords (the
    adapter logs those itself, or chains the driver's exception for the server log).
    """


class Unavailable(PortError, ConnectionError):
    """The service behind the port (database, broker) cannot be reached right now."""


class Rejected(PortError, ValueError):
    """The service behind the port refused a value (a character or size it cannot store)."""


# --- records ---------------------------------------------------------------------------------


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
    #: the task this one retries (``retry_task_tool``), if any
    retry_of: str | None = None
    #: the OpenTelemetry trace id of the start (32 hex digits), when it was traced
    trace_id: str | None = None

    @property
    def terminal(self) -> bool:
        """True when the task reached success, failure or revoked."""
        return self.status in TERMINAL


class TaskSnapshot(NamedTuple):
    """How far a task is, read cheaply for many tasks at once (waiting clients)."""

    status: str
    progress: int
    message: str | None
    updated_at: dt.datetime


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


class TaskRow(NamedTuple):
    """One task as a history listing shows it (no params or result)."""

    id: str
    task_type: str
    owner: str
    status: str
    progress: int
    message: str | None
    error: str | None
    queued_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    retry_of: str | None
    idempotency_key: str | None
    worker: str | None
    attempts: int


#: what a history listing may be sorted by
SORT_KEYS = ("queued_at", "completed_at", "task_type", "status", "owner")


@dataclass(frozen=True)
class TaskQuery:
    """A search of the task history: every given criterion must hold.

    Attributes:
        owner: only this user's tasks (None: everybody's; the service sets it from the
            caller's scope, never from the request).
        task_types, statuses: only these (ledger states); empty: any.
        since, until: queued at or after / before these times.
        text: a substring of the task id or of its idempotency key.
        worker: only tasks run (last) by this worker.
        sort, descending: the order (one of :data:`SORT_KEYS`; ties by id).
        offset, limit: the page.
        count_limit: count matches up to this many only (the total is then
            ``count_limit + 1``, read "more than count_limit"), so a page of a huge history
            costs what a page costs; None counts them all.
    """

    owner: str | None = None
    task_types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str | None = None
    worker: str | None = None
    sort: str = "queued_at"
    descending: bool = True
    offset: int = 0
    limit: int = 50
    count_limit: int | None = 10_000


class TaskEvent(NamedTuple):
    """One entry of a task's timeline: a start (``actor`` is the worker), a progress message,
    a retry or failure (``message`` is the error), a cancel (``actor`` is who canceled)."""

    at: dt.datetime
    kind: str
    progress: int | None
    message: str | None
    actor: str | None


#: a task's timeline keeps at most this many events (the first ones: a handler that reports
#: a message per item cannot grow it without bound)
MAX_TASK_EVENTS = 500


class WorkerRow(NamedTuple):
    """A worker as its own heartbeat last described it."""

    name: str
    pid: int | None
    queues: list[str]
    started_at: dt.datetime | None
    seen_at: dt.datetime


# --- the ledger ------------------------------------------------------------------------------


class Ledger(abc.ABC):
    """Durable task records with conditional state changes.

    Every state change is conditional on the current state, so concurrent writers (a cancel
    racing a worker, a re-delivered message, two reapers) cannot move a task out of a
    terminal state or start it twice.  Methods raise :class:`Unavailable` when the store
    cannot be reached and :class:`Rejected` when it refuses a value.
    """

    #: called with a task's id after this ledger object changed that task's state or progress
    #: (a start, a progress report, a finish, a cancel, a reaper's verdict): how other
    #: processes learn of changes without polling (see :mod:`taskbroker.core.waiting`).  A
    #: failing hook never fails the write.
    on_change: Callable[[str], None] | None = None

    #: True when :meth:`create`, :meth:`get` and :meth:`count_active` await their statement on
    #: the event loop inside :func:`~taskbroker.core.loop_bridge.run_on_loop` (and every
    #: other method is safe to call there: it runs in a worker thread)
    loop_io: bool = False

    def _changed(self, task_id: str) -> None:
        """Tell :attr:`on_change` that ``task_id`` changed (adapters call it after a write)."""
        hook = self.on_change
        if hook is not None:
            try:
                hook(task_id)
            except Exception as exc:  # a lost notification costs a waiter one fallback poll
                _log.debug("change notification for %s failed (%s)", task_id,
                           type(exc).__name__)

    # --- writes from the service -------------------------------------------------------

    @abc.abstractmethod
    def create(self, *, task_id: str, task_type: str, task_name: str, owner: str,
               params: Mapping[str, Any], priority: int | None = None,
               idempotency_key: str | None = None, retry_of: str | None = None,
               trace_id: str | None = None,
               now: dt.datetime | None = None) -> TaskRecord | None:
        """Insert a queued record, committed before this returns.

        The service publishes the task's message only after this, so a worker never sees a
        message before its record.  With an ``idempotency_key``, concurrent creates for the
        same ``(owner, key)`` insert exactly one record; the others get it back.  Returns None
        when this call inserted the record, else the existing record for the key.
        """

    @abc.abstractmethod
    def discard(self, task_id: str) -> bool:
        """Delete a record that is still queued and was never claimed (its publish failed);
        False when there was none to delete."""

    @abc.abstractmethod
    def by_idempotency_key(self, owner: str, key: str) -> TaskRecord | None:
        """The task ``owner`` started with idempotency ``key``, if any."""

    @abc.abstractmethod
    def cancel(self, task_id: str, *, owner: str | None = None, by: str | None = None,
               now: dt.datetime | None = None) -> tuple[TaskRecord | None, bool]:
        """Mark a non-terminal task revoked and flag it for its handler.

        Returns ``(record, changed)``: the record after the attempt (None when not visible to
        ``owner``) and whether this call revoked it.  ``by`` (who canceled) goes into the
        task's timeline.
        """

    # --- writes from the worker --------------------------------------------------------

    @abc.abstractmethod
    def mark_started(self, task_id: str, *, worker: str | None,
                     now: dt.datetime | None = None) -> bool:
        """Move a queued or retrying, not cancelled task to started; False when it must not
        run (revoked, running elsewhere, finished, or no record)."""

    @abc.abstractmethod
    def heartbeat(self, task_id: str) -> None:
        """Record that the worker running ``task_id`` is alive (only while started)."""

    @abc.abstractmethod
    def report_progress(self, task_id: str, progress: int, message: str | None) -> None:
        """Record handler progress (only while started; a late report changes nothing)."""

    @abc.abstractmethod
    def is_cancel_requested(self, task_id: str) -> bool:
        """True once the task was cancelled (or its record vanished)."""

    @abc.abstractmethod
    def finish(self, task_id: str, *, status: str, result: Mapping[str, Any] | None = None,
               error: str | None = None, now: dt.datetime | None = None) -> bool:
        """End a started task with ``status`` (success, failure or retry); False when it was
        not started any more (cancelled meanwhile, or finished by someone else)."""

    @abc.abstractmethod
    def mark_ended(self, task_id: str, now: dt.datetime | None = None) -> None:
        """Record that the handler process let go of the task (whatever its status)."""

    # --- reads -------------------------------------------------------------------------

    @abc.abstractmethod
    def get(self, task_id: str, *, owner: str | None = None) -> TaskRecord | None:
        """The record for ``task_id`` (None when absent or, with ``owner``, not theirs)."""

    @abc.abstractmethod
    def snapshots(self, task_ids: Iterable[str]) -> dict[str, TaskSnapshot]:
        """Status, progress, message and update time of each of ``task_ids`` that exists, in
        one round trip (no params or results): what a shared watcher of many waiting clients
        reads every interval."""

    @abc.abstractmethod
    def list_active(self, *, owner: str | None = None, task_type: str | None = None,
                    limit: int = 1000) -> tuple[list[ActiveRow], int]:
        """Queued, started and retrying tasks, oldest first (at most ``limit``), and how many
        there are in all."""

    @abc.abstractmethod
    def count_active(self, owner: str) -> int:
        """How many non-terminal tasks ``owner`` has."""

    @abc.abstractmethod
    def active_counts(self) -> list[tuple[str, str, int]]:
        """``(task_type, status, count)`` for every non-terminal combination (for gauges)."""

    def run_seconds(self, task_type: str, *, limit: int = 100) -> list[float]:
        """How long the ``limit`` most recently finished successful tasks of ``task_type`` ran
        (``completed_at - started_at``, seconds), newest first: what estimates are made of.
        The default knows none (estimates then fall back to the type's declared guess)."""
        return []

    # --- the history (the console) ------------------------------------------------------

    @abc.abstractmethod
    def search(self, query: TaskQuery) -> tuple[list[TaskRow], int]:
        """One page of the tasks matching ``query`` and how many match in all."""

    @abc.abstractmethod
    def events(self, task_id: str) -> list[TaskEvent]:
        """The task's timeline (oldest first; at most :data:`MAX_TASK_EVENTS`)."""

    @abc.abstractmethod
    def retries(self, task_id: str, *, owner: str | None = None) -> list[TaskRow]:
        """The tasks started as retries of ``task_id`` (``retry_of``), oldest first."""

    @abc.abstractmethod
    def worker_seen(self, name: str, *, pid: int | None, queues: Iterable[str],
                    started_at: dt.datetime | None, now: dt.datetime | None = None) -> None:
        """Record a worker's heartbeat (insert or update its row)."""

    @abc.abstractmethod
    def worker_gone(self, name: str) -> None:
        """Forget a worker that shut down."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerRow]:
        """Every worker row, most recently seen first (the caller judges liveness)."""

    @abc.abstractmethod
    def shared_secret(self, name: str) -> bytes:
        """A random 32-byte key named ``name``, made by the first caller and the same for
        every process on this ledger from then on (e.g. what signs console sessions, so all
        server replicas accept each other's)."""

    @abc.abstractmethod
    def ids(self, statuses: Iterable[str]) -> list[str]:
        """Ids of tasks in ``statuses`` (maintenance and tests)."""

    @abc.abstractmethod
    def was_purged(self, task_id: str, *, owner: str | None = None) -> bool:
        """True when ``task_id`` existed (for ``owner``) and was removed by retention."""

    # --- maintenance (the reaper) -------------------------------------------------------

    @abc.abstractmethod
    def stale_started(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        """Started tasks whose last heartbeat is older than ``cutoff``, oldest first."""

    @abc.abstractmethod
    def reclaim_stale(self, task_id: str, cutoff: dt.datetime, *, status: str,
                      error: str) -> bool:
        """Move a still-stale started task to ``status`` (retry or failure); False when
        someone else (its worker, another reaper, a cancel) changed it first."""

    @abc.abstractmethod
    def quiet_retries(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        """Tasks waiting in "retry" that nothing touched since ``cutoff``."""

    @abc.abstractmethod
    def waiting(self, cutoff: dt.datetime, limit: int = 500) -> list[TaskRecord]:
        """Queued or retrying tasks that nothing touched since ``cutoff``, oldest first
        (candidates for lost-message recovery)."""

    @abc.abstractmethod
    def abandon(self, task_id: str, *, error: str, unchanged_since: dt.datetime) -> bool:
        """Fail a queued or retrying task that nothing touched since ``unchanged_since`` (its
        message is lost and cannot be rebuilt); False when it moved meanwhile."""

    @abc.abstractmethod
    def touch(self, task_id: str, *, unchanged_since: dt.datetime | None = None) -> bool:
        """Bump the record's update time (a re-publish happened); with ``unchanged_since``,
        only when nothing touched it since then (so one of several reapers wins).  True when
        the record was bumped."""

    @abc.abstractmethod
    def purge(self, completed_before: dt.datetime, *, limit: int = 5000,
              now: dt.datetime | None = None) -> int:
        """Delete terminal records completed before the cutoff, leaving tombstones."""

    @abc.abstractmethod
    def purge_tombstones(self, purged_before: dt.datetime) -> int:
        """Forget purged ids older than the cutoff (they then read as unknown)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise :class:`Unavailable` when the store cannot be reached."""


# --- the broker ------------------------------------------------------------------------------


class Broker(abc.ABC):
    """Hands tasks to workers and takes them back; :class:`Unavailable` when unreachable."""

    #: True when :meth:`publish` awaits its I/O on the event loop inside
    #: :func:`~taskbroker.core.loop_bridge.run_on_loop` (and is safe to call there)
    loop_io: bool = False

    @abc.abstractmethod
    def publish(self, task_type: TaskType, task_id: str, params: Mapping[str, Any], *,
                owner: str, roles: frozenset[str], priority: int | None = None,
                headers: Mapping[str, Any] | None = None) -> None:
        """Hand ``task_id`` to the workers of ``task_type.queue``."""

    @abc.abstractmethod
    def revoke(self, task_id: str, *, terminate: bool = False) -> None:
        """Tell workers not to run ``task_id`` (best effort: the ledger is what stops it)."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise :class:`Unavailable` when the broker cannot be reached."""

    def message_ids(self, queues: Iterable[str]) -> set[str] | None:
        """Ids of the task messages the broker holds on ``queues`` (queued, or delivered and
        not acknowledged yet), or None when it cannot tell (the default).

        Lost-message recovery re-publishes a queued task whose id is missing here.
        """
        return None
