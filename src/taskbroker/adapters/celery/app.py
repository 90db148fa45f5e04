"""The Celery application's configuration for both modes.

Embedded: kombu's filesystem transport (with atomic writes, :mod:`.fs_transport`) and file
results under the data directory.  Distributed: Redis for both.  Either way: late acks,
reject on worker loss, prefetch 1, JSON only, and no result storage for our own tasks (the
ledger holds results).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from taskbroker.core.settings import Settings

__all__ = ["FS_TRANSPORT", "REDIS_TRANSPORT", "make_celery_app", "transport_options"]

FS_TRANSPORT = "taskbroker.adapters.celery.fs_transport:Transport"
REDIS_TRANSPORT = "taskbroker.adapters.celery.redis_transport:Transport"


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


def _transport(settings: Settings, broker_url: str) -> str | None:
    if settings.embedded:
        return FS_TRANSPORT
    if broker_url.split("://", 1)[0].lower() in ("redis", "rediss"):
        return REDIS_TRANSPORT
    return None  # kombu picks the transport from the URL's scheme


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
        # embedded: kombu's filesystem transport, with atomic message writes; Redis: kombu's,
        # with one client per channel instead of one per message
        broker_transport=_transport(settings, broker_url),
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
