"""Assembly: settings + plugins + ledger + broker + middleware = a ready :class:`TaskService`.

This is the one place that names the built-in plugins, the ledger backends and the default
middleware order.  A new ledger backend is a module with a ``from_url(url)`` constructor plus
one line in :data:`LEDGER_BACKENDS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from celery import Celery

from taskbroker.core.contract.plugins import Plugins, call_configure, load_plugins
from taskbroker.core.pipeline.chain import Middleware
from taskbroker.core.pipeline.middleware.audit import AuditMiddleware
from taskbroker.core.pipeline.middleware.authorization import AuthorizationMiddleware
from taskbroker.core.pipeline.middleware.identity import IdentityMiddleware
from taskbroker.core.pipeline.middleware.ratelimit import build_rate_limit_middleware
from taskbroker.core.pipeline.middleware.validation import ValidationMiddleware
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.pipeline.service import TaskService
from taskbroker.core.ports import Broker, Ledger
from taskbroker.core.reaper import Reaper
from taskbroker.core.settings import Settings, get_settings
from taskbroker.observability.metrics import record_reap, render_metrics
from taskbroker.observability.middleware import build_observability_middleware

__all__ = ["DEFAULT_PLUGINS", "LEDGER_BACKENDS", "App", "build_app", "build_reaper",
           "default_middleware", "is_sql_url", "ledger_for", "load_app_plugins",
           "local_principal", "migrate_database"]

#: the built-in plugins, registered through the same hooks as third-party packages
DEFAULT_PLUGINS = ("taskbroker.plugins.data", "taskbroker.plugins.resilience",
                   "taskbroker.plugins.metrics")

#: ledger backends by URL scheme ("postgresql+psycopg://..." -> "postgresql"):
#: "module:Class", whose ``from_url(url)`` builds the ledger
LEDGER_BACKENDS: dict[str, str] = {
    "sqlite": "taskbroker.adapters.sql:SqlLedger",
    "postgresql": "taskbroker.adapters.sql:SqlLedger",
    "memory": "taskbroker.adapters.memory:MemoryLedger",
}


def ledger_for(url: str) -> Ledger:
    """The ledger for ``url``, by its scheme (see :data:`LEDGER_BACKENDS`)."""
    scheme = _scheme(url)
    target = LEDGER_BACKENDS.get(scheme)
    if target is None:
        raise ValueError(f"TASKBROKER_DATABASE_URL: no ledger backend for scheme {scheme!r}; "
                         f"known: {', '.join(sorted(LEDGER_BACKENDS))}")
    module, _, name = target.partition(":")
    ledger: Ledger = getattr(importlib.import_module(module), name).from_url(url)
    return ledger


def attach_change_feed(ledger: Ledger, settings: Settings) -> Ledger:
    """In distributed mode, make ``ledger`` publish the id of every task it changes on Redis
    (what wakes waiting clients on every server; :mod:`taskbroker.adapters.redis.changes`)."""
    if settings.redis_url:
        from taskbroker.adapters.redis.changes import ChangePublisher

        ledger.on_change = ChangePublisher(settings.redis_url)
    return ledger


def is_sql_url(url: str) -> bool:
    """True when ``url`` names a SQL database (the schema is then migrated)."""
    return _scheme(url) in ("sqlite", "postgresql")


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def migrate_database(settings: Settings, plugins: Plugins) -> set[str]:
    """Bring the ledger's database to the newest schema of the ledger and every plugin
    (``taskbroker db upgrade``); returns the revisions now current (none for a non-SQL
    ledger)."""
    if not is_sql_url(settings.ledger_url):
        return set()
    from taskbroker.adapters.sql import engine_for
    from taskbroker.adapters.sql.migrate import upgrade

    return upgrade(engine_for(settings.ledger_url), plugins.migrations())


def load_app_plugins(settings: Settings) -> Plugins:
    """Built-ins (unless disabled), ``TASKBROKER_PLUGIN_MODULES`` and entry points."""
    modules = [m.strip() for m in settings.plugin_modules.split(",") if m.strip()]
    return load_plugins(
        builtins=DEFAULT_PLUGINS if settings.builtin_plugins else (),
        modules=modules,
        allow=settings.load_plugins,
        configure=lambda pm, info: call_configure(pm, info, settings),
    )


def default_middleware(settings: Settings, plugins: Plugins, ledger: Ledger) -> list[Middleware]:
    """The chain, outermost first.

    observability -> identity -> rate limit -> validation -> authorization -> (operation)

    Observability is outermost so refused calls are traced and counted too (it is the only
    layer allowed to swallow its own errors).  Rate limits come before validation so floods
    of malformed calls are limited as well; authorization comes after validation because it
    needs the resolved task type (its required role, its caller-bound parameter).
    """
    return [
        build_observability_middleware(settings, ledger),
        AuditMiddleware(),
        IdentityMiddleware(),
        build_rate_limit_middleware(settings, ledger),
        ValidationMiddleware(plugins.registry, max_params_bytes=settings.max_params_bytes),
        AuthorizationMiddleware(),
    ]


def local_principal(settings: Settings) -> Principal:
    """The principal of stdio and CLI callers, from settings."""
    return Principal(settings.local_user, settings.roles)


@dataclass
class App:
    """Everything a process needs to serve or run tasks.

    ``celery`` is None when the broker is not Celery (the in-process stub broker).
    """

    settings: Settings
    plugins: Plugins
    ledger: Ledger
    broker: Broker
    celery: Celery | None
    service: TaskService
    metrics: Callable[[], tuple[bytes, str]] | None = None


def build_reaper(app: App) -> Reaper:
    """The ledger reaper configured by ``app.settings`` (not started)."""
    s = app.settings
    return Reaper(app.ledger, app.broker, app.plugins.registry,
                  stale_after=s.stale_after, interval=s.reaper_interval,
                  retention_days=s.ledger_retention_days, tombstone_days=s.tombstone_days,
                  lost_after=s.lost_message_after, on_report=record_reap)


def build_app(settings: Settings | None = None, *, plugins: Plugins | None = None,
              middleware: Sequence[Middleware] | None = None, ledger: Ledger | None = None,
              broker: Broker | None = None) -> App:
    """Build the service for ``settings`` (default: from the environment).

    ``ledger`` and ``broker`` replace the ones the settings name (e.g. the in-memory pair of
    :mod:`taskbroker.adapters.memory`); with a broker given, no Celery app is made.  Without a
    ledger given, the database schema is migrated first when ``settings.auto_migrate``.
    """
    settings = settings or get_settings()
    plugins = plugins or load_app_plugins(settings)
    if ledger is None:
        if settings.auto_migrate:
            migrate_database(settings, plugins)
        ledger = attach_change_feed(ledger_for(settings.ledger_url), settings)
    celery: Celery | None = None
    if broker is None:
        from taskbroker.adapters.celery.app import make_celery_app
        from taskbroker.adapters.celery.broker import CeleryBroker

        celery = make_celery_app(settings)
        broker = CeleryBroker(celery)
    if middleware is None:
        middleware = default_middleware(settings, plugins, ledger)
    versions = {name: info.version for name, info in plugins.info.items()}
    service = TaskService(plugins.registry, ledger, broker, list(middleware),
                          plugin_versions=versions)
    return App(settings, plugins, ledger, broker, celery, service, metrics=render_metrics)
