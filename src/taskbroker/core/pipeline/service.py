"""TaskService: the five operations, each run through the middleware chain.

Adapters (the MCP server, the CLI) build a
:class:`~taskbroker.core.pipeline.principal.Principal` and call these methods; everything else
(identity, authorization, rate limits, validation, tracing, metrics) happens in the chain, so
every adapter gets the same rules.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from taskbroker.core.contract.registry import Registry
from taskbroker.core.estimates import EstimateBook
from taskbroker.core.pipeline.chain import Call, Chain, Middleware
from taskbroker.core.pipeline.errors import (
    BrokerUnavailable,
    InvalidRequest,
    PermissionDenied,
    TaskNotFound,
)
from taskbroker.core.pipeline.models import (
    CLIENT_STATUS,
    DEFAULT_LIST_LIMIT,
    ActiveTask,
    ActiveTasks,
    CancelReceipt,
    StartReceipt,
    TaskDetail,
    TaskStatus,
    TaskTypeInfo,
    WorkersView,
)
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.ports import (
    QUEUED,
    REVOKED,
    STARTED,
    Broker,
  Ledger,
    Rejected,
    TaskQuery,
    TaskRecord,
    TaskRow,
    Unavailable,
    utcnow,
)

__all__ = ["TaskService", "record_to_status"]

log = logging.getLogger("taskbroker.service")


#: the message of a finished task (its last progress message is history by then)
FINAL_MESSAGES = {"success": "finished: success", "failure": "finished: failure",
                  "revoked": "finished: canceled"}


def record_to_status(record: TaskRecord) -> TaskStatus:
    """The client-facing status of a ledger record (seed status values).  A finished task's
    message says that it finished, never its last progress text."""
    status = CLIENT_STATUS[record.status]
    progress = 0 if record.status == QUEUED else record.progress
    message = FINAL_MESSAGES.get(status, record.message)
    return TaskStatus(
        task_id=record.id, status=status, progress=progress, result=record.result,
        error=record.error, started_at=record.started_at, completed_at=record.completed_at,
        task_type=record.task_type, message=message, queued_at=record.queued_at,
        retry_of=record.retry_of,
    )


class TaskService:
    """Start, poll, cancel and list background tasks; describe task types.

    The middleware order is fixed once the first call runs; :meth:`add_middleware` after
    that raises, as in Starlette.
    """

    def __init__(self, registry: Registry, ledger: Ledger, broker: Broker,
                 middleware: Iterable[Middleware] = (), *,
                 plugin_versions: Mapping[str, str | None] | None = None) -> None:
        self.registry = registry
        self.plugin_versions = dict(plugin_versions or {})
        self.ledger = ledger
        self.broker = broker
        self._middleware = list(middleware)
        self._chain: Chain | None = None
        self._lock = threading.Lock()
        self.estimates = EstimateBook(ledger)
        #: each operation's handler (what :meth:`call` dispatches to)
        self._handlers: dict[str, Any] = {
            "start": self._start, "status": self._status, "cancel": self._cancel,
            "list": self._list_active, "list_types": self._list_types, "retry": self._retry,
            "search": self._search, "inspect": self._inspect, "workers": self._workers}

    # --- chain ------------------------------------------------------------------------

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The middleware in call order."""
        return tuple(self._middleware)

    def add_middleware(self, middleware: Middleware, *, index: int | None = None) -> None:
        """Insert ``middleware`` (at ``index``, default last); only before the first call."""
        if self._chain is not None:
            raise RuntimeError("cannot add middleware after the service has started")
        self._middleware.insert(len(self._middleware) if index is None else index, middleware)

    def _run(self, operation: str, principal: Principal | None, args: dict[str, Any],
             handler: Any, extra: dict[str, Any] | None = None) -> Any:
        chain = self._chain
        if chain is None:
            with self._lock:
                if self._chain is None:
                    self._chain = Chain(self._middleware)
                chain = self._chain
        def guarded(call: Call) -> Any:
            # the ports' errors, in the operations' vocabulary (the seed's error kinds)
            try:
                return handler(call)
            except Unavailable as exc:
                raise BrokerUnavailable(str(exc)) from None
            except Rejected as exc:
                raise InvalidRequest(str(exc)) from None

        call = Call(operation, principal, args)
        call.extra.update(extra or {})
        return chain.run(call, guarded)

    # --- operations -------------------------------------------------------------------

    def start(self, principal: Principal | None, task_type: str, params: dict[str, Any] | None
              = None, *, priority: int | None = None,
              idempotency_key: str | None = None) -> StartReceipt:
        """Validate and queue a task; returns at once with its id (seed: start_background_task)."""
        args = {"task_type": task_type, "params": params, "priority": priority,
                "idempotency_key": idempotency_key}
        return self._run("start", principal, args, self._start)

    def status(self, principal: Principal | None, task_id: str) -> TaskStatus:
        """The task's status, progress, result or error (seed: get_task_status)."""
        return self._run("status", principal, {"task_id": task_id}, self._status)

    def cancel(self, principal: Principal | None, task_id: str) -> CancelReceipt:
        """Revoke a queued or running task (seed: cancel_task)."""
        return self._run("cancel", principal, {"task_id": task_id}, self._cancel)

    def list_active(self, principal: Principal | None, task_type: str | None = None, *,
                    limit: int = DEFAULT_LIST_LIMIT) -> ActiveTasks:
        """Queued and running tasks visible to the caller, oldest first (seed:
        list_active_tasks): at most ``limit`` of them (1..MAX_LIST_LIMIT), and ``total_active``
        counting all."""
        return self._run("list", principal, {"task_type": task_type, "limit": limit},
                         self._list_active)

    def list_types(self, principal: Principal | None) -> list[TaskTypeInfo]:
        """Every registered task type with its parameters schema and requirements."""
        return self._run("list_types", principal, {}, self._list_types)

    def retry(self, principal: Principal | None, task_id: str) -> StartReceipt:
        """Start a new task with the type and params of the finished task ``task_id``, linked
        to it by ``retry_of``; the original is left untouched.  The new start passes the whole
        chain again (rate limits, role, validation of the stored params, audit)."""
        return self._run("retry", principal, {"task_id": task_id}, self._retry)

    def search(self, principal: Principal | None, query: TaskQuery) -> tuple[list[TaskRow], int]:
        """One page of the task history matching ``query`` and the total: the caller's own
        tasks (``query.owner`` is replaced by the caller), everybody's for admins."""
        return self._run("search", principal, {"query": query}, self._search)

    def inspect(self, principal: Principal | None, task_id: str) -> TaskDetail:
        """Everything the ledger knows about a task: its record, its timeline and the tasks
        that retry it.  Another user's task is TaskNotFound, like an unknown one."""
        return self._run("inspect", principal, {"task_id": task_id}, self._inspect)

    def workers(self, principal: Principal | None) -> WorkersView:
        """The workers (from their heartbeats) with what each runs now, and the queued and
        running tasks per queue (admins only: it shows every user's work)."""
        return self._run("workers", principal, {}, self._workers)

    def call(self, principal: Principal | None, operation: str,
             arguments: Mapping[str, Any]) -> Any:
        """Run ``operation`` with ``arguments`` exactly as a client sent them (an adapter that
        does not parse them itself): the chain counts the call against the rate limits first,
        then validation refuses wrong types and unknown arguments with a ValueError naming
        the field.  Returns what the operation's method returns."""
        handler = self._handlers.get(operation)
        if handler is None:
            raise InvalidRequest(f"unknown operation {operation!r}; accepted: "
                                 + ", ".join(self._handlers))
        return self._run(operation, principal, dict(arguments), handler)

    # --- handlers (run inside the chain) ----------------------------------------------

    def _start(self, call: Call) -> StartReceipt:
        task_type, params = call.task_type, call.params
        assert task_type is not None and params is not None and call.principal is not None
        principal = call.principal
        task_id = str(uuid.uuid4())
        payload = params.model_dump(mode="json")
        headers = call.extra.get("headers", {})

        queued_at = utcnow()
        existing = self.ledger.create(
            now=queued_at, task_id=task_id, task_type=task_type.name,
            task_name=task_type.celery_name,
            owner=principal.user_id, params=_redact(payload, task_type.secret_params),
            priority=call.args.get("priority"), idempotency_key=call.args.get("idempotency_key"),
            retry_of=call.extra.get("retry_of"), trace_id=_trace_id(headers),
        )
        if existing is None:
            # the record is committed before its message exists, so a worker never sees a
            # message without a record; a failed publish takes the record back
            try:
                self.broker.publish(task_type, task_id, payload, owner=principal.user_id,
                                    roles=principal.roles, priority=call.args.get("priority"),
                                    headers=headers)
            except BaseException:
                self._discard(task_id)
                raise
        estimate = self.estimates.estimate(task_type)
        if existing is not None:
            key = call.args.get("idempotency_key")
            if existing.task_type != task_type.name or existing.params != _redact(
                    payload, task_type.secret_params):
                raise InvalidRequest(
                    f"idempotency_key: {key!r} was already used for a different request (task "
                    f"{existing.id}, {existing.task_type} with other params); repeat that "
                    "request exactly to get its task, or use a new key")
            call.task_id = existing.id
            now = CLIENT_STATUS[existing.status]
            return StartReceipt(
                task_id=existing.id, task_type=existing.task_type, status=now,
                estimated_duration=estimate.text, queued_at=existing.queued_at,
                poll_interval_seconds=estimate.poll_interval_seconds,
                retry_of=existing.retry_of,
                message=f"Task {existing.task_type} was already started with this "
                        f"idempotency_key; returning the original task (now {now}).",
                deduplicated=True,
            )
        call.task_id = task_id
        return StartReceipt(
            task_id=task_id, task_type=task_type.name,
            estimated_duration=estimate.text, queued_at=queued_at,
            poll_interval_seconds=estimate.poll_interval_seconds,
            retry_of=call.extra.get("retry_of"),
            message=f"Task {task_type.name} queued successfully; expected duration "
                    f"{estimate.text}. Wait with wait_for_task_tool, or poll "
                    f"get_task_status_tool every {estimate.poll_interval_seconds:g} s.",
        )

    def _retry(self, call: Call) -> StartReceipt:
        record = self._visible(call)
        assert call.principal is not None
        if not record.terminal:
            raise InvalidRequest(
                f"task_id: task {record.id} is {CLIENT_STATUS[record.status]}; only a finished "
                "task (success, failure or revoked) can be retried")
        task_type = call.task_type
        if task_type is None:
            raise InvalidRequest(f"task_id: task {record.id} is of type {record.task_type!r}, "
                                 "which no loaded plugin provides any more")
        if task_type.secret_params:
            raise InvalidRequest(
                f"task_id: task type {task_type.name!r} takes secret params, which the ledger "
                "does not keep; start it again with start_background_task_tool")
        params = dict(record.params)
        if task_type.caller_param:  # bound to the caller again by authorization
            params.pop(task_type.caller_param, None)
        receipt: StartReceipt = self._run(
            "start", call.principal,
            {"task_type": record.task_type, "params": params, "priority": record.priority,
             "idempotency_key": None},
            self._start, extra={"retry_of": record.id})
        return receipt

    def _discard(self, task_id: str) -> None:
        """Take back the record of a start whose publish failed (the caller gets the error)."""
        try:
            self.ledger.discard(task_id)
        except Exception as exc:  # the database failed too: the reaper re-publishes it later
            log.error("could not discard task %s after a failed publish (%s); the lost-message "
                      "recovery will queue it again", task_id, type(exc).__name__)

    def _lookup(self, call: Call) -> TaskRecord | None:
        """The caller-visible record of ``call.task_id`` (resolving its task type), or None."""
        assert call.task_id is not None
        record = self.ledger.get(call.task_id, owner=call.scope_owner)
        if record is not None and record.task_type in self.registry:
            call.task_type = self.registry.get(record.task_type)
        return record

    def _visible(self, call: Call) -> TaskRecord:
        record = self._lookup(call)
        if record is None:
            raise TaskNotFound(call.task_id or "")
        return record

    def _status(self, call: Call) -> TaskStatus:
        record = self._lookup(call)
        if record is not None:
            return record_to_status(record)
        assert call.task_id is not None
        if self.ledger.was_purged(call.task_id, owner=call.scope_owner):
            return TaskStatus(task_id=call.task_id, status="expired", progress=100,
                              error="the task's record was purged by ledger retention")
        raise TaskNotFound(call.task_id)

    def _cancel(self, call: Call) -> CancelReceipt:
        record = self._visible(call)
        if record.terminal:
            return CancelReceipt(
                task_id=record.id, status=CLIENT_STATUS[record.status], changed=False,
                canceled_at=record.completed_at if record.status == REVOKED else None,
                message=f"Task {record.id} had already finished ({CLIENT_STATUS[record.status]}); "
                        "nothing was changed.",
            )
        assert call.principal is not None
        after, changed = self.ledger.cancel(record.id, owner=call.scope_owner,
                                            by=call.principal.user_id)
        if not changed:  # it finished between our read and the cancel
            assert after is not None
            return CancelReceipt(
                task_id=record.id, status=CLIENT_STATUS[after.status], changed=False,
                canceled_at=None,
                message=f"Task {record.id} finished ({CLIENT_STATUS[after.status]}) before it "
                        "could be canceled; nothing was changed.",
            )
        self.broker.revoke(record.id)
        was_running = record.status == STARTED
        detail = ("it was running: its handler was asked to stop and is terminated if it has "
                  "not stopped within the grace period" if was_running
                  else "it was queued and will not run")
        return CancelReceipt(
            task_id=record.id, status=CLIENT_STATUS[REVOKED], changed=True,
            canceled_at=after.completed_at if after else None,
            message=f"Task {record.id} has been canceled; {detail}.",
        )

    def _list_active(self, call: Call) -> ActiveTasks:
        task_type = call.task_type.name if call.task_type else None
        rows, total = self.ledger.list_active(owner=call.scope_owner, task_type=task_type,
                                              limit=call.args.get("limit", DEFAULT_LIST_LIMIT))
        return ActiveTasks(
            total_active=total,
            tasks=[
                ActiveTask(task_id=r.id, task_name=r.task_name, task_type=r.task_type,
                           status=CLIENT_STATUS[r.status], started_at=r.started_at,
                           queued_at=r.queued_at, progress=r.progress, owner=r.owner)
                for r in rows
            ],
            queried_at=utcnow(),
        )

    def _search(self, call: Call) -> tuple[list[TaskRow], int]:
        query: TaskQuery = call.args["query"]
        if call.scope_owner is not None:
            query = dataclasses.replace(query, owner=call.scope_owner)
        return self.ledger.search(query)

    def _inspect(self, call: Call) -> TaskDetail:
        record = self._visible(call)
        return TaskDetail(record=record, status=record_to_status(record),
                          events=self.ledger.events(record.id),
                          retries=self.ledger.retries(record.id, owner=call.scope_owner))

    def _workers(self, call: Call) -> WorkersView:
        if call.scope_owner is not None:
            raise PermissionDenied("permission denied: the workers view requires the "
                                   "'admin' role")
        running, _ = self.ledger.search(TaskQuery(statuses=(STARTED,), sort="queued_at",
                                                  descending=False, limit=1000))
        by_worker: dict[str, list[TaskRow]] = {}
        for row in running:
            by_worker.setdefault(row.worker or "?", []).append(row)
        queues: dict[str, dict[str, int]] = {}
        for task_type, status, count in self.ledger.active_counts():
            queue = (self.registry.get(task_type).queue if task_type in self.registry
                     else "(unknown type)")
            tally = queues.setdefault(queue, {"queued": 0, "running": 0, "retry": 0})
            key = {QUEUED: "queued", STARTED: "running"}.get(status, "retry")
            tally[key] += count
        for t in self.registry.all():
            queues.setdefault(t.queue, {"queued": 0, "running": 0, "retry": 0})
        return WorkersView(workers=self.ledger.workers(), running=by_worker,
                           queues=dict(sorted(queues.items())), read_at=utcnow())

    def _list_types(self, call: Call) -> list[TaskTypeInfo]:
        return [
            TaskTypeInfo(
                name=t.name, description=t.description, params_schema=self.registry.schema(t.name),
                required_role=t.required_role, mutates=t.mutates,
                estimated_duration=(e := self.estimates.estimate(t)).text,
                median_seconds=e.median_seconds, p90_seconds=e.p90_seconds,
                measured_runs=e.measured_runs, poll_interval_seconds=e.poll_interval_seconds,
                queue=t.queue, plugin=t.plugin,
                plugin_version=self.plugin_versions.get(t.plugin or ""),
                idempotent=t.idempotent,
                soft_time_limit=t.soft_time_limit, time_limit=t.time_limit,
            )
            for t in self.registry.all()
        ]


def _trace_id(headers: Mapping[str, Any]) -> str | None:
    """The trace id in a W3C ``traceparent`` header (``00-<32 hex>-<16 hex>-<flags>``)."""
    parts = str(headers.get("traceparent", "")).split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        return parts[1].lower()
    return None


def _redact(payload: dict[str, Any], secret: frozenset[str]) -> dict[str, Any]:
    if not secret:
        return payload
    return {k: ("***" if k in secret else v) for k, v in payload.items()}
