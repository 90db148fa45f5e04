"""Assembly: settings + plugins + ledger + broker + middleware = a ready :class:`TaskService`.

This is the one place that names the built-in plugins and the default middleware order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from celery import Celery

from taskbroker.core.auth import Principal
from taskbroker.core.authorization import AuthorizationMiddleware
from taskbroker.core.broker import CeleryBroker
from taskbroker.core.celery_app import make_celery_app
from taskbroker.core.database import engine_for
from taskbroker.core.identity import IdentityMiddleware
from taskbroker.core.ledger import Ledger
from taskbroker.core.middleware import Middleware
from taskbroker.core.plugins import Plugins, call_configure, load_plugins
from taskbroker.core.ratelimit import build_rate_limit_middleware
from taskbroker.core.reaper import Reaper
from taskbroker.core.service import TaskService
from taskbroker.core.settings import Settings, get_settings
from taskbroker.core.validation import ValidationMiddleware
from taskbroker.observability.metrics import render_metrics
from taskbroker.observability.middleware import build_observability_middleware

__all__ = ["DEFAULT_PLUGINS", "App", "build_app", "build_reaper", "default_middleware",
           "load_app_plugins", "local_principal"]

#: the built-in plugins, registered through the same hooks as third-party packages
DEFAULT_PLUGINS = ("taskbroker.plugins.resilience", "taskbroker.plugins.metrics")


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
    """Everything a process needs to serve or run tasks."""

    settings: Settings
    plugins: Plugins
    ledger: Ledger
    celery: Celery
    service: TaskService
    metrics: Callable[[], tuple[bytes, str]] | None = None


def build_reaper(app: App) -> Reaper:
    """The ledger reaper configured by ``app.settings`` (not started)."""
    s = app.settings
    return Reaper(app.ledger, app.service.broker, app.plugins.registry,
                  stale_after=s.stale_after, interval=s.reaper_interval,
                  retention_days=s.ledger_retention_days, tombstone_days=s.tombstone_days)


def build_app(settings: Settings | None = None, *, plugins: Plugins | None = None,
              middleware: Sequence[Middleware] | None = None) -> App:
    """Build the service for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    plugins = plugins or load_app_plugins(settings)
    ledger = Ledger(engine_for(settings.ledger_url))
    celery = make_celery_app(settings)
    if middleware is None:
        middleware = default_middleware(settings, plugins, ledger)
    chain = list(middleware)
    versions = {name: info.version for name, info in plugins.info.items()}
    service = TaskService(plugins.registry, ledger, CeleryBroker(celery), chain,
                          plugin_versions=versions)
    return App(settings, plugins, ledger, celery, service, metrics=render_metrics)
