"""Fault-injection fixtures: a broker of their own (Redis db 1), fast failure detection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskbroker.app import App, build_app, build_reaper, load_app_plugins
from taskbroker.core.reaper import Reaper
from tests.conftest import settings_from_env
from tests.support.procs import Redis


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/faults carries the ``faults`` marker."""
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="module")
def fault_env(dist_env: dict[str, str], redis_server: Redis) -> dict[str, str]:
    """Like dist_env, on Redis db 1 (no session worker listens there), fast detection."""
    return dict(
        dist_env,
        TASKBROKER_REDIS_URL=redis_server.url.rsplit("/", 1)[0] + "/1",
        TASKBROKER_VISIBILITY_TIMEOUT="8",
        TASKBROKER_STALE_AFTER="3",
        TASKBROKER_HEARTBEAT_INTERVAL="0.5",
        TASKBROKER_REAPER_INTERVAL="0.5",
    )


@pytest.fixture(scope="module")
def fault_app(fault_env: dict[str, str]) -> App:
    """A TaskService over the fault-test broker."""
    settings = settings_from_env(fault_env)
    return build_app(settings, plugins=load_app_plugins(settings))


@pytest.fixture
def reaper(fault_app: App) -> Iterator[Reaper]:
    """The reaper running in the test process (as it runs inside `taskbroker serve`)."""
    r = build_reaper(fault_app)
    r.start()
    try:
        yield r
    finally:
        r.stop()
