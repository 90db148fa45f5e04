"""A worker's presence in the ledger: one row per worker, refreshed by a heartbeat thread.

The console's workers page reads these rows (:meth:`Ledger.workers`): which workers are alive
(seen within a few heartbeats), since when, and which queues they consume.  The row is written
when the worker is ready, every ``interval`` seconds after that from the worker's main
process, and deleted at a warm shutdown; a worker that was killed leaves a row that stops
being refreshed (the console shows it as lost, and ``taskbroker`` never trusts it for
anything but display).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable

from taskbroker.core.ports import Ledger, utcnow

__all__ = ["WorkerPresence"]

log = logging.getLogger("taskbroker.worker")


class WorkerPresence:
    """Keeps one worker's ledger row fresh while it runs."""

    def __init__(self, ledger: Ledger, *, interval: float, queues: Iterable[str]) -> None:
        self.ledger = ledger
        self.interval = interval
        self.queues = sorted(queues)
        self.name: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, name: str) -> None:
        """Write the row for worker ``name`` now and keep refreshing it."""
        if self._thread is not None:
            return
        self.name = name
        started = utcnow()
        self._stop.clear()

        def beat() -> None:
            while True:
                try:
                    self.ledger.worker_seen(name, pid=os.getpid(), queues=self.queues,
                                            started_at=started)
                except Exception as exc:  # the ledger blinked: the next beat tries again
                    log.warning("worker presence not recorded (%s)", type(exc).__name__)
                if self._stop.wait(self.interval):
                    return

        self._thread = threading.Thread(target=beat, name="taskbroker-presence", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing and delete the row (a warm shutdown)."""
        thread, self._thread = self._thread, None
        if thread is None or self.name is None:
            return
        self._stop.set()
        thread.join(timeout=5)
        try:
            self.ledger.worker_gone(self.name)
        except Exception as exc:
            log.warning("worker presence not removed (%s)", type(exc).__name__)
