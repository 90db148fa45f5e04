"""The event-loop bridge: synchronous code on the loop, its I/O awaited there."""

from __future__ import annotations

import contextvars
import threading

import anyio
import pytest

from taskbroker.core.loop_bridge import (
    LoopLocal,
    acquire,
    await_io,
    close_loop_locals,
    off_loop,
    on_loop,
    run_on_loop,
)

NAME: contextvars.ContextVar[str] = contextvars.ContextVar("name", default="unset")


async def _double_later(x: int) -> int:
    await anyio.sleep(0.01)
    return 2 * x


async def _fail() -> None:
    await anyio.sleep(0)
    raise KeyError("from the loop")


def test_sync_code_awaits_on_the_loop_thread() -> None:
    loop_thread = threading.get_ident()

    def body(x: int) -> tuple[int, int, bool]:
        return await_io(_double_later(x)) + 1, threading.get_ident(), on_loop()

    value, thread, flagged = anyio.run(run_on_loop, body, 20)
    assert value == 41
    assert thread == loop_thread  # no worker thread was involved
    assert flagged
    assert not on_loop()  # outside run_on_loop


def test_errors_of_awaited_io_reach_the_sync_code_and_errors_of_the_call_its_caller() -> None:
    def body() -> str:
        try:
            await_io(_fail())
        except KeyError as exc:
            caught = str(exc)
        raise ValueError(f"after {caught}")

    with pytest.raises(ValueError, match="after 'from the loop'"):
        anyio.run(run_on_loop, body)


def test_await_io_outside_the_bridge_is_an_error() -> None:
    coro = _double_later(1)
    with pytest.raises(RuntimeError, match="outside run_on_loop"):
        await_io(coro)
    assert coro.cr_frame is None  # closed, never left pending


def test_off_loop_runs_in_a_worker_thread_with_the_callers_context() -> None:
    loop_thread = threading.get_ident()

    def blocking() -> tuple[int, str]:
        return threading.get_ident(), NAME.get()

    def body() -> tuple[int, str]:
        NAME.set("inside")
        return off_loop(blocking)

    thread, seen = anyio.run(run_on_loop, body)
    assert thread != loop_thread
    assert seen == "inside"
    assert off_loop(blocking) == (threading.get_ident(), "unset")  # not on a loop: inline


def test_context_changes_inside_do_not_leak_to_the_caller() -> None:
    async def main() -> str:
        NAME.set("caller")
        await run_on_loop(NAME.set, "callee")
        return NAME.get()

    assert anyio.run(main) == "caller"


def test_a_cancelled_caller_still_lets_the_call_finish() -> None:
    steps: list[str] = []

    def body() -> None:
        steps.append("begun")
        await_io(anyio.sleep(0.2))
        steps.append("finished")

    async def main() -> None:
        with anyio.move_on_after(0.05):
            await run_on_loop(body)

    anyio.run(main)
    assert steps == ["begun", "finished"]


@pytest.mark.timeout(20)
def test_a_lock_held_across_awaited_io_is_waited_for_without_stopping_the_loop() -> None:
    # two calls on one loop want the same lock; the holder awaits I/O while holding it.  A
    # plain lock.acquire() would block the loop's thread, and the holder could never resume
    # (this test then hangs until its timeout)
    lock = threading.Lock()
    order: list[str] = []

    def holder() -> None:
        acquire(lock)
        order.append("holder in")
        await_io(anyio.sleep(0.1))
        order.append("holder out")
        lock.release()

    def waiter() -> None:
        acquire(lock)
        order.append("waiter in")
        lock.release()

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_on_loop, holder)
            await anyio.sleep(0.02)
            tg.start_soon(run_on_loop, waiter)

    anyio.run(main)
    assert order == ["holder in", "holder out", "waiter in"]
    assert not lock.locked()


def test_loop_locals_are_one_per_loop_and_closed_by_whoever_runs_the_loop() -> None:
    made: list[list[str]] = []

    def make() -> list[str]:
        made.append([])
        return made[-1]

    async def close(obj: list[str]) -> None:
        obj.append("closed")

    local = LoopLocal(make, close)

    async def use() -> bool:
        first, second = local.get(), local.get()
        await close_loop_locals()
        return first is second

    assert anyio.run(use)
    assert anyio.run(use)
    assert made == [["closed"], ["closed"]]  # a new loop made its own, and each was closed
