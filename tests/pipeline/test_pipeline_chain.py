"""The middleware Chain itself, and the order of the default chain around a real service.

``before`` hooks run in order and ``after`` hooks in reverse; every middleware whose
``before`` ran gets its ``after``, even when something inside failed; a middleware's own error
propagates unless it sets ``swallow_errors``, in which case it is logged and the call goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from taskbroker.core.pipeline.chain import Call, Chain, Middleware
from taskbroker.core.pipeline.errors import InvalidRequest
from taskbroker.core.pipeline.middleware.audit import AuditMiddleware
from taskbroker.core.pipeline.middleware.authorization import AuthorizationMiddleware
from taskbroker.core.pipeline.middleware.identity import IdentityMiddleware
from taskbroker.core.pipeline.middleware.ratelimit import RateLimitMiddleware
from taskbroker.core.pipeline.middleware.validation import ValidationMiddleware
from taskbroker.core.pipeline.principal import Principal
from taskbroker.observability.middleware import ObservabilityMiddleware
from tests.pipeline.conftest import Harness


class Recorder(Middleware):
    """Logs its hooks (with what ``after`` saw) into a shared list; may fail on purpose."""

    def __init__(self, name: str, log: list[str], *, fail_before: bool = False,
                 fail_after: bool = False, swallow: bool = False) -> None:
        self.name, self.log = name, log
        self.fail_before, self.fail_after = fail_before, fail_after
        self.swallow_errors = swallow

    def before(self, call: Call) -> None:
        self.log.append(f"{self.name}.before")
        if self.fail_before:
            raise PermissionError(f"{self.name} refuses")

    def after(self, call: Call) -> None:
        seen = type(call.error).__name__ if call.error is not None else f"ok={call.result!r}"
        self.log.append(f"{self.name}.after:{seen}")
        if self.fail_after:
            raise RuntimeError(f"{self.name} after broke")


def new_call() -> Call:
    return Call("status", Principal("alice"), {"task_id": "t-1"})


def handler(log: list[str], result: Any = 42,
            error: BaseException | None = None) -> Callable[[Call], Any]:
    def run(call: Call) -> Any:
        log.append("handler")
        if error is not None:
            raise error
        return result
    return run


def test_before_in_order_after_in_reverse() -> None:
    log: list[str] = []
    chain = Chain([Recorder("a", log), Recorder("b", log), Recorder("c", log)])
    c = new_call()
    assert chain.run(c, handler(log)) == 42
    assert log == ["a.before", "b.before", "c.before", "handler",
                   "c.after:ok=42", "b.after:ok=42", "a.after:ok=42"]
    assert (c.result, c.error) == (42, None)


def test_every_after_runs_when_the_handler_fails() -> None:
    log: list[str] = []
    boom = LookupError("gone")
    chain = Chain([Recorder("a", log), Recorder("b", log)])
    c = new_call()
    with pytest.raises(LookupError) as raised:
        chain.run(c, handler(log, error=boom))
    assert raised.value is boom and c.error is boom
    assert log == ["a.before", "b.before", "handler", "b.after:LookupError",
                   "a.after:LookupError"]


def test_every_after_runs_even_for_a_base_exception() -> None:
    log: list[str] = []
    chain = Chain([Recorder("a", log)])
    with pytest.raises(KeyboardInterrupt):
        chain.run(new_call(), handler(log, error=KeyboardInterrupt()))
    assert log == ["a.before", "handler", "a.after:KeyboardInterrupt"]


def test_a_refusal_stops_the_call_and_only_entered_layers_see_it() -> None:
    log: list[str] = []
    chain = Chain([Recorder("outer", log), Recorder("guard", log, fail_before=True),
                   Recorder("inner", log)])
    with pytest.raises(PermissionError, match="guard refuses"):
        chain.run(new_call(), handler(log))
    assert log == ["outer.before", "guard.before", "outer.after:PermissionError"]


def test_a_failing_after_propagates_and_the_outer_afters_still_run() -> None:
    log: list[str] = []
    chain = Chain([Recorder("outer", log), Recorder("strict", log, fail_after=True)])
    c = new_call()
    with pytest.raises(RuntimeError, match="strict after broke"):
        chain.run(c, handler(log))
    assert log == ["outer.before", "strict.before", "handler", "strict.after:ok=42",
                   "outer.after:RuntimeError"]


def test_the_handlers_error_wins_over_a_failing_after() -> None:
    log: list[str] = []
    boom = LookupError("gone")
    chain = Chain([Recorder("strict", log, fail_after=True)])
    with pytest.raises(LookupError) as raised:
        chain.run(new_call(), handler(log, error=boom))
    assert raised.value is boom


def test_a_swallowing_middleware_is_logged_and_the_call_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    chain = Chain([Recorder("obs", log, fail_before=True, fail_after=True, swallow=True),
                   Recorder("inner", log)])
    with caplog.at_level(logging.WARNING, logger="taskbroker.middleware"):
        assert chain.run(new_call(), handler(log)) == 42
    # its after still runs although its before failed
    assert log == ["obs.before", "inner.before", "handler", "inner.after:ok=42",
                   "obs.after:ok=42"]
    assert [r.getMessage() for r in caplog.records] == [
        "Recorder.before failed: PermissionError('obs refuses')",
        "Recorder.after failed: RuntimeError('obs after broke')"]


def test_the_default_chain_order(tb: Harness) -> None:
    kinds = [type(m) for m in tb.service.middleware]
    assert kinds == [ObservabilityMiddleware, AuditMiddleware, IdentityMiddleware,
                     RateLimitMiddleware,
                     ValidationMiddleware, AuthorizationMiddleware]


def test_middleware_cannot_be_added_after_the_first_call(tb: Harness) -> None:
    tb.service.add_middleware(Middleware(), index=0)
    tb.service.list_types(Principal("alice"))
    with pytest.raises(RuntimeError, match="after the service has started"):
        tb.service.add_middleware(Middleware())


def test_a_start_refused_after_the_cap_check_releases_the_users_lock(
        harness: Callable[..., Harness], alice: Principal) -> None:
    # the rate limiter takes alice's start lock; validation then refuses the start: the
    # limiter's after must give the lock back, or alice's next start blocks for ever
    tb = harness(max_active_per_user=5)
    with pytest.raises(InvalidRequest):
        tb.service.start(alice, "test_count", {"n": 0})
    done = threading.Event()

    def next_start() -> None:
        tb.service.start(alice, "test_count", {"n": 1})
        done.set()

    threading.Thread(target=next_start, daemon=True).start()
    assert done.wait(timeout=10), "the next start is blocked on a leaked lock"
