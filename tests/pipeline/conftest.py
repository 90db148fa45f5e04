"""The in-process tier: the real TaskService and middleware over MemoryLedger + StubBroker.

No Redis, no PostgreSQL, no worker process: ``run_pending`` delivers the queued messages in
the test's thread through the same :class:`~taskbroker.core.runtime.Runtime` a Celery worker
uses.  Rate limits are off unless a test asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskbroker.adapters.memory import MemoryLedger, Message, StubBroker
from taskbroker.app import App, build_app
from taskbroker.core.pipeline.service import TaskService
from taskbroker.core.runtime import Outcome, Runtime
from taskbroker.core.settings import Settings

#: the test task types: the shared sample plugin and this tier's own
PLUGIN_MODULES = "tests.support.sample_plugin,tests.pipeline.pipeline_plugin"
NO_LIMITS = "start: none; status: none; cancel: none; list: none; list_types: none"


@dataclass
class Harness:
    """A service over an in-memory ledger and a stub broker, and a runtime to run tasks."""

    app: App
    ledger: MemoryLedger
    broker: StubBroker
    runtime: Runtime

    @property
    def service(self) -> TaskService:
        """The service under test."""
        return self.app.service

    def run_pending(self, **kwargs: Any) -> list[tuple[Message, Outcome]]:
        """Deliver every queued message (retries included) in this thread."""
        return self.broker.run_pending(self.app.plugins.registry, self.runtime, **kwargs)


def make_harness(data_dir: Path, *, ledger: MemoryLedger | None = None,
                 **settings: Any) -> Harness:
    """A fresh harness; ``settings`` override Settings fields (e.g. ``rate_limits``)."""
    values: dict[str, Any] = dict(
        database_url="memory://", data_dir=data_dir, redis_url=None, builtin_plugins=False,
        plugin_modules=PLUGIN_MODULES, load_plugins="", rate_limits=NO_LIMITS,
        max_active_per_user=0,
    )
    values.update(settings)
    ledger = ledger if ledger is not None else MemoryLedger()
    broker = StubBroker()
    app = build_app(Settings(**values), ledger=ledger, broker=broker)
    runtime = Runtime(ledger, patience=1, cancel_grace=0.2, heartbeat_interval=0.1)
    return Harness(app, ledger, broker, runtime)


@pytest.fixture
def tb(tmp_path: Path) -> Harness:
    """A fresh in-process taskbroker without rate limits."""
    return make_harness(tmp_path)


@pytest.fixture
def harness(tmp_path: Path) -> Callable[..., Harness]:
    """``harness(**settings)``: a fresh in-process taskbroker with other settings."""
    return lambda **settings: make_harness(tmp_path, **settings)
