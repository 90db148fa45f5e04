"""The tasks extension advises a longer pollIntervalMs for types whose measured runs are long
(half the median, between 1 s and 10 s), so clients following long tasks cost less."""

from __future__ import annotations

import datetime as dt
import uuid

import anyio

from taskbroker.core.pipeline.principal import Principal
from taskbroker.mcp.caller import ServiceCaller
from taskbroker.mcp.tasks_extension import MAX_POLL_MS, TasksExtension
from taskbroker.testing.in_process import in_process_taskbroker

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _finished_run(ledger: object, task_type: str, seconds: float) -> None:
    task_id = str(uuid.uuid4())
    ledger.create(task_id=task_id, task_type=task_type, task_name=f"tb.{task_type}",  # type: ignore[attr-defined]
                  owner="u", params={}, now=T0)
    ledger.mark_started(task_id, worker="w", now=T0)  # type: ignore[attr-defined]
    ledger.finish(task_id, status="success", result={},  # type: ignore[attr-defined]
                  now=T0 + dt.timedelta(seconds=seconds))


def test_poll_interval_follows_the_measured_runs() -> None:
    tb = in_process_taskbroker(plugin_modules=["tests.support.sample_plugin"])
    service = tb.app.service
    for seconds in (8.0, 10.0, 12.0):  # median 10 s: poll every 5 s
        _finished_run(tb.ledger, "test_sleep", seconds)
    for seconds in (300.0, 400.0, 500.0):  # median 400 s: capped at 10 s
        _finished_run(tb.ledger, "test_stubborn", seconds)
    ext = TasksExtension(service, ServiceCaller(Principal("u")), [], ttl_ms=None,
                         poll_interval_ms=1000)
    admin = Principal("root", frozenset({"admin"}))

    async def advised(task_type: str) -> int:
        receipt = service.start(admin, task_type, {})
        return await ext._poll_ms(service.status(admin, receipt.task_id))

    async def main() -> tuple[int, int, int]:
        return (await advised("test_sleep"), await advised("test_stubborn"),
                await advised("test_count"))  # no history: the default

    assert anyio.run(main) == (5000, MAX_POLL_MS, 1000)
