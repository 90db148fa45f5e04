"""Task types the in-process pipeline tests need beyond ``tests.support.sample_plugin``:
retryable failures, a caller-bound parameter, a secret parameter, a handler held at a gate,
and a result JSON cannot hold."""

from __future__ import annotations

import datetime as dt
import threading

from pydantic import BaseModel, ConfigDict, Field

from taskbroker import RetryableError, TaskContext, TaskType, hookimpl

_lock = threading.Lock()
_gates: dict[str, threading.Event] = {}
_calls: dict[str, int] = {}


def gate(name: str) -> threading.Event:
    """The gate ``pipe_gate`` tasks called ``name`` wait at (set it to let them through)."""
    with _lock:
        return _gates.setdefault(name, threading.Event())


class NoisyParams(BaseModel):
    """Nothing to configure."""

    model_config = ConfigDict(extra="forbid")


def always_busy(params: NoisyParams, ctx: TaskContext) -> dict:
    """Always a transient failure."""
    raise RetryableError("upstream busy")


class FlakyParams(BaseModel):
    """Fail transiently ``fail_times`` times, then succeed."""

    model_config = ConfigDict(extra="forbid")
    fail_times: int = Field(ge=0, le=10)


def busy_until(params: FlakyParams, ctx: TaskContext) -> dict:
    """Counts its calls per task; the result says which attempt succeeded."""
    with _lock:
        _calls[ctx.task_id] = attempt = _calls.get(ctx.task_id, 0) + 1
    if attempt <= params.fail_times:
        raise RetryableError(f"busy (attempt {attempt})")
    return {"attempt": attempt}


class ApprovalParams(BaseModel):
    """A change and who approved it (filled in by the service)."""

    model_config = ConfigDict(extra="forbid")
    change: str
    approved_by: str | None = None


def approve(params: ApprovalParams, ctx: TaskContext) -> dict:
    """Returns what it was given."""
    return {"change": params.change, "approved_by": params.approved_by}


class SecretParams(BaseModel):
    """A URL and a token that must never be stored."""

    model_config = ConfigDict(extra="forbid")
    url: str
    token: str


def use_secret(params: SecretParams, ctx: TaskContext) -> dict:
    """Proves it received the real token without returning it."""
    return {"url": params.url, "token_length": len(params.token)}


class GateParams(BaseModel):
    """Which gate to wait at."""

    model_config = ConfigDict(extra="forbid")
    name: str


def wait_at_gate(params: GateParams, ctx: TaskContext) -> dict:
    """Reports 50 % and waits until its gate opens (or it is cancelled)."""
    ctx.progress(50, "at the gate")
    while not gate(params.name).wait(0.01):
        if ctx.cancelled():
            return {"stopped": params.name}
    return {"passed": params.name}


def bad_result(params: NoisyParams, ctx: TaskContext) -> dict:
    """Returns a value JSON cannot hold."""
    return {"when": dt.datetime(2001, 1, 1, tzinfo=dt.UTC)}


@hookimpl
def taskbroker_register_task_types(register) -> None:  # type: ignore[no-untyped-def]
    """Registers the pipeline test task types."""
    register(TaskType(name="pipe_flaky", description="Always busy.", run=always_busy,
                      params=NoisyParams, max_retries=2))
    register(TaskType(name="pipe_flaky_until", description="Busy a few times.", run=busy_until,
                      params=FlakyParams, max_retries=3))
    register(TaskType(name="pipe_approval", description="Needs an approver.", run=approve,
                      params=ApprovalParams, caller_param="approved_by"))
    register(TaskType(name="pipe_secret", description="Takes a secret.", run=use_secret,
                      params=SecretParams, secret_params=frozenset({"token"})))
    register(TaskType(name="pipe_gate", description="Waits at a gate.", run=wait_at_gate,
                      params=GateParams))
    register(TaskType(name="pipe_bad_result", description="Returns a datetime.",
                      run=bad_result, params=NoisyParams))
