"""taskbroker.testing.in_process: a plugin author's fast tier (no Redis, database or worker)."""

from __future__ import annotations

import pytest

from taskbroker.core.pipeline.errors import InvalidRequest, PermissionDenied, RateLimited
from taskbroker.core.pipeline.principal import Principal
from taskbroker.testing.in_process import in_process_taskbroker

SAMPLE = "tests.support.sample_plugin"


def test_run_task_runs_the_real_handler_through_the_real_pipeline() -> None:
    tb = in_process_taskbroker(plugin_modules=[SAMPLE])
    status = tb.run_task("test_count", {"n": 4})
    assert status.status == "success" and status.progress == 100
    assert status.result == {"sum": 1 + 2 + 3 + 4, "steps": 4}
    # the handler saw the caller as its owner
    echo = tb.run_task("test_echo")
    assert echo.result == {"owner": "tester"}


def test_the_middleware_applies_as_in_production() -> None:
    tb = in_process_taskbroker(plugin_modules=[SAMPLE],
                               principal=Principal("plain", frozenset()),
                               settings={"rate_limits": "start: 3/minute"})
    with pytest.raises(PermissionDenied):
        tb.start("test_admin_only")
    with pytest.raises(InvalidRequest, match=r"params\.n"):
        tb.start("test_count", {"n": "many"})
    tb.start("test_echo")  # the refused calls counted too: this is the third of three
    with pytest.raises(RateLimited):
        tb.start("test_echo")
    outcomes = [o.status for _, o in tb.run_pending()]
    assert outcomes == ["success"]
