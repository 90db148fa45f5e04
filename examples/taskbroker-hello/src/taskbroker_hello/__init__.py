"""taskbroker-hello: an example taskbroker plugin with two task types.

* ``hello_greet`` is quick: it returns a greeting.
* ``hello_countdown`` is long-running: it counts down one step at a time, reports progress at
  every step and stops as soon as it is cancelled.

Installed with pip, it is found through the ``taskbroker`` entry point in ``pyproject.toml``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from taskbroker import TaskContext, TaskType, hookimpl

__all__ = ["CountdownParams", "GreetParams", "countdown", "greet",
           "taskbroker_register_task_types"]


class GreetParams(BaseModel):
    """Parameters of ``hello_greet``."""

    model_config = ConfigDict(extra="forbid")  # unknown parameters are an error, not ignored

    name: str = Field(default="world", min_length=1, max_length=100,
                      description="Who to greet.")
    shout: bool = Field(default=False, description="Greet in capitals.")


def greet(params: GreetParams, ctx: TaskContext) -> dict[str, str]:
    """Return the greeting (quick: no progress to report)."""
    greeting = f"Hello, {params.name}!"
    return {"greeting": greeting.upper() if params.shout else greeting}


class CountdownParams(BaseModel):
    """Parameters of ``hello_countdown``."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(default=10, ge=1, le=600, description="Number to count down from.")
    step_seconds: float = Field(default=1.0, ge=0.01, le=5,
                                description="Seconds between two steps.")


def countdown(params: CountdownParams, ctx: TaskContext) -> dict[str, int | str]:
    """Count down from ``start`` to zero, one step every ``step_seconds``.

    Reports progress at every step and checks for cancellation several times a second:
    :meth:`TaskContext.raise_if_cancelled` unwinds the handler and the task stays revoked.
    """
    ctx.progress(0, f"{params.start} to go")
    for done in range(1, params.start + 1):
        deadline = time.monotonic() + params.step_seconds
        while (left := deadline - time.monotonic()) > 0:
            ctx.raise_if_cancelled()
            time.sleep(min(left, 0.05))
        remaining = params.start - done
        ctx.progress(100 * done / params.start, f"{remaining} to go" if remaining else "liftoff")
    return {"counted_from": params.start, "message": "liftoff"}


@hookimpl
def taskbroker_register_task_types(register: Callable[[TaskType], None]) -> None:
    """Register ``hello_greet`` and ``hello_countdown``."""
    register(TaskType(
        name="hello_greet",
        description="Return a greeting for `name` (quick).",
        run=greet,
        params=GreetParams,
        estimated_duration="under a second",
        soft_time_limit=10,
        time_limit=20,
    ))
    register(TaskType(
        name="hello_countdown",
        description="Count down from `start`, one step every `step_seconds`, reporting "
        "progress; can be cancelled at any time.",
        run=countdown,
        params=CountdownParams,
        estimated_duration="start x step_seconds (10 seconds by default)",
        soft_time_limit=3300,  # the longest countdown is 600 x 5 s = 50 minutes
        time_limit=3600,
    ))
