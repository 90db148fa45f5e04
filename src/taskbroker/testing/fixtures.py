"""pytest fixtures for plugin authors (registered through the ``pytest11`` entry point).

Installing taskbroker makes these fixtures available to every pytest run; none is autouse, so
they cost nothing until a test asks for one::

    def test_greet(run_task):
        status = run_task("hello_greet", {"name": "Ada"})
        assert status.status == "success"
        assert status.result == {"greeting": "Hello, Ada!"}

``taskbroker_app`` starts, once per test session, a real embedded taskbroker: a Celery worker
subprocess over the filesystem broker and a SQLite ledger in a temporary data directory, plus
a :class:`~taskbroker.core.pipeline.service.TaskService` in the test process over the same
broker and ledger.  Which plugins the worker loads is decided by session-scoped fixtures a
``conftest.py`` may override:

* ``taskbroker_load_plugins``: installed plugins (the ``taskbroker`` entry-point group) to
  load, as ``TASKBROKER_LOAD_PLUGINS``.  Default ``None``: every installed plugin, which is what
  ``pip install -e .`` of the package under test provides.
* ``taskbroker_plugin_modules``: importable modules registered as plugins without being
  installed (``TASKBROKER_PLUGIN_MODULES``); default none.
* ``taskbroker_builtin_plugins``: also load the built-in plugins; default ``False``.
* ``taskbroker_settings``: extra ``TASKBROKER_*`` variables for the worker and the service.

This module is imported by every pytest run where taskbroker is installed: keep its imports
cheap (taskbroker's application is imported only when a fixture runs).

Why one module of ~350 lines: it is the ``pytest11`` entry point, and pytest plugins are
simplest for their users as one module: every fixture a plugin author can use is here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from taskbroker.app import App
    from taskbroker.core.pipeline.models import CancelReceipt, StartReceipt, TaskStatus
    from taskbroker.core.pipeline.principal import Principal
    from taskbroker.core.settings import Settings

__all__ = [
    "EmbeddedTaskbroker",
    "embedded_taskbroker",
    "run_task",
    "taskbroker_app",
    "taskbroker_builtin_plugins",
    "taskbroker_load_plugins",
    "taskbroker_plugin_modules",
    "taskbroker_settings",
]

#: what the harness sets unless ``settings`` says otherwise: no rate limits or active-task cap
#: (test suites start many tasks quickly), fast cancellation and heartbeats, no metrics port
HARNESS_DEFAULTS = {
    "TASKBROKER_RATE_LIMITS": "start: none; status: none; cancel: none; list: none; "
                              "list_types: none",
    "TASKBROKER_MAX_ACTIVE_PER_USER": "0",
    "TASKBROKER_CANCEL_GRACE_SECONDS": "2",
    "TASKBROKER_HEARTBEAT_INTERVAL": "1",
    "TASKBROKER_WORKER_METRICS_PORT": "0",
    "TASKBROKER_WORKER_CONCURRENCY": "2",
    "TASKBROKER_LOG_FORMAT": "json",
}


def _poll(predicate: Callable[[], Any], *, timeout: float, what: str,
          on_timeout: Callable[[], str] = lambda: "") -> Any:
    """Poll ``predicate`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}"
                               + on_timeout())
        time.sleep(0.05)


def _python_path(extra: Sequence[str | os.PathLike[str]]) -> str:
    """PYTHONPATH for the worker: ``extra``, then what this process imports from outside the
    interpreter's own prefix (the project under test, conftest directories), then the inherited
    PYTHONPATH."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = [os.fspath(p) for p in extra]
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        real = os.path.realpath(entry)
        if any(real == p or real.startswith(p + os.sep) for p in prefixes):
            continue
        paths.append(entry)
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(dict.fromkeys(paths))


class EmbeddedTaskbroker:
    """A running embedded taskbroker: a worker subprocess and a service in this process.

    Use :func:`embedded_taskbroker` (or the ``taskbroker_app`` fixture) to get one.

    Attributes:
        data_dir: where the broker queue, results and SQLite ledger live.
        env: the environment the worker runs with (``TASKBROKER_*`` included); start more
            taskbroker processes (``serve --no-worker``, ``plugins``) with it to share them.
        settings: the same settings, as this process uses them.
        app: the application in this process (``app.service``, ``app.ledger``).
        principal: who tasks are started as by default (an admin, ``tester``).
    """

    def __init__(self, data_dir: Path, env: dict[str, str], settings: Settings, app: App,
                 principal: Principal) -> None:
        self.data_dir = data_dir
        self.env = env
        self.settings = settings
        self.app = app
        self.principal = principal
        self.log_path = data_dir / "worker.log"
        self._worker: subprocess.Popen[bytes] | None = None

    # --- the worker ---------------------------------------------------------------------

    def start_worker(self, timeout: float = 60.0) -> None:
        """Start ``taskbroker worker`` and wait until it consumes (idempotent)."""
        if self._worker is not None and self._worker.poll() is None:
            return
        with open(self.log_path, "ab") as out:
            self._worker = subprocess.Popen(
                [sys.executable, "-m", "taskbroker", "worker"], env=self.env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        worker = self._worker
        _poll(lambda: worker.poll() is not None or "ready" in self.worker_log(),
              timeout=timeout, what="the taskbroker worker to be ready",
              on_timeout=self._log_tail)
        if worker.poll() is not None:
            raise RuntimeError(f"the taskbroker worker exited at start ({worker.returncode})"
                               + self._log_tail())

    def stop_worker(self, timeout: float = 20.0) -> None:
        """Stop the worker: SIGTERM to its main process (a warm shutdown that stops the pool),
        then SIGKILL to whatever is left of its process group."""
        proc, self._worker = self._worker, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)

    @property
    def worker_alive(self) -> bool:
        """True while the worker process runs."""
        return self._worker is not None and self._worker.poll() is None

    def worker_log(self) -> str:
        """Everything the worker wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self) -> str:
        return "\n--- worker log (tail) ---\n" + self.worker_log()[-3000:]

    # --- tasks --------------------------------------------------------------------------

    def task_types(self) -> list[str]:
        """Names of the task types this process's registry knows (what the worker loaded)."""
        return self.app.plugins.registry.names()

    def start(self, task_type: str, params: Mapping[str, Any] | None = None, *,
              principal: Principal | None = None, **kwargs: Any) -> StartReceipt:
        """Start a task as ``principal`` (default :attr:`principal`) and return at once."""
        return self.app.service.start(principal or self.principal, task_type,
                                      dict(params or {}), **kwargs)

    def status(self, task_id: str) -> TaskStatus:
        """The task's current status (as an admin sees it)."""
        return self.app.service.status(self.principal, task_id)

    def cancel(self, task_id: str) -> CancelReceipt:
        """Cancel a queued or running task."""
        return self.app.service.cancel(self.principal, task_id)

    def wait(self, task_id: str, *statuses: str, timeout: float = 60.0,
             until: Callable[[TaskStatus], bool] | None = None) -> TaskStatus:
        """Poll until the task is in one of ``statuses`` (default: final) or ``until`` holds."""
        from taskbroker.core.pipeline.models import FINAL_STATUSES

        wanted = statuses or FINAL_STATUSES

        def check() -> TaskStatus | None:
            status = self.status(task_id)
            ok = until(status) if until is not None else status.status in wanted
            return status if ok else None

        what = f"task {task_id} to reach {'a condition' if until else '/'.join(wanted)}"
        return _poll(check, timeout=timeout, what=what, on_timeout=self._log_tail)

    def wait_stopped(self, task_id: str, timeout: float = 60.0) -> TaskStatus:
        """After a cancel: wait until the handler has really stopped, return the status."""
        _poll(lambda: (r := self.app.ledger.get(task_id)) is not None and r.ended_at,
              timeout=timeout, what=f"task {task_id}'s handler to stop",
              on_timeout=self._log_tail)
        return self.status(task_id)

    def run(self, task_type: str, params: Mapping[str, Any] | None = None,
            timeout: float = 60.0, **kwargs: Any) -> TaskStatus:
        """Start a task and wait for its final status (``status``, ``result``, ``error``)."""
        receipt = self.start(task_type, params, **kwargs)
        return self.wait(receipt.task_id, timeout=timeout)


def _build_env(data_dir: Path, *, plugin_modules: Sequence[str], load_plugins: str | None,
               builtin_plugins: bool, settings: Mapping[str, str],
               python_path: Sequence[str | os.PathLike[str]]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKBROKER_")}
    env.update(HARNESS_DEFAULTS)
    env.update({
        "TASKBROKER_DATA_DIR": str(data_dir),
        "TASKBROKER_REDIS_URL": "",  # embedded: filesystem broker, SQLite ledger
        "TASKBROKER_DATABASE_URL": "",
        "TASKBROKER_PLUGIN_MODULES": ",".join(plugin_modules),
        "TASKBROKER_BUILTIN_PLUGINS": "true" if builtin_plugins else "false",
        "PYTHONPATH": _python_path(python_path),
        "PYTHONUNBUFFERED": "1",
    })
    if load_plugins is not None:
        env["TASKBROKER_LOAD_PLUGINS"] = load_plugins
    for key, value in settings.items():
        name = key if key.startswith("TASKBROKER_") else f"TASKBROKER_{key.upper()}"
        env[name] = str(value)
    return env


@contextlib.contextmanager
def embedded_taskbroker(
    data_dir: Path,
    *,
    plugin_modules: Sequence[str] = (),
    load_plugins: str | None = None,
    builtin_plugins: bool = False,
    settings: Mapping[str, str] | None = None,
    python_path: Sequence[str | os.PathLike[str]] = (),
    start_worker: bool = True,
) -> Iterator[EmbeddedTaskbroker]:
    """Run an embedded taskbroker in ``data_dir`` for the ``with`` block; the worker is stopped
    on exit, whatever happens.

    Args:
        plugin_modules: modules to load as plugins (``TASKBROKER_PLUGIN_MODULES``).
        load_plugins: ``TASKBROKER_LOAD_PLUGINS`` (None: every installed plugin).
        builtin_plugins: also load taskbroker's built-in plugins.
        settings: more settings, as ``{"CANCEL_GRACE_SECONDS": "5"}`` or full variable names.
        python_path: directories the worker must import from, before this process's own.
        start_worker: False to start it later with :meth:`EmbeddedTaskbroker.start_worker`.
    """
    from taskbroker.app import build_app
    from taskbroker.core.pipeline.principal import Principal
    from taskbroker.core.settings import Settings

    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _build_env(data_dir, plugin_modules=plugin_modules, load_plugins=load_plugins,
                     builtin_plugins=builtin_plugins, settings=settings or {},
                     python_path=python_path)
    added = [p for p in dict.fromkeys(os.fspath(p) for p in python_path) if p not in sys.path]
    sys.path[:0] = added  # so this process loads the same plugins as the worker
    harness: EmbeddedTaskbroker | None = None
    try:
        values = {k[len("TASKBROKER_"):].lower(): v for k, v in env.items()
                  if k.startswith("TASKBROKER_")}
        app_settings = Settings(**values)
        harness = EmbeddedTaskbroker(data_dir, env, app_settings, build_app(app_settings),
                                     Principal("tester", frozenset({"admin"})))
        if start_worker:
            harness.start_worker()
        yield harness
    finally:
        if harness is not None:
            harness.stop_worker()
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def taskbroker_plugin_modules() -> Sequence[str]:
    """Modules the worker registers as plugins (``TASKBROKER_PLUGIN_MODULES``); override to
    test a plugin that is not installed.  Default: none."""
    return ()


@pytest.fixture(scope="session")
def taskbroker_load_plugins() -> str | None:
    """``TASKBROKER_LOAD_PLUGINS``: installed plugins to load (None: all of them)."""
    return None


@pytest.fixture(scope="session")
def taskbroker_builtin_plugins() -> bool:
    """Whether the worker also loads taskbroker's built-in plugins (default False)."""
    return False


@pytest.fixture(scope="session")
def taskbroker_settings() -> Mapping[str, str]:
    """Extra settings for the worker and the service, e.g. ``{"CANCEL_GRACE_SECONDS": "5"}``."""
    return {}


@pytest.fixture(scope="session")
def taskbroker_app(
    tmp_path_factory: pytest.TempPathFactory,
    taskbroker_plugin_modules: Sequence[str],
    taskbroker_load_plugins: str | None,
    taskbroker_builtin_plugins: bool,
    taskbroker_settings: Mapping[str, str],
) -> Iterator[EmbeddedTaskbroker]:
    """A real embedded taskbroker (worker subprocess + service) for the test session."""
    with embedded_taskbroker(
        tmp_path_factory.mktemp("taskbroker"),
        plugin_modules=taskbroker_plugin_modules,
        load_plugins=taskbroker_load_plugins,
        builtin_plugins=taskbroker_builtin_plugins,
        settings=taskbroker_settings,
    ) as harness:
        yield harness


@pytest.fixture
def run_task(taskbroker_app: EmbeddedTaskbroker) -> Callable[..., TaskStatus]:
    """``run_task(task_type, params=None, timeout=60) -> TaskStatus``: start a task on the
    real worker and return its final status (``status``, ``progress``, ``result``, ``error``).
    """
    return taskbroker_app.run
