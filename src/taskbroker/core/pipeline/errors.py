"""The errors taskbroker operations raise; each is also the builtin the seed contract names.

Adapters (MCP, CLI) turn them into client-facing messages; the messages never carry secrets.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "InvalidRequest",
    "PermissionDenied",
    "RateLimited",
    "TaskNotFound",
    "TaskbrokerError",
    "Unauthenticated",
    "client_text",
]


class TaskbrokerError(Exception):
    """Base class of every error an operation raises on purpose."""

    #: short machine-readable kind, used as the metrics/trace outcome
    outcome = "error"


class InvalidRequest(TaskbrokerError, ValueError):
    """Unknown task type or parameters that do not validate; the message names the field."""

    outcome = "invalid"


class PermissionDenied(TaskbrokerError, PermissionError):
    """The caller is not allowed to do this (missing role, or a caller-bound parameter)."""

    outcome = "denied"


class Unauthenticated(PermissionDenied):
    """No identity could be established for the caller."""


class RateLimited(TaskbrokerError):
    """A per-user limit was hit; ``retry_after`` says in how many seconds to try again."""

    outcome = "rate_limited"

    def __init__(self, message: str, *, limit: str, retry_after: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class TaskNotFound(TaskbrokerError, LookupError):
    """No task with this id is visible to the caller (unknown, or somebody else's)."""

    outcome = "not_found"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task_id {task_id!r}: no such task")
        self.task_id = task_id


class BrokerUnavailable(TaskbrokerError, ConnectionError):
    """The broker or the ledger database could not be reached in time."""

    outcome = "unavailable"


def client_text(exc: BaseException) -> str | None:
    """What a client is told about ``exc``: its documented kind and message, the same text in
    every adapter (MCP tool errors, the CLI); None for an error that is not one of these
    (adapters report those as ``InternalError`` with a reference id)."""
    if isinstance(exc, InvalidRequest):
        return f"ValueError: {exc}"
    if isinstance(exc, PermissionDenied):
        return f"PermissionError: {exc}"
    if isinstance(exc, RateLimited):
        return f"RateLimitError: {exc} (limit {exc.limit}; retry_after={exc.retry_after:.1f} s)"
    if isinstance(exc, TaskNotFound):
        return f"TaskNotFound: {exc}"
    if isinstance(exc, BrokerUnavailable):
        return f"ConnectionError: {exc}"
    return None
