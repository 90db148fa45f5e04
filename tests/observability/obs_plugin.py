"""Task types for the observability tests (loaded into workers via TASKBROKER_PLUGIN_MODULES)."""

from __future__ import annotations

import logging

import structlog
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict

from taskbroker import TaskContext, TaskType, hookimpl


class TracedParams(BaseModel):
    """A secret ``pin`` (marked secret) and a ``label`` that may be logged."""

    model_config = ConfigDict(extra="forbid")
    label: str = "x"
    pin: str = "0000"


def traced(params: TracedParams, ctx: TaskContext) -> dict:
    """Opens its own span and logs through stdlib and structlog, secrets included on purpose."""
    with trace.get_tracer("obs-test-handler").start_as_current_span("obs.handler.work") as span:
        span.set_attribute("label", params.label)
        logging.getLogger("obs.handler").info("handler working on %s", params.label)
        structlog.get_logger("obs.handler").info(
            "handler credentials", pin=params.pin,
            headers={"Authorization": f"Bearer tok-{params.pin}"}, password="pw-" + params.pin,
        )
        logging.getLogger("obs.handler").info(
            "connecting to postgresql://svc:pw-%s@db:5432/x with token=tok-%s",
            params.pin, params.pin)
    return {"label": params.label}


@hookimpl
def taskbroker_register_task_types(register) -> None:
    """Registers obs_traced."""
    register(TaskType(name="obs_traced", description="Traced handler.", run=traced,
                      params=TracedParams, secret_params=frozenset({"pin"})))
