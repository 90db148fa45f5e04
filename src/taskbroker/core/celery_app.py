"""The Celery application: configuration for both modes and one Celery task per task type.

Each :class:`TaskType` becomes a Celery task named ``taskbroker.tasks.<name>`` carrying the
type's queue, time limits and retry budget.  Its body moves the ledger record through
started -> success / failure / retry, runs the handler with a :class:`TaskContext` wired to the
ledger, and refuses to run a task the ledger says was revoked or already ran (which makes
re-delivered messages harmless).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery, Task
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded
from celery.worker.request import Request
from sqlalchemy.exc import InterfaceError, OperationalError

from taskbroker.core.ledger import Ledger
from taskbroker.core.registry import Registry
from taskbroker.core.settings import Settings
from taskbroker.core.tasktype import RetryableError, TaskCancelled, TaskContext, TaskType

__all__ = ["claim", "make_celery_app", "mark_pool_child", "register_task_types",
           "transport_options"]

log = logging.getLogger("taskbroker.worker")

FS_TRANSPORT = "taskbroker.core.fs_transport:Transport"

T = TypeVar("T")


def transport_options(settings: Settings) -> dict[str, Any]:
    """Broker transport options for the configured mode."""
    if settings.embedded:
        root = settings.data_dir.resolve() / "broker"
        for sub in ("queue", "processed", "control"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(root / "queue"),
            "data_folder_out": str(root / "queue"),
            "processed_folder": str(root / "processed"),
            "control_folder": str(root / "control"),
            "store_processed": False,
            "polling_interval": 0.05,
        }
    # A short visibility timeout brings back the messages a dead worker had reserved quickly.
    # Celery's usual warning (it must exceed the longest task, or tasks run twice) does not
    # apply here: a re-delivered message of a task the ledger shows started or finished is
    # skipped by the conditional start, so a long task is never run twice.
    return {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout // 4)),
        "unacked_restore_throttle": 1,
        "socket_timeout": settings.broker_timeout,
        "socket_connect_timeout": settings.broker_timeout,
        "retry_on_timeout": False,
        "max_retries": 1,
    }


def make_celery_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``: filesystem broker when embedded, Redis otherwise."""
    if settings.embedded:
        results = settings.data_dir.resolve() / "results"
        results.mkdir(parents=True, exist_ok=True)
        broker_url, backend = "filesystem://", f"file://{results}"
    else:
        broker_url = backend = settings.redis_url
    app = Celery("taskbroker", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        # embedded: kombu's filesystem transport, with atomic message writes
        broker_transport=FS_TRANSPORT if settings.embedded else None,
        result_backend=backend,
        broker_transport_options=transport_options(settings),
        result_backend_transport_options={"retry_policy": {"timeout": settings.broker_timeout}},
        redis_socket_timeout=settings.broker_timeout,
        redis_socket_connect_timeout=settings.broker_timeout,
        broker_connection_timeout=settings.broker_timeout,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        task_default_queue=settings.default_queue,
        task_create_missing_queues=True,
        task_publish_retry=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        result_expires=settings.result_expires,
        result_extended=False,
        timezone="UTC",
        enable_utc=True,
    )
    return app


class LedgerRequest(Request):
    """Worker-side request that records hard time limits and lost workers in the ledger.

    These events happen in the worker's main process (the child running the task is gone),
    so the task body cannot record them itself.
    """

    ledger: Ledger | None = None
    task_type: TaskType | None = None

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if not soft and self.ledger is not None:
            self.ledger.finish(
                self.id, status="failure",
                error=f"time limit exceeded: hard limit of {timeout:g} s, process killed",
            )

    def on_failure(self, exc_info: Any, send_failed_event: bool = True,
                   return_ok: bool = False) -> None:
        from billiard.exceptions import WorkerLostError

        exc = exc_info.exception
        exc = getattr(exc, "exc", exc)  # billiard may wrap it in ExceptionWithTraceback
        if isinstance(exc, WorkerLostError) and self.ledger is not None:
            _on_worker_lost(self.ledger, self.id, self.task_type)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


def _on_worker_lost(ledger: Ledger, task_id: str, task_type: TaskType | None) -> None:
    record = ledger.get(task_id)
    if record is None:
        return
    if record.status != "started":  # e.g. revoked and terminated by the watchdog
        ledger.mark_ended(task_id)
        return
    budget = task_type.max_retries if task_type else 0
    if task_type is not None and task_type.idempotent and record.attempts <= budget:
        ledger.finish(task_id, status="retry", error="worker lost; re-delivered")
    else:
        ledger.finish(task_id, status="failure", error="worker lost")


_pool_child = False


def durable(fn: Callable[..., T], *args: Any, patience: float, **kwargs: Any) -> T:
    """Call a ledger write, retrying while the database is unreachable (up to ``patience`` s).

    A worker must not lose a result because the database blinked: it waits and retries with
    backoff; only past ``patience`` does the error propagate.
    """
    deadline = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("ledger unavailable (%s); retrying in %.1f s", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def mark_pool_child() -> None:
    """Record that this process is a prefork pool child (it may then kill itself on cancel)."""
    global _pool_child
    _pool_child = True


class Watchdog:
    """While a handler runs: heartbeats to the ledger, and enforcement of cancellation.

    A cancelled handler gets ``grace`` seconds to stop cooperatively; after that, in a prefork
    child, the child process kills itself (the pool replaces it, the message is re-delivered
    and skipped because the ledger says revoked).  Other pools cannot kill a running job:
    there the watchdog only logs.
    """

    def __init__(self, ledger: Ledger, task_id: str, *, grace: float,
                 heartbeat_interval: float, poll: float = 0.5) -> None:
        self.ledger, self.task_id = ledger, task_id
        self.grace, self.heartbeat_interval, self.poll = grace, heartbeat_interval, poll
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"watchdog-{task_id}",
                                        daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()

    def _loop(self) -> None:
        last_beat = time.monotonic()
        cancelled_at: float | None = None
        while not self._done.wait(self.poll):
            now = time.monotonic()
            try:
                if now - last_beat >= self.heartbeat_interval:
                    self.ledger.heartbeat(self.task_id)
                    last_beat = now
                if cancelled_at is None and self.ledger.is_cancel_requested(self.task_id):
                    cancelled_at = now
            except Exception as exc:  # the database may be briefly away; try again
                log.warning("watchdog for %s: %s", self.task_id, type(exc).__name__)
                continue
            if cancelled_at is not None and now - cancelled_at >= self.grace:
                if self._done.is_set():
                    return
                if _pool_child:
                    log.warning("task %s ignored cancellation for %.0f s: terminating its "
                                "process", self.task_id, self.grace)
                    os.kill(os.getpid(), signal.SIGKILL)
                log.warning("task %s ignored cancellation; this pool cannot terminate it",
                            self.task_id)
                return


def claim(ledger: Ledger, task_id: str, worker: str, patience: float,
          wait: float = 5.0) -> bool:
    """Move the task to started for this worker; False when it must not run here.

    The service publishes just before it inserts the record (or inside the inserting
    transaction), so an idle worker can get the message a moment before the record exists:
    while there is no record, wait for it (up to ``wait`` seconds; after that the start was
    rolled back and the message is dropped).  A record that exists but is revoked, running
    elsewhere or finished is never started.
    """
    deadline = time.monotonic() + wait
    while True:
        if durable(ledger.mark_started, task_id, worker=worker, patience=patience):
            return True
        record = durable(ledger.get, task_id, patience=patience)
        if record is not None and (record.status not in ("queued", "retry")
                                   or record.cancel_requested):
            return False
        if time.monotonic() > deadline:
            log.warning("task %s has no ledger record (its start was rolled back); dropped",
                        task_id)
            return False
        if record is None:
            time.sleep(0.005)
        # else: the record was inserted between our two reads: try again at once


def register_task_types(app: Celery, registry: Registry, ledger: Ledger, *,
                        settings: Settings) -> None:
    """Register one Celery task per task type in ``registry`` on ``app``."""
    hostname = socket.gethostname()
    for task_type in registry.all():
        _register(app, task_type, ledger, hostname, settings)


def _register(app: Celery, task_type: TaskType, ledger: Ledger, hostname: str,
              settings: Settings) -> None:
    request_cls = type(
        f"LedgerRequest_{task_type.name}", (LedgerRequest,),
        {"ledger": ledger, "task_type": task_type},
    )

    def body(self: Task, params: dict[str, Any] | None = None, owner: str | None = None,
             roles: list[str] | None = None) -> dict[str, Any] | None:
        task_id: str = self.request.id
        worker = self.request.hostname or hostname
        patience = settings.ledger_retry_seconds
        try:
            started = claim(ledger, task_id, worker, patience)
        except (OperationalError, InterfaceError):
            raise Reject("ledger unavailable", requeue=True) from None
        if not started:
            log.info("task %s not started: revoked, running elsewhere or finished", task_id)
            return None
        ctx = TaskContext(
            task_id, task_type.name, sink=ledger, owner=owner,
            roles=frozenset(roles or ()),
            logger=logging.getLogger(f"taskbroker.task.{task_type.name}"),
        )
        watchdog = Watchdog(ledger, task_id, grace=settings.cancel_grace_seconds,
                            heartbeat_interval=settings.heartbeat_interval)

        def end(status: str, **fields: Any) -> bool:
            return durable(ledger.finish, task_id, patience=patience, status=status, **fields)

        try:
            model = task_type.params.model_validate(params or {})
            with watchdog:
                result = dict(task_type.run(model, ctx) or {})
        except TaskCancelled:
            durable(ledger.mark_ended, task_id, patience=patience)
            return None
        except SoftTimeLimitExceeded:
            limit = task_type.soft_time_limit or 0
            end("failure", error=f"time limit exceeded: soft limit of {limit:g} s")
            raise
        except RetryableError as exc:
            error = f"{type(exc).__name__}: {exc}"
            if self.request.retries < task_type.max_retries:
                end("retry", error=error)
                raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries),
                                 max_retries=task_type.max_retries) from None
            end("failure", error=f"{error} (gave up after {task_type.max_retries} retries)")
            raise
        except Retry:
            raise
        except Exception as exc:
            end("failure", error=f"{type(exc).__name__}: {exc}")
            raise
        if not end("success", result=result):
            # cancelled while finishing: the revoke stands
            durable(ledger.mark_ended, task_id, patience=patience)
        return result

    app.task(
        body,
        name=task_type.celery_name,
        bind=True,
        queue=task_type.queue,
        soft_time_limit=task_type.soft_time_limit,
        time_limit=task_type.time_limit,
        max_retries=task_type.max_retries,
        acks_late=True,
        reject_on_worker_lost=True,
        Request=request_cls,
        typing=False,
    )


def data_dir_of(app: Celery) -> Path | None:
    """The embedded data directory an app's filesystem broker uses (None when distributed)."""
    folder = app.conf.broker_transport_options.get("data_folder_in")
    return Path(folder).parent.parent if folder else None
