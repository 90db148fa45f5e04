"""Validation middleware: reject malformed requests before anything is enqueued or read."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from taskbroker.core.contract.registry import Registry
from taskbroker.core.pipeline.chain import OPERATION_ARGUMENTS, Call, Middleware
from taskbroker.core.pipeline.errors import InvalidRequest
from taskbroker.core.pipeline.models import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT
from taskbroker.core.ports import ACTIVE, SORT_KEYS, TERMINAL, TaskQuery

#: every state a ledger record can be in
LEDGER_STATES = ACTIVE + TERMINAL

__all__ = ["ValidationMiddleware", "check_arguments", "check_text"]

#: C0 control characters and DEL; free text may keep tab, newline and carriage return
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def check_text(value: Any, path: str, *, free_text: bool = False) -> None:
    """Refuse control characters in ``value`` (a string, or every key and string inside a JSON
    structure) with an InvalidRequest naming the field's path.

    Ids, keys and names may hold none; ``free_text`` allows tab, newline and carriage return.
    """
    pattern = _CONTROL_IN_TEXT if free_text else _CONTROL
    if isinstance(value, str):
        found = pattern.search(value)
        if found:
            raise InvalidRequest(
                f"{path}: contains the control character {found.group()!r} at position "
                f"{found.start()}; accepted: printable text"
                + (" (tab, newline and carriage return allowed)" if free_text else ""))
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), f"{path} (a key)")
            check_text(item, _join(path, str(key)), free_text=free_text)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_text(item, f"{path}[{i}]", free_text=free_text)


def check_arguments(args: Mapping[str, Any], accepted: Sequence[str]) -> None:
    """Refuse an argument not in ``accepted`` with an InvalidRequest naming it and listing
    what is accepted."""
    unexpected = sorted(str(k) for k in args if k not in accepted)
    if unexpected:
        raise InvalidRequest(f"{unexpected[0][:80]}: unexpected argument; accepted: "
                             + (", ".join(accepted) or "none"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key[:40]!r}]"

_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


#: the largest page and offset a history search may ask for
MAX_SEARCH_LIMIT, MAX_SEARCH_OFFSET = 200, 100_000


def _check_query(query: object) -> None:
    """A history search's criteria (what an adapter built from a form or a query string)."""
    if not isinstance(query, TaskQuery):
        raise InvalidRequest("query: expected a TaskQuery")
    if not 1 <= query.limit <= MAX_SEARCH_LIMIT:
        raise InvalidRequest(f"limit: expected 1..{MAX_SEARCH_LIMIT}, got {query.limit}")
    if not 0 <= query.offset <= MAX_SEARCH_OFFSET:
        raise InvalidRequest(f"offset: expected 0..{MAX_SEARCH_OFFSET}, got {query.offset}")
    if query.sort not in SORT_KEYS:
        raise InvalidRequest(f"sort: expected one of {', '.join(SORT_KEYS)}, got "
                             f"{query.sort[:40]!r}")
    unknown = [s for s in query.statuses if s not in LEDGER_STATES]
    if unknown:
        raise InvalidRequest(f"status: expected some of {', '.join(LEDGER_STATES)}, got "
                             f"{unknown[0][:40]!r}")
    if query.text is not None:
        if len(query.text) > 200:
            raise InvalidRequest("q: expected at most 200 characters")
        check_text(query.text, "q")


class ValidationMiddleware(Middleware):
    """Checks arguments: task type and params (start), task ids, filters, sizes.

    Every rejection is an :class:`InvalidRequest` (a ``ValueError``) whose message names the
    field and what is accepted.
    """

    def __init__(self, registry: Registry, *, max_params_bytes: int = 65536) -> None:
        self.registry = registry
        self.max_params_bytes = max_params_bytes

    def before(self, call: Call) -> None:
        args = call.args
        check_arguments(args, OPERATION_ARGUMENTS.get(call.operation, ()))
        if call.operation == "start":
            self._check_start(call)
        elif call.operation in ("status", "cancel", "retry", "inspect"):
            task_id = args.get("task_id")
            if not isinstance(task_id, str) or not _TASK_ID.match(task_id):
                shown = task_id if isinstance(task_id, str) else type(task_id).__name__
                raise InvalidRequest(
                    f"task_id: expected a task id as returned by start_background_task_tool "
                    f"(letters, digits, '-', up to 64 characters), got {str(shown)[:80]!r}"
                )
            call.task_id = task_id
        elif call.operation == "list":
            task_type = args.get("task_type")
            if task_type is not None:
                if not isinstance(task_type, str):
                    raise InvalidRequest(f"task_type: expected a task type name (a string), "
                                         f"got {type(task_type).__name__}")
                call.task_type = self.registry.get(task_type)
            limit = args.get("limit", DEFAULT_LIST_LIMIT)
            if (isinstance(limit, bool) or not isinstance(limit, int)
                    or not 1 <= limit <= MAX_LIST_LIMIT):
                raise InvalidRequest(
                    f"limit: expected an integer 1..{MAX_LIST_LIMIT}, got {limit!r}")

        elif call.operation == "search":
            _check_query(args.get("query"))

    def _check_start(self, call: Call) -> None:
        args = call.args
        params = args.get("params")
        if params is not None:
            try:
                size = len(json.dumps(params, default=str))
            except (TypeError, ValueError) as exc:
                raise InvalidRequest(f"params: not JSON-serialisable ({exc})") from None
            if size > self.max_params_bytes:
                raise InvalidRequest(
                    f"params: {size} bytes is over the limit of {self.max_params_bytes} bytes"
                )
            check_text(params, "params", free_text=True)
        task_type = args.get("task_type")
        if isinstance(task_type, str):
            check_text(task_type, "task_type")
        call.task_type, call.params = self.registry.validate(task_type, params)
        priority = args.get("priority")
        if priority is not None and (
            isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9
        ):
            raise InvalidRequest(f"priority: expected an integer 0..9, got {priority!r}")
        key = args.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200):
            raise InvalidRequest("idempotency_key: expected a string of 1..200 characters")
        if key is not None:
            check_text(key, "idempotency_key")
