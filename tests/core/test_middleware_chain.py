"""The middleware chain: order, nesting, failing closed, swallowing only where allowed."""

from __future__ import annotations

import pytest

from taskbroker.core.pipeline.chain import Call, Chain, Middleware


class Recorder(Middleware):
    def __init__(self, name: str, log: list[str], fail_before: bool = False,
                 fail_after: bool = False, swallow: bool = False) -> None:
        self.name, self.log = name, log
        self.fail_before, self.fail_after = fail_before, fail_after
        self.swallow_errors = swallow

    def before(self, call: Call) -> None:
        self.log.append(f"{self.name}.before")
        if self.fail_before:
            raise PermissionError(self.name)

    def after(self, call: Call) -> None:
        self.log.append(f"{self.name}.after:{type(call.error).__name__ if call.error else 'ok'}")
        if self.fail_after:
            raise RuntimeError(f"{self.name} after")


def call() -> Call:
    return Call("status", None, {})


def test_before_in_order_after_in_reverse() -> None:
    log: list[str] = []
    chain = Chain([Recorder("a", log), Recorder("b", log)])
    assert chain.run(call(), lambda c: log.append("op") or 42) == 42
    assert log == ["a.before", "b.before", "op", "b.after:ok", "a.after:ok"]


def test_refusal_stops_the_call_and_outer_layers_see_it() -> None:
    log: list[str] = []
    chain = Chain([Recorder("outer", log), Recorder("guard", log, fail_before=True),
                   Recorder("inner", log)])
    with pytest.raises(PermissionError, match="guard"):
        chain.run(call(), lambda c: log.append("op"))
    assert log == ["outer.before", "guard.before", "outer.after:PermissionError"]


def test_only_swallowing_middleware_may_fail_silently() -> None:
    log: list[str] = []
    chain = Chain([Recorder("obs", log, fail_before=True, fail_after=True, swallow=True)])
    assert chain.run(call(), lambda c: "fine") == "fine"
    strict = Chain([Recorder("strict", log, fail_after=True)])
    with pytest.raises(RuntimeError, match="strict after"):
        strict.run(call(), lambda c: "fine")


def test_service_refuses_middleware_after_start(dist_app) -> None:
    from taskbroker.core.pipeline.service import TaskService

    svc = TaskService(dist_app.service.registry, dist_app.ledger, dist_app.service.broker, [])
    svc.add_middleware(Middleware())
    svc.list_types(None)
    with pytest.raises(RuntimeError, match="after the service has started"):
        svc.add_middleware(Middleware())
