"""Task status notifications of the tasks extension: ``subscriptions/listen`` with
``notifications.taskIds`` (SEP-2663, "Task Status Notifications").

A client that declared ``io.modelcontextprotocol/tasks`` opens one listen stream naming the
tasks it follows; the stream acknowledges the ids it will report on (the caller's own tasks
that exist: another user's id and an unknown one are left out alike), then carries a
``notifications/tasks`` with the full task, exactly what ``tasks/get`` answers, at once and
each time the task changes, until every one of them is terminal: then the stream ends (with
its ``SubscriptionsListenResult``) unless the client also asked for the SDK's other kinds.

Waking costs what ``wait_for_task_tool`` costs: the process's one :class:`TaskWatcher`
(Redis pub/sub in distributed mode) reads a task only when it changed, so a client following
a task this way costs the server almost nothing per second, unlike polling ``tasks/get``.
Each stream holds one of the user's open-wait slots (``TASKBROKER_MAX_WAITS_PER_USER``), and
a running task is reported at most once a second (each report is a status read, counted
against the user's rate limit; changes in between are merged into the next report).
Listen requests without ``taskIds`` are served by the SDK's own handler, unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    SUBSCRIPTION_ID_META_KEY,
    ServerEvent,
    event_matches,
    event_to_notification,
)
from mcp_types import (
    INVALID_PARAMS,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
)
from pydantic import BaseModel

from taskbroker.core.pipeline.errors import RateLimited
from taskbroker.core.waiting import TaskWatcher, WaitSlots
from taskbroker.mcp.tasks_extension import (
    RATE_LIMITED,
    TASKS_EXTENSION,
    TasksExtension,
    declared,
)

__all__ = ["MAX_TASK_IDS", "TaskListenHandler"]

log = logging.getLogger("taskbroker.mcp")

#: the spec's "Missing required client capability"
MISSING_CAPABILITY = -32021
#: task ids one listen stream may follow
MAX_TASK_IDS = 100
#: a followed task is followed until it ends (the stream's end cancels it sooner)
_FOREVER = 10 * 365 * 86_400.0
#: at most one notification a second per task while it runs (each read counts against the
#: user's status rate limit; a chatty task's changes in between are merged into the next)
MIN_GAP_SECONDS = 1.0


class TaskNotification(BaseModel):
    """``notifications/tasks``: the task as ``tasks/get`` shows it."""

    method: Literal["notifications/tasks"] = "notifications/tasks"
    params: dict[str, Any]


class TaskListenHandler:
    """Serves ``subscriptions/listen``: with ``notifications.taskIds``, task notifications
    (see the module docstring) beside the SDK's kinds; without, the SDK's handler.

    Args:
        bus: the server's subscription bus (list-changed and resource events).
        extension: the tasks extension (ownership, rate limits and the task's shape).
        watcher: the process's task watcher (wake-ups on change).
        slots: the process's per-user cap of open waits.
        max_buffered_events: frames a stream may hold for a client that stopped reading;
            past it the stream ends (the client re-listens and reads the tasks again).
    """

    def __init__(self, bus: SubscriptionBus, extension: TasksExtension, watcher: TaskWatcher,
                 slots: WaitSlots, *, max_buffered_events: int = 1024) -> None:
        self._bus = bus
        self._plain = ListenHandler(bus, max_buffered_events=max_buffered_events)
        self._extension = extension
        self._watcher = watcher
        self._slots = slots
        self._max_buffered = max_buffered_events

    async def __call__(self, ctx: ServerRequestContext[Any, Any],
                       params: SubscriptionsListenRequestParams) -> SubscriptionsListenResult:
        """Serve one listen stream."""
        requested = (params.notifications.model_extra or {}).get("taskIds")
        if requested is None:
            return await self._plain(ctx, params)
        task_ids = _task_ids(requested)
        if not declared(ctx):
            raise MCPError(MISSING_CAPABILITY, "Missing required client capability",
                           data={"requiredCapabilities": {"extensions": {TASKS_EXTENSION: {}}}})
        if ctx.request_id is None:
            raise MCPError(INVALID_PARAMS, "subscriptions/listen requires a request id")
        user = self._extension.caller.principal().user_id
        try:
            async with self._slots.hold(user):
                return await self._serve(ctx, params.notifications, task_ids)
        except RateLimited as exc:
            raise MCPError(RATE_LIMITED, f"RateLimitError: {exc}",
                           data={"retry_after": exc.retry_after}) from None

    async def _serve(self, ctx: ServerRequestContext[Any, Any], requested: SubscriptionFilter,
                     task_ids: list[str]) -> SubscriptionsListenResult:
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: ctx.request_id}
        first: dict[str, dict[str, Any]] = {}
        for task_id in task_ids:  # the caller's own, existing tasks only
            task = await self._read(task_id)
            if task is not None:
                first[task_id] = task
        others = _other_kinds(requested)
        honored = SubscriptionFilter.model_validate(
            {**others.model_dump(by_alias=True, exclude_none=True), "taskIds": list(first)})
        honored_uris = frozenset(others.resource_subscriptions or ())
        send, recv = anyio.create_memory_object_stream[ServerEvent | dict[str, Any]](
            self._max_buffered)

        def put(frame: ServerEvent | dict[str, Any]) -> None:
            try:
                send.send_nowait(frame)
            except anyio.WouldBlock:  # the client stopped reading: end the stream
                log.warning("listen stream %r backlog full; ending it", ctx.request_id)
                send.close()
            except anyio.ClosedResourceError:
                pass

        def deliver(event: ServerEvent) -> None:
            if event_matches(others, honored_uris, event):
                put(event)

        unsubscribe = self._bus.subscribe(deliver) if _any_kind(others) else None
        try:
            ack = SubscriptionsAcknowledgedNotification(
                params=SubscriptionsAcknowledgedNotificationParams(notifications=honored,
                                                                   _meta=meta))
            await ctx.session.send_notification(ack, related_request_id=ctx.request_id)
            async with anyio.create_task_group() as group:
                async def follow_all() -> None:
                    async with anyio.create_task_group() as followers:
                        for task_id, task in first.items():
                            followers.start_soon(self._follow, task_id, task, put)
                    if unsubscribe is None:  # every task ended and nothing else was asked
                        send.close()

                group.start_soon(follow_all)
                async for frame in recv:
                    if isinstance(frame, dict):
                        notification: Any = TaskNotification(params={**frame, "_meta": meta})
                    else:
                        notification = event_to_notification(frame, meta)
                    await ctx.session.send_notification(notification,
                                                        related_request_id=ctx.request_id)
                group.cancel_scope.cancel()
        finally:
            if unsubscribe is not None:
                unsubscribe()
            send.close()
            recv.close()
        return SubscriptionsListenResult(_meta=meta)

    async def _follow(self, task_id: str, task: dict[str, Any], put: Any) -> None:
        """Report ``task`` now, then the task again whenever the watcher sees it change, until
        it is terminal."""
        put(task)
        last = task
        async for _snapshot in self._watcher.follow(task_id, timeout=_FOREVER):
            latest = await self._read(task_id, retry=True)
            if latest is None:  # gone (purged) while followed
                return
            if latest != last:
                put(latest)
                last = latest
            if latest["status"] in ("completed", "cancelled", "failed"):
                return
            await anyio.sleep(MIN_GAP_SECONDS)

    async def _read(self, task_id: str, *, retry: bool = False) -> dict[str, Any] | None:
        """The task as tasks/get shows it to the caller; None when it is unknown, another
        user's or expired.  With ``retry``, a refused or failed read (rate limit, database
        away) is retried after a pause instead of ending the report: the last state must
        not be lost."""
        while True:
            try:
                return await self._extension.detailed(task_id)
            except MCPError as exc:
                if exc.error.code == INVALID_PARAMS:
                    return None
                if not retry:
                    raise
                data = exc.error.data if isinstance(exc.error.data, dict) else {}
                await anyio.sleep(float(data.get("retry_after") or 1.0))


def _task_ids(requested: object) -> list[str]:
    if (not isinstance(requested, list) or len(requested) > MAX_TASK_IDS
            or not all(isinstance(i, str) and 0 < len(i) <= 200 for i in requested)):
        raise MCPError(INVALID_PARAMS, f"notifications.taskIds: a list of at most "
                                       f"{MAX_TASK_IDS} task ids (strings)")
    return list(dict.fromkeys(requested))  # once each, in the client's order


def _other_kinds(requested: SubscriptionFilter) -> SubscriptionFilter:
    """The SDK's kinds the client asked for beside taskIds (all of them are honored)."""
    return SubscriptionFilter(
        tools_list_changed=True if requested.tools_list_changed else None,
        prompts_list_changed=True if requested.prompts_list_changed else None,
        resources_list_changed=True if requested.resources_list_changed else None,
        resource_subscriptions=list(requested.resource_subscriptions)
        if requested.resource_subscriptions else None,
    )


def _any_kind(kinds: SubscriptionFilter) -> bool:
    return bool(kinds.tools_list_changed or kinds.prompts_list_changed
                or kinds.resources_list_changed or kinds.resource_subscriptions)
