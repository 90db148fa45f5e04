"""taskbroker in one process, on the in-memory ledger and the stub broker: the fast tier.

No Redis, no database server, no worker process: :class:`InProcessTaskbroker` is the real
:class:`~taskbroker.core.pipeline.service.TaskService` with the real middleware over a
:class:`~taskbroker.adapters.memory.MemoryLedger` and a
:class:`~taskbroker.adapters.memory.StubBroker`, and :meth:`InProcessTaskbroker.run_pending`
runs queued tasks in the calling thread through the same
:class:`~taskbroker.core.runtime.Runtime` a Celery worker uses::

    from taskbroker.testing.in_process import in_process_taskbroker

    def test_greet():
        tb = in_process_taskbroker(plugin_modules=["my_plugin"])
        status = tb.run_task("hello_greet", {"name": "Ada"})
        assert status.status == "success" and status.result == {"greeting": "Hello, Ada!"}

Use the embedded harness (:mod:`taskbroker.testing.fixtures`) when the test must cross real
process boundaries (time limits, killed workers, the filesystem broker).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskbroker.adapters.memory import MemoryLedger, Message, StubBroker
from taskbroker.app import App, build_app
from taskbroker.core.pipeline.models import StartReceipt, TaskStatus
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.runtime import Outcome, Runtime
from taskbroker.core.settings import Settings

__all__ = ["InProcessTaskbroker", "in_process_taskbroker"]

#: no rate limits or active-task cap unless the caller's settings ask for them
_NO_LIMITS = ("start: none; status: none; cancel: none; list: none; list_types: none")


@dataclass
class InProcessTaskbroker:
    """The service, its in-memory ledger and stub broker, and a runtime to run tasks with."""

    app: App
    ledger: MemoryLedger
    broker: StubBroker
    runtime: Runtime
    principal: Principal

    def start(self, task_type: str, params: Mapping[str, Any] | None = None,
              **kwargs: Any) -> StartReceipt:
        """Start a task as :attr:`principal` (it is queued, not run)."""
        return self.app.service.start(self.principal, task_type, dict(params or {}), **kwargs)

    def status(self, task_id: str) -> TaskStatus:
        """The task's status as :attr:`principal` sees it."""
        return self.app.service.status(self.principal, task_id)

    def run_pending(self) -> list[tuple[Message, Outcome]]:
        """Run every queued task (retries included) in this thread; each delivery's outcome."""
        return self.broker.run_pending(self.app.plugins.registry, self.runtime)

    def run_task(self, task_type: str, params: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> TaskStatus:
        """Start a task, run everything queued, and return the task's final status."""
        receipt = self.start(task_type, params, **kwargs)
        self.run_pending()
        return self.status(receipt.task_id)


def in_process_taskbroker(
    *,
    plugin_modules: Iterable[str] = (),
    builtin_plugins: bool = False,
    load_plugins: str | None = "",
    settings: Mapping[str, Any] | None = None,
    principal: Principal | None = None,
    data_dir: Path | None = None,
) -> InProcessTaskbroker:
    """A fresh in-process taskbroker.

    Args:
        plugin_modules: importable modules to register as plugins.
        builtin_plugins: also load the built-in plugins (their schedule data then lives in
            an in-memory SQLite database).
        load_plugins: installed plugins to load (``TASKBROKER_LOAD_PLUGINS``); the default
            ``""`` loads none, ``None`` loads every installed one.
        settings: further :class:`~taskbroker.core.settings.Settings` fields (e.g.
            ``{"rate_limits": "start: 2/minute"}``); by default there are no rate limits.
        principal: who calls (default: an admin named ``tester``).
        data_dir: where nothing is written in this mode (default: the current directory's
            ``.taskbroker``, untouched).
    """
    values: dict[str, Any] = {
        "database_url": "memory://", "redis_url": None, "builtin_plugins": builtin_plugins,
        "plugin_modules": ",".join(plugin_modules), "load_plugins": load_plugins,
        "rate_limits": _NO_LIMITS, "max_active_per_user": 0,
    }
    if data_dir is not None:
        values["data_dir"] = data_dir
    values.update(settings or {})
    resolved = Settings(**values)
    ledger, broker = MemoryLedger(), StubBroker()
    app = build_app(resolved, ledger=ledger, broker=broker)
    runtime = Runtime(ledger, patience=0, cancel_grace=0.5, heartbeat_interval=0.5)
    return InProcessTaskbroker(app, ledger, broker, runtime,
                               principal or Principal("tester", frozenset({"admin"})))
