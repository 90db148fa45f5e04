"""The Celery worker application: ``celery -A taskbroker.worker worker`` or ``taskbroker worker``.

Importing this module loads the plugins and registers one Celery task per task type, each
consuming its type's queue and running the core :class:`~taskbroker.core.runtime.Runtime`.
"""

from __future__ import annotations

import os

from celery import signals
from kombu import Queue

from taskbroker.adapters.celery.app import make_celery_app
from taskbroker.adapters.celery.presence import WorkerPresence
from taskbroker.adapters.celery.tasks import make_runtime, register_task_types
from taskbroker.adapters.sql import PRIVATE_ERRORS, TRANSIENT_ERRORS, use_pre_ping
from taskbroker.app import attach_change_feed, ledger_for, load_app_plugins, migrate_database
from taskbroker.core.settings import get_settings
from taskbroker.observability.worker import install_worker_observability

__all__ = ["app", "ledger", "plugins", "presence", "queues", "runtime"]

settings = get_settings()
use_pre_ping()  # a database restart costs workers a reconnect, never a task
app = make_celery_app(settings)
plugins = load_app_plugins(settings)
if settings.auto_migrate:
    migrate_database(settings, plugins)
ledger = attach_change_feed(ledger_for(settings.ledger_url), settings)
runtime = make_runtime(ledger, settings, transient_errors=TRANSIENT_ERRORS,
                       private_errors=PRIVATE_ERRORS)
register_task_types(app, plugins.registry, runtime)

#: every queue some registered task type uses (the worker consumes all unless told otherwise)
queues = sorted({t.queue for t in plugins.registry.all()} | {settings.default_queue})
app.conf.task_queues = [Queue(q, routing_key=q) for q in queues]
install_worker_observability(app, settings)
#: this worker's row in the ledger (the console's workers page)
presence = WorkerPresence(ledger, interval=settings.heartbeat_interval, queues=queues)


_main_pid: int | None = None


@signals.worker_init.connect
def _main_init(**_: object) -> None:
    """In the worker's main process, before the pool starts: remember which process it is."""
    global _main_pid
    _main_pid = os.getpid()


@signals.worker_process_init.connect
def _child_init(**_: object) -> None:
    """In each prefork child (the pool replaces a child that kills itself), a handler that
    ignores a cancel may be terminated; never in the solo pool's one process, which sends
    this signal too.  (Database pools were emptied at fork.)"""
    runtime.may_terminate = _main_pid is not None and os.getpid() != _main_pid


@signals.worker_ready.connect
def _ready(sender: object = None, **_: object) -> None:
    """The worker consumes now: record its presence (its node name, as tasks record it)."""
    consumer = getattr(sender, "task_consumer", None)
    consumed = [q.name for q in getattr(consumer, "queues", None) or ()]
    if consumed:  # what it was told to consume (-Q), else every queue
        presence.queues = sorted(consumed)
    presence.start(str(getattr(sender, "hostname", None) or os.getpid()))


@signals.worker_shutdown.connect
def _shutdown(**_: object) -> None:
    """A warm shutdown: the worker's row goes."""
    presence.stop()
