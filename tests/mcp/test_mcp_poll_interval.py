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


def test_poll_interval_backs_off_with_the_age_of_a_working_task() -> None:
    """A working task's advice grows with its age (a quarter of it, between the floor and
    10 s), so a client following a long task polls less and less often; a finished task is
    advised the floor."""
    tb = in_process_taskbroker(plugin_modules=["tests.support.sample_plugin"])
    service = tb.app.service
    ext = TasksExtension(service, ServiceCaller(Principal("u")), [], ttl_ms=None,
                         poll_interval_ms=2000)
    admin = Principal("root", frozenset({"admin"}))
    now = dt.datetime.now(dt.UTC)

    def queued(age_seconds: float, *, finished: bool = False) -> str:
        task_id = str(uuid.uuid4())
        created = now - dt.timedelta(seconds=age_seconds)
        tb.ledger.create(task_id=task_id, task_type="test_count", task_name="tb.test_count",
                         owner="root", params={}, now=created)
        if finished:
            tb.ledger.mark_started(task_id, worker="w", now=created)
            tb.ledger.finish(task_id, status="success", result={}, now=now)
        return task_id

    async def advised(task_id: str) -> int:
        return await ext._poll_ms(service.status(admin, task_id))

    async def main() -> list[int]:
        return [await advised(queued(age)) for age in (0.0, 4.0, 20.0, 36.0, 600.0)] + [
            await advised(queued(600.0, finished=True))]

    # age/4 in ms, floor 2000, cap 10000; a margin for the seconds the test itself takes
    got = anyio.run(main)
    assert got[0] == 2000 and got[1] == 2000
    assert 5000 <= got[2] <= 5100 and 9000 <= got[3] <= 9100
    assert got[4] == MAX_POLL_MS and got[5] == 2000
