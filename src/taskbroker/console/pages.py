"""The console's pages and actions (handlers for :mod:`taskbroker.console.app`).

Each handler parses its request, calls the service as the signed-in principal and renders a
template; the service decides what the caller may see and do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import secrets
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from taskbroker.console.auth import COOKIE, LOGIN_COOKIE, PREFIX
from taskbroker.console.forms import fields_for, params_from
from taskbroker.core.audit import audit
from taskbroker.core.pipeline.errors import InvalidRequest, RateLimited, TaskbrokerError
from taskbroker.core.pipeline.models import CLIENT_STATUS
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.ports import ACTIVE, FAILURE, SORT_KEYS, TaskQuery, TaskRow, utcnow

if TYPE_CHECKING:
    from taskbroker.console.app import Console
    from taskbroker.console.auth import Session

#: rows per page of the task list
PAGE_SIZE = 25
#: a result larger than this is shown cut (the download has all of it)
SHOWN_RESULT_BYTES = 64 * 1024
#: how long one live-update stream lasts (the browser reconnects after)
STREAM_SECONDS = 600.0
#: how often a live list checks whether its page changed (new tasks, finished ones)
LIST_RECHECK_SECONDS = 10.0

#: the client-facing statuses a filter accepts, and the ledger states each means
STATUS_FILTER = {client: ledger for ledger, client in CLIENT_STATUS.items()}

_ERROR_KIND = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*:")


# --- sign-in -----------------------------------------------------------------------------


async def home(request: Request) -> Response:
    """``/ui/``: the task list."""
    return RedirectResponse(f"{PREFIX}/tasks", 303)


def _safe_next(value: str | None) -> str:
    """A same-console redirect target (never another site)."""
    prefix = PREFIX
    if value and value.startswith(f"{prefix}/") and not value.startswith("//") \
            and "\\" not in value:
        return value
    return f"{prefix}/tasks"


async def login_form(request: Request, *, error: str | None = None,
                     status: int = 200) -> Response:
    """The sign-in form (a fresh login nonce in a short-lived cookie, echoed by the form)."""
    console: Console = request.app.state.console
    if console.verifier is None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), 303)
    nonce = secrets.token_urlsafe(16)
    response = console.render(request, "login.html", {
        "next": _safe_next(request.query_params.get("next")), "nonce": nonce,
        "error": error}, session=None, status=status)
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=900, httponly=True, samesite="strict",
                        path=PREFIX, secure=_secure(request))
    return response


async def login(request: Request) -> Response:
    """Verify the pasted token with the MCP server's verifier; on success set the session
    cookie (the token itself is not kept)."""
    console: Console = request.app.state.console
    if console.verifier is None:
        return RedirectResponse(f"{PREFIX}/tasks", 303)
    form = await request.form()
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not nonce or form.get("nonce") != nonce:
        return await login_form(request, error="The sign-in form expired; try again.",
                                status=403)
    if not console.login_allowed(request):
        return await login_form(request, error="Too many sign-in attempts; wait a minute.",
                                status=429)
    token = str(form.get("token") or "").strip()
    access = await console.verifier.verify_token(token) if token else None
    address = request.client.host if request.client else None
    if access is None:
        audit("console.signin_refused", user=None, client=address)
        return await login_form(request, error="That token was not accepted.", status=401)
    principal = Principal(access.subject or access.client_id, frozenset(access.scopes))
    audit("console.signin", user=principal.user_id, client=address, via="token")
    session = console.codec.new(principal, expires_at=access.expires_at)
    response = RedirectResponse(_safe_next(str(form.get("next") or "")), 303)
    _set_session(request, response, console.codec.dumps(session), session.expires_at)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


def _secure(request: Request) -> bool:
    """Cookies go over HTTPS only when the console is reached over HTTPS (directly, or
    through a TLS proxy the configuration names)."""
    console: Console = request.app.state.console
    return request.url.scheme == "https" or console.options.secure_cookies


def _set_session(request: Request, response: Response, value: str, expires_at: float) -> None:
    max_age = max(1, int(expires_at - dt.datetime.now(dt.UTC).timestamp()))
    response.set_cookie(COOKIE, value, max_age=max_age, httponly=True, samesite="strict",
                        path=PREFIX, secure=_secure(request))


async def login_once(request: Request) -> Response:
    """A one-time sign-in link (embedded ``make run`` prints one): spends the code."""
    console: Console = request.app.state.console
    principal = console.codes.redeem(request.query_params.get("code"))
    if principal is None:
        return await login_form(request, error="That sign-in link was used or has expired.",
                                status=401)
    audit("console.signin", user=principal.user_id,
          client=request.client.host if request.client else None, via="one-time link")
    session = console.codec.new(principal)
    response = RedirectResponse(f"{PREFIX}/tasks", 303)
    _set_session(request, response, console.codec.dumps(session), session.expires_at)
    return response


async def logout(request: Request, console: Console, session: Session) -> Response:
    """End the session (the cookie is cleared)."""
    response = RedirectResponse(f"{PREFIX}/login", 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# --- tasks -------------------------------------------------------------------------------


def _date(value: str, field: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), dt.UTC)
    except ValueError:
        raise InvalidRequest(f"{field}: expected a date YYYY-MM-DD, got {value[:40]!r}"
                             ) from None


def parse_query(params: Mapping[str, str], session: Session) -> tuple[TaskQuery, dict[str, str]]:
    """The search a task list's query string asks for, and the filters as given (to show
    them again in the form)."""
    given = {k: str(params.get(k, "")).strip() for k in
             ("type", "status", "owner", "since", "until", "q", "sort", "dir", "page")}
    status = given["status"]
    if status and status not in STATUS_FILTER:
        raise InvalidRequest(f"status: expected one of {', '.join(STATUS_FILTER)}, got "
                             f"{status[:40]!r}")
    sort = given["sort"] or "queued_at"
    if sort not in SORT_KEYS:
        raise InvalidRequest(f"sort: expected one of {', '.join(SORT_KEYS)}")
    page_text = given["page"] or "1"
    if not page_text.isdigit() or not 1 <= int(page_text) <= 4000:
        raise InvalidRequest("page: expected a page number 1..4000")
    until = _date(given["until"], "until")
    query = TaskQuery(
        owner=(given["owner"] or None) if session.principal.is_admin else None,
        task_types=(given["type"],) if given["type"] else (),
        statuses=(STATUS_FILTER[status],) if status else (),
        since=_date(given["since"], "since"),
        until=until + dt.timedelta(days=1) if until else None,
        text=given["q"] or None, sort=sort, descending=given["dir"] != "asc",
        offset=(int(page_text) - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return query, given


def _client(row: TaskRow) -> str:
    return CLIENT_STATUS.get(row.status, row.status)


async def tasks(request: Request, console: Console, session: Session) -> Response:
    """The task list: filters, sort, pages; live progress of the active rows."""
    query, given = parse_query(request.query_params, session)
    rows, total = await console.call(console.service.search, session.principal, query)
    types = sorted(t.name for t in console.service.registry.all())
    page = query.offset // PAGE_SIZE + 1
    capped = query.count_limit is not None and total > query.count_limit
    pages = None if capped else max(1, -(-total // PAGE_SIZE))
    shown_total = f"more than {query.count_limit:,}" if capped else f"{total:,}"

    def link(**changes: Any) -> str:
        merged = {k: v for k, v in {**given, **changes}.items() if v not in ("", None)}
        return f"{PREFIX}/tasks?{urlencode(merged)}"

    return console.render(request, "tasks.html", {
        "rows": rows, "total": total, "shown_total": shown_total, "given": given,
        "types": types, "statuses": list(STATUS_FILTER), "page": page, "pages": pages,
        "has_next": len(rows) == PAGE_SIZE and (pages is None or page < pages), "link": link,
        "client": _client, "sort_keys": SORT_KEYS, "active": ACTIVE,
        "events_url": f"{PREFIX}/events?{request.url.query}"}, session=session)


async def task(request: Request, console: Console, session: Session) -> Response:
    """One task: params, timeline, result (cut when large), error, timings, retries,
    trace, actions."""
    detail = await console.call(console.service.inspect, session.principal,
                                request.path_params["task_id"])
    record = detail.record
    result_text = json.dumps(record.result, indent=2, ensure_ascii=False, default=str) \
        if record.result is not None else None
    cut = result_text is not None and len(result_text.encode()) > SHOWN_RESULT_BYTES
    if cut and result_text is not None:
        result_text = result_text.encode()[:SHOWN_RESULT_BYTES].decode("utf-8", "ignore")
    trace_url = None
    if record.trace_id and console.options.trace_url:
        trace_url = console.options.trace_url.replace("{trace_id}", record.trace_id)
    timings = {
        "queue_wait": _span(record.queued_at, record.started_at),
        "run": _span(record.started_at, record.completed_at),
        "total": _span(record.queued_at, record.completed_at),
    }
    return console.render(request, "task.html", {
        "d": detail, "r": record, "status": detail.status.status, "result_text": result_text,
        "result_cut": cut, "result_bytes": len(json.dumps(record.result).encode())
        if record.result is not None else 0,
        "trace_url": trace_url, "timings": timings, "client": _client,
        "active": record.status in ACTIVE}, session=session)


def _span(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


async def result_json(request: Request, console: Console, session: Session) -> Response:
    """The whole result as a JSON download."""
    detail = await console.call(console.service.inspect, session.principal,
                                request.path_params["task_id"])
    body = json.dumps(detail.record.result, ensure_ascii=False, default=str)
    return Response(body, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="task-{detail.record.id}.json"'})


async def cancel(request: Request, console: Console, session: Session) -> Response:
    """Cancel (the same service call as cancel_task_tool); back to the task."""
    receipt = await console.call(console.service.cancel, session.principal,
                                 request.path_params["task_id"])
    return RedirectResponse(f"{PREFIX}/tasks/{receipt.task_id}", 303)


async def retry(request: Request, console: Console, session: Session) -> Response:
    """Retry (the same service call as retry_task_tool); on to the new task."""
    receipt = await console.call(console.service.retry, session.principal,
                                 request.path_params["task_id"])
    return RedirectResponse(f"{PREFIX}/tasks/{receipt.task_id}", 303)


# --- live updates ------------------------------------------------------------------------


def _snapshot_event(task_id: str, status: str, progress: int, message: str | None
                    ) -> dict[str, str]:
    return {"event": "task", "data": json.dumps({
        "id": task_id, "status": CLIENT_STATUS.get(status, status), "progress": progress,
        "message": message or "", "final": status not in ACTIVE})}


async def _follow(console: Console, task_id: str, send: MemoryObjectSendStream[Any],
                  timeout: float) -> None:
    async with send:
        async for snap in console.watcher.follow(task_id, timeout=timeout):
            await send.send(_snapshot_event(task_id, snap.status, snap.progress, snap.message))


async def task_events(request: Request, console: Console, session: Session) -> Response:
    """Server-sent events of one task's progress until it finishes (the page then shows the
    result).  Visibility is checked once, by the service, before anything is sent."""
    detail = await console.call(console.service.inspect, session.principal,
                                request.path_params["task_id"])
    if (refused := _no_slot(console, session)) is not None:
        return refused
    send, receive = anyio.create_memory_object_stream[Any](100)

    async def produce() -> None:
        async with send:  # closed however it ends, so the response ends too
            with _quiet_refusal():
                async with console.options.slots.hold(session.principal.user_id):
                    await _follow(console, detail.record.id, send, STREAM_SECONDS)

    return EventSourceResponse(receive, data_sender_callable=produce, ping=15)


async def list_events(request: Request, console: Console, session: Session) -> Response:
    """Server-sent events for a task list page: progress of its active rows, and a
    ``changed`` event when the page's rows would differ (new or finished tasks)."""
    query, _ = parse_query(request.query_params, session)
    rows, _total = await console.call(console.service.search, session.principal, query)
    shown = [r.id for r in rows]
    if (refused := _no_slot(console, session)) is not None:
        return refused
    send, receive = anyio.create_memory_object_stream[Any](200)

    async def produce() -> None:
        async with send:  # closed however it ends, so the response ends too
            with _quiet_refusal():
                async with console.options.slots.hold(session.principal.user_id):
                    await _list_updates(console, session, query, rows, shown, send)

    return EventSourceResponse(receive, data_sender_callable=produce, ping=15)


async def _list_updates(console: Console, session: Session, query: Any, rows: list[Any],
                        shown: list[str], send: MemoryObjectSendStream[Any]) -> None:
    """Progress of a list page's active rows, then ``changed`` when its rows would differ."""
    async with send:
        deadline = anyio.current_time() + STREAM_SECONDS
        current = rows
        while anyio.current_time() < deadline:
            active = [r.id for r in current if r.status in ACTIVE]
            async with anyio.create_task_group() as group:
                for task_id in active:
                    group.start_soon(_follow, console, task_id, send.clone(),
                                     LIST_RECHECK_SECONDS)
                if not active:
                    await anyio.sleep(LIST_RECHECK_SECONDS)
            try:
                current, _ = await console.call(console.service.search,
                                                session.principal, query)
            except TaskbrokerError:
                return  # rate limited or unavailable: the browser reconnects later
            if [r.id for r in current] != shown:
                await send.send({"event": "changed", "data": "{}"})
                return


def _no_slot(console: Console, session: Session) -> Response | None:
    """429 when the user holds every wait slot (MCP waits and console streams alike)."""
    if not console.options.slots.full(session.principal.user_id):
        return None
    return PlainTextResponse("too many live updates open at once for this user "
                             "(TASKBROKER_MAX_WAITS_PER_USER); close a page or retry later",
                             status_code=429, headers={"Retry-After": "5"})


@contextlib.contextmanager
def _quiet_refusal() -> Iterator[None]:
    """A stream that lost the race for the last slot just ends (the browser retries)."""
    with contextlib.suppress(RateLimited):
        yield


# --- failures ----------------------------------------------------------------------------


def error_kind(error: str | None) -> str:
    """The kind of an error text (``ValueError: ...`` -> ``ValueError``)."""
    found = _ERROR_KIND.match(error or "")
    return found.group(1) if found else "other"


async def failed(request: Request, console: Console, session: Session) -> Response:
    """Failures of the last days grouped by task type and error kind, to retry one or a
    selection (a dead-letter view over the ledger)."""
    days_text = request.query_params.get("days", "7")
    if not days_text.isdigit() or not 1 <= int(days_text) <= 365:
        raise InvalidRequest("days: expected 1..365")
    since = utcnow() - dt.timedelta(days=int(days_text))
    rows, total = await console.call(console.service.search, session.principal, TaskQuery(
        statuses=(FAILURE,), since=since, limit=200))
    groups: dict[tuple[str, str], list[TaskRow]] = {}
    for row in rows:
        groups.setdefault((row.task_type, error_kind(row.error)), []).append(row)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return console.render(request, "failed.html", {
        "groups": ordered, "total": total, "shown": len(rows), "days": int(days_text)},
        session=session)


async def retry_selected(request: Request, console: Console, session: Session) -> Response:
    """Retry every selected failed task (each one through the service: limits apply per
    task); shows what was started and what was refused."""
    form = await request.form()
    ids = [str(v) for v in form.getlist("task_id")][:50]
    if not ids:
        raise InvalidRequest("task_id: select at least one task")
    started, refused = [], []
    for task_id in ids:
        try:
            receipt = await console.call(console.service.retry, session.principal, task_id)
            started.append((task_id, receipt.task_id))
        except TaskbrokerError as exc:
            refused.append((task_id, str(exc)))
    return console.render(request, "retried.html", {"started": started, "refused": refused},
                          session=session)


# --- workers, queues, beat ---------------------------------------------------------------


async def workers(request: Request, console: Console, session: Session) -> Response:
    """Workers (alive when seen within three heartbeats), what each runs, queue depths from
    the ledger, and the periodic schedule with each entry's last and next run (admins)."""
    view = await console.call(console.service.workers, session.principal)
    lost_after = dt.timedelta(seconds=3 * console.options.heartbeat_seconds)
    rows = [{"w": w, "alive": view.read_at - w.seen_at <= lost_after,
             "running": view.running.get(w.name, [])} for w in view.workers]
    beat = []
    for entry in (console.options.beat() if console.options.beat else []):
        last_rows, _ = await console.call(console.service.search, session.principal, TaskQuery(
            owner=console.options.beat_user, task_types=(entry.task_type,), limit=1))
        last = last_rows[0] if last_rows else None
        due_in = entry.schedule.remaining_estimate(last.queued_at if last else utcnow())
        beat.append({"e": entry, "last": last, "when": entry.describe().split(" ", 2)[-1],
                     "next": utcnow() + max(due_in, dt.timedelta(0))})
    counts = Counter(r["alive"] for r in rows)
    return console.render(request, "workers.html", {
        "rows": rows, "queues": view.queues, "beat": beat, "alive": counts[True],
        "lost": counts[False], "read_at": view.read_at, "client": _client,
        "orphans": {k: v for k, v in view.running.items()
                    if k not in {w.name for w in view.workers}}}, session=session)


# --- task types --------------------------------------------------------------------------


async def types(request: Request, console: Console, session: Session, *,
                errors: dict[str, str] | None = None, status: int = 200,
                values: dict[str, Mapping[str, str]] | None = None) -> Response:
    """Every task type: description, role, measured durations, params schema, a start form."""
    infos = await console.call(console.service.list_types, session.principal)
    cards = [{"t": t, "fields": fields_for(t.params_schema),
              "allowed": session.principal.has_role(t.required_role)} for t in infos]
    return console.render(request, "types.html", {
        "cards": cards, "errors": errors or {}, "values": values or {}}, session=session,
        status=status)


async def start(request: Request, console: Console, session: Session) -> Response:
    """Start a task from its form (validated by the service as an MCP start is)."""
    name = request.path_params["name"]
    form = await request.form()
    submitted = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    try:
        if name not in console.service.registry:
            raise InvalidRequest(f"task_type: unknown task type {name[:60]!r}")
        schema = console.service.registry.schema(name)
        params = params_from(submitted, fields_for(schema))
        receipt = await console.call(console.service.start, session.principal, name, params)
    except InvalidRequest as exc:
        return await types(request, console, session, errors={name: str(exc)}, status=400,
                           values={name: submitted})
    return RedirectResponse(f"{PREFIX}/tasks/{receipt.task_id}", 303)
