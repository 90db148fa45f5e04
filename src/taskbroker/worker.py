"""The Celery worker application: ``celery -A taskbroker.worker worker`` or ``taskbroker worker``.

Importing this module loads the plugins and registers one Celery task per task type, each
consuming its type's queue.
"""

from __future__ import annotations

from celery import signals
from kombu import Queue

from taskbroker.app import load_app_plugins
from taskbroker.beat import register_beat_task
from taskbroker.core import celery_app as _celery_app
from taskbroker.core.database import dispose_engines, engine_for
from taskbroker.core.ledger import Ledger
from taskbroker.core.settings import get_settings
from taskbroker.observability.worker import install_worker_observability

__all__ = ["app", "ledger", "plugins", "queues"]

settings = get_settings()
app = _celery_app.make_celery_app(settings)
plugins = load_app_plugins(settings)
ledger = Ledger(engine_for(settings.ledger_url))
_celery_app.register_task_types(app, plugins.registry, ledger, settings=settings)

#: every queue some registered task type uses (the worker consumes all unless told otherwise)
queues = sorted({t.queue for t in plugins.registry.all()} | {settings.default_queue})
app.conf.task_queues = [Queue(q, routing_key=q) for q in queues]
register_beat_task(app, settings)
install_worker_observability(app, settings)


@signals.worker_process_init.connect
def _child_init(**_: object) -> None:
    """In each prefork child: fresh database pools, and mark the process as a pool child."""
    dispose_engines()
    _celery_app.mark_pool_child()
