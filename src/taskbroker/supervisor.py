"""Embedded mode: ``serve`` runs a Celery worker as a child process, restarts it when it dies,
and never leaves it behind.

Both sides of the supervision live here:

* :class:`WorkerSupervisor` (in ``serve``) starts the worker in a process group of its own
  (so stopping it reaches its pool children too), restarts it with backoff, and stops it
  warm-then-cold: SIGTERM (Celery's warm shutdown lets running tasks finish), then SIGKILL to
  the whole group after the grace period.
* :func:`watch_parent` (in the worker, when it was started by a supervisor) notices when
  ``serve`` is gone for any reason, SIGKILL included, and shuts the worker down the same way
  by itself.  A stdio server whose client quit, or a server killed by an orchestrator, leaves
  no process behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["PARENT_ENV", "WorkerSupervisor", "watch_parent"]

log = logging.getLogger("taskbroker.supervisor")

#: set in the worker's environment: the pid of the ``serve`` process that supervises it
PARENT_ENV = "TASKBROKER_SUPERVISOR_PID"


class WorkerSupervisor:
    """Starts ``argv`` and restarts it (with backoff) whenever it exits, until :meth:`stop`.

    The child's stdout goes to our stderr, so a stdio MCP stream is never polluted.
    """

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 max_backoff: float = 30.0, grace: float = 10.0) -> None:
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.env[PARENT_ENV] = str(os.getpid())
        self.max_backoff = max_backoff
        self.grace = grace
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="worker-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        """Pid of the current worker process, if one runs."""
        proc = self._proc
        return proc.pid if proc and proc.poll() is None else None

    def start(self) -> None:
        """Start the worker and the thread that watches it."""
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            # a process group of its own (same session): stop() reaches the pool children,
            # a terminal's Ctrl-C reaches serve only, and serve decides
            self._proc = subprocess.Popen(self.argv, env=self.env, stdout=sys.stderr.fileno(),
                                          stdin=subprocess.DEVNULL, process_group=0)
        log.info("worker started (pid %s)", self._proc.pid)

    def _loop(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            started = time.monotonic()
            code = proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.warning("worker (pid %s) exited with %s; restarting in %.0f s",
                        proc.pid, code, backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(self.max_backoff, backoff * 2)
            self.restarts += 1
            self._spawn()

    def stop(self, timeout: float | None = None) -> None:
        """Warm-stop the worker (SIGTERM), SIGKILL its group after ``timeout`` (default: the
        grace period), and stop watching.  Safe to call twice."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is None:
            return
        stop_group(proc, self.grace if timeout is None else timeout)


def stop_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM ``proc`` (a process-group leader), wait up to ``grace`` s, SIGKILL its group."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # the pool children too, whether or not the leader is still there
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def watch_parent(expected: int, grace: float, *, interval: float = 0.5) -> threading.Thread:
    """In a supervised worker: shut down when the supervising ``serve`` (pid ``expected``) is
    gone (warm: SIGTERM to ourselves; after ``grace`` s: SIGKILL to our process group).

    Returns the daemon thread doing it (already started).
    """

    def loop() -> None:
        while os.getppid() == expected:
            time.sleep(interval)
        log.warning("the supervising server (pid %s) is gone: shutting the worker down",
                    expected)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        log.warning("worker still running %.0f s after its server went away: killing it", grace)
        if os.getpgid(0) == os.getpid():  # our own group: the pool children go with us
            os.killpg(0, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=loop, name="taskbroker-parent-watch", daemon=True)
    thread.start()
    return thread
