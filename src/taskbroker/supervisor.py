"""Embedded mode: run a Celery worker as a child process and restart it when it dies."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["WorkerSupervisor"]

log = logging.getLogger("taskbroker.supervisor")


class WorkerSupervisor:
    """Starts ``argv`` and restarts it (with backoff) whenever it exits, until :meth:`stop`.

    The child's stdout goes to our stderr, so a stdio MCP stream is never polluted.
    """

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 max_backoff: float = 30.0) -> None:
        self.argv = list(argv)
        self.env = env
        self.max_backoff = max_backoff
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
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
        self._proc = subprocess.Popen(self.argv, env=self.env, stdout=sys.stderr.fileno(),
                                      stdin=subprocess.DEVNULL, start_new_session=True)
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

    def stop(self, timeout: float = 30.0) -> None:
        """Warm-stop the worker (SIGTERM, then SIGKILL after ``timeout``) and stop watching."""
        self._stopping.set()
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        except ProcessLookupError:
            pass
