"""Task types used by the tests, loaded into workers through TASKBROKER_PLUGIN_MODULES."""

from __future__ import annotations

import contextlib
import time

from pydantic import BaseModel, ConfigDict, Field

from taskbroker import NoParams, TaskContext, TaskType, hookimpl


class CountParams(BaseModel):
    """Count to ``n``, ``step_ms`` milliseconds per step."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(default=5, ge=1, le=1000)
    step_ms: int = Field(default=20, ge=0, le=10_000)


def count(params: CountParams, ctx: TaskContext) -> dict:
    """Reports progress at every step; the result is the sum 1..n."""
    total = 0
    for i in range(1, params.n + 1):
        ctx.raise_if_cancelled()
        total += i
        ctx.progress(100 * i / params.n, f"step {i}/{params.n}")
        time.sleep(params.step_ms / 1000)
    return {"sum": total, "steps": params.n}


class SleepParams(BaseModel):
    """Sleep cooperatively for ``seconds``."""

    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=1.0, ge=0, le=600)
    marker: str | None = None


def sleep(params: SleepParams, ctx: TaskContext) -> dict:
    """Sleeps in 20 ms slices and stops as soon as it is cancelled."""
    deadline = time.monotonic() + params.seconds
    ctx.progress(10, "sleeping")
    while time.monotonic() < deadline:
        if ctx.cancelled():
            return {"stopped": "cancelled"}
        time.sleep(0.02)
    return {"slept": params.seconds, "marker": params.marker}


def stubborn(params: SleepParams, ctx: TaskContext) -> dict:
    """Ignores cancellation entirely (the watchdog must terminate it)."""
    ctx.progress(10, "not listening")
    time.sleep(params.seconds)
    return {"slept": params.seconds}


class FailParams(BaseModel):
    """Fail with ``message``."""

    model_config = ConfigDict(extra="forbid")
    message: str = "boom"


def fail(params: FailParams, ctx: TaskContext) -> dict:
    """Always raises RuntimeError(message)."""
    raise RuntimeError(params.message)


class MarkerParams(BaseModel):
    """Create the file ``path`` when run."""

    model_config = ConfigDict(extra="forbid")
    path: str


def touch(params: MarkerParams, ctx: TaskContext) -> dict:
    """Creates the marker file, proving the handler ran."""
    with open(params.path, "a") as fh:
        fh.write(ctx.task_id + "\n")
    return {"path": params.path}


class WorkParams(BaseModel):
    """Work ``ms`` milliseconds, then append the task id to ``record``."""

    model_config = ConfigDict(extra="forbid")
    ms: int = Field(default=100, ge=0, le=60_000)
    record: str


def work_and_record(params: WorkParams, ctx: TaskContext) -> dict:
    """Sleeps, then records its completion (one line per completed run)."""
    time.sleep(params.ms / 1000)
    with open(params.record, "a") as fh:
        fh.write(ctx.task_id + "\n")
    return {"done": True}


class LimitParams(BaseModel):
    """Run for ``seconds``; write ``cleanup`` when the soft limit interrupts."""

    model_config = ConfigDict(extra="forbid")
    seconds: float = 30
    cleanup: str | None = None


def overrun(params: LimitParams, ctx: TaskContext) -> dict:
    """Runs past its time limit; its ``finally`` records that it could clean up."""
    try:
        deadline = time.monotonic() + params.seconds
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return {"finished": True}
    finally:
        if params.cleanup:
            with open(params.cleanup, "w") as fh:
                fh.write("cleaned up")


def ignore_soft_limit(params: LimitParams, ctx: TaskContext) -> dict:
    """Swallows the soft limit and keeps going: only the hard limit stops it."""
    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.05)
    return {"finished": True}


def echo(params: NoParams, ctx: TaskContext) -> dict:
    """Returns who ran it."""
    return {"owner": ctx.owner}


class RosterParams(BaseModel):
    """A staff member's name (personal data: logs must never show it)."""

    model_config = ConfigDict(extra="forbid")
    name: str


def roster(params: RosterParams, ctx: TaskContext) -> dict:
    """Returns a roster naming the person."""
    return {"roster": [params.name, params.name], "count": 2}


class SqlParams(BaseModel):
    """Run ``sql`` against the ledger's database ``times`` times, ``pause_ms`` apart."""

    model_config = ConfigDict(extra="forbid")
    sql: str = "SELECT 1"
    times: int = Field(default=1, ge=1, le=10_000)
    pause_ms: int = Field(default=0, ge=0, le=10_000)


def run_sql(params: SqlParams, ctx: TaskContext) -> dict:
    """Reads the database the way a plugin's handler does (through the SQL adapter's engine);
    a database that blinks meanwhile is the test's point."""
    from sqlalchemy import text

    from taskbroker.adapters.sql import engine_for
    from taskbroker.core.settings import get_settings

    engine = engine_for(get_settings().ledger_url)
    for i in range(params.times):
        with engine.connect() as conn:
            conn.execute(text(params.sql)).all()
        ctx.progress(100 * (i + 1) / params.times)
        time.sleep(params.pause_ms / 1000)
    return {"queries": params.times}


class SecretParams(BaseModel):
    """A credential the ledger must never keep."""

    model_config = ConfigDict(extra="forbid")
    api_key: str


def use_secret(params: SecretParams, ctx: TaskContext) -> dict:
    """Reports only the credential's length."""
    return {"key_length": len(params.api_key)}


@hookimpl
def taskbroker_register_task_types(register) -> None:
    """Registers the test task types."""
    register(TaskType(name="test_count", description="Count with progress.", run=count,
                      params=CountParams, estimated_duration="1 second"))
    register(TaskType(name="test_sleep", description="Sleep cooperatively.", run=sleep,
                      params=SleepParams, estimated_duration="seconds"))
    register(TaskType(name="test_stubborn", description="Sleep, ignoring cancel.", run=stubborn,
                      params=SleepParams))
    register(TaskType(name="test_fail", description="Always fails.", run=fail,
                      params=FailParams, max_retries=0))
    register(TaskType(name="test_parked", description="Runs on the 'parked' queue.", run=touch,
                      params=MarkerParams, queue="parked"))
    register(TaskType(name="test_once", description="Non-idempotent work.", run=work_and_record,
                      params=WorkParams, idempotent=False, max_retries=3))
    register(TaskType(name="test_idem", description="Idempotent work.", run=work_and_record,
                      params=WorkParams, idempotent=True, max_retries=5))
    register(TaskType(name="test_soft_limit", description="Overruns a 1 s soft limit.",
                      run=overrun, params=LimitParams, soft_time_limit=1, time_limit=20,
                      max_retries=0))
    register(TaskType(name="test_hard_limit", description="Ignores the soft limit.",
                      run=ignore_soft_limit, params=LimitParams, soft_time_limit=1,
                      time_limit=3, max_retries=0, idempotent=False))
    register(TaskType(name="test_echo", description="Echo the owner.", run=echo))
    register(TaskType(name="test_wipe", description="Changes shared state (admin only).",
                      run=echo, required_role="admin", mutates=True))
    register(TaskType(name="test_roster", description="A roster naming a person.", run=roster,
                      params=RosterParams))
    register(TaskType(name="test_secret", description="Takes a secret parameter.",
                      run=use_secret, params=SecretParams, secret_params=frozenset({"api_key"})))
    register(TaskType(name="test_sql", description="Read the database.", run=run_sql,
                      params=SqlParams, max_retries=5))
    register(TaskType(name="test_sql_once", description="Read the database, not idempotent.",
                      run=run_sql, params=SqlParams, max_retries=5, idempotent=False))
    register(TaskType(name="test_admin_only", description="Needs admin.", run=echo,
                      required_role="admin"))
