"""Discovering plugins: built-ins, extra modules and the ``taskbroker`` entry-point group.

Built-in plugins are named by the application (core does not know them) and go through the
same hooks as third-party packages.  Hooks are called through pluggy (``pm.hook.<name>``), so
``tryfirst``/``trylast`` ordering and wrappers are honoured, and each plugin is isolated: its
hook implementations are registered through a guard that records an exception under the
plugin's name and lets the other plugins' implementations run.  A plugin that fails to
import, or registers a bad or duplicate task type, is recorded in :attr:`Plugins.errors` with
its name; the others load.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.metadata as md
import inspect
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from taskbroker.core.contract import hookspecs
from taskbroker.core.contract.registry import Registry
from taskbroker.core.contract.tasktype import TaskType

__all__ = ["PluginInfo", "Plugins", "call_configure", "load_plugins"]

log = logging.getLogger("taskbroker.plugins")

#: the plugin whose hook implementation is running (for attributing what it registers)
_current_plugin: contextvars.ContextVar[str] = contextvars.ContextVar("taskbroker_plugin",
                                                                      default="?")


@dataclass
class PluginInfo:
    """What ``taskbroker plugins`` shows about one plugin."""

    name: str
    version: str | None
    source: str  # "builtin", "entrypoint" or "module"
    hooks: list[str] = field(default_factory=list)
    task_types: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Plugins:
    """The loaded plugin manager, the registry it filled, and what went wrong while loading."""

    manager: pluggy.PluginManager
    registry: Registry
    info: dict[str, PluginInfo]

    @property
    def errors(self) -> list[str]:
        """Every load or registration error, each naming its plugin."""
        return [f"{name}: {e}" for name, i in self.info.items() for e in i.errors]

    def schedules(self) -> list[dict[str, Any]]:
        """Periodic runs plugins asked for through ``taskbroker_register_schedules``."""
        entries: list[tuple[str, dict[str, Any]]] = []

        def register(name: str, task_type: str, schedule: Any,
                     params: dict | None = None) -> None:
            plugin = _current_plugin.get()
            entries.append((plugin, {"name": name, "task_type": task_type,
                                     "schedule": schedule, "params": dict(params or {}),
                                     "plugin": plugin}))

        self.manager.hook.taskbroker_register_schedules(register=register)
        return [entry for _, entry in _in_load_order(entries, self.info)]

    def migrations(self) -> list[tuple[str, Path]]:
        """``(name, folder)`` of the Alembic revisions plugins registered
        (``taskbroker_register_migrations``), in plugin load order."""
        found: list[tuple[str, tuple[str, Path]]] = []
        self.manager.hook.taskbroker_register_migrations(
            register=lambda name, path: found.append((_current_plugin.get(),
                                                      (str(name), Path(path)))))
        return [item for _, item in _in_load_order(found, self.info)]

    def register_commands(self, cli: Any) -> None:
        """Let plugins add commands to ``cli`` (``taskbroker_register_commands``)."""
        self.manager.hook.taskbroker_register_commands(cli=cli)


class _Guarded:
    """A plugin as pluggy sees it: its hook implementations, each run in isolation; any
    other attribute is the plugin's own.

    An exception from one implementation is recorded under the plugin's name (and logged)
    and the hook call goes on with the next plugin.  Wrappers are passed through unguarded
    (they must see the other implementations' results and errors).
    """

    def __init__(self, plugin: object, name: str, info: PluginInfo, project: str) -> None:
        self.__wrapped__ = plugin
        marker = f"{project}_impl"
        for attr in dir(plugin):
            if not attr.startswith(f"{project}_"):
                continue
            fn = getattr(plugin, attr, None)
            opts = getattr(fn, marker, None)
            if not callable(fn) or not isinstance(opts, dict):
                continue
            if opts.get("wrapper") or opts.get("hookwrapper"):
                setattr(self, attr, fn)
                continue
            guarded = _guard(fn, name, attr[len(project) + 1:], info)
            setattr(guarded, marker, opts)
            setattr(self, attr, guarded)

    def __getattr__(self, name: str) -> Any:
        # everything else is the plugin's own (``pm.get_plugin(name).SOMETHING``)
        return getattr(self.__wrapped__, name)


def _guard(fn: Callable[..., Any], plugin: str, hook: str, info: PluginInfo
           ) -> Callable[..., Any]:
    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        token = _current_plugin.set(plugin)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a broken plugin must not take the process down
            info.errors.append(f"{hook} failed: {exc!r}")
            log.error("plugin %s: %s failed: %r", plugin, hook, exc)
            return None
        finally:
            _current_plugin.reset(token)

    guarded.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    return guarded


def _in_load_order(items: list[tuple[str, Any]], info: dict[str, PluginInfo]
                   ) -> list[tuple[str, Any]]:
    """``(plugin, item)`` pairs sorted by when their plugin was loaded (stable within one)."""
    order = {name: i for i, name in enumerate(info)}
    return sorted(items, key=lambda pair: order.get(pair[0], len(order)))


def call_configure(pm: pluggy.PluginManager, info: dict[str, PluginInfo], settings: Any) -> None:
    """Call every ``taskbroker_configure`` implementation (each in isolation) with ``settings``.

    A plugin whose hook raises gets the error recorded under its name; the others go on.
    """
    pm.hook.taskbroker_configure(settings=settings)


def _distribution_version(module_name: str) -> str | None:
    """Version of the installed distribution that provides ``module_name``, if any."""
    top = module_name.split(".", 1)[0]
    for dist in md.packages_distributions().get(top, []):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def _parse_allow_list(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


def load_plugins(
    *,
    builtins: Sequence[str] = (),
    modules: Iterable[str] = (),
    objects: Iterable[tuple[str, object]] = (),
    entry_points: bool = True,
    allow: str | None = None,
    configure: Callable[[pluggy.PluginManager, dict[str, PluginInfo]], None] | None = None,
) -> Plugins:
    """Build the plugin manager and the task-type registry.

    Args:
        builtins: importable module names of the built-in plugins.
        modules: extra importable module names to register (``TASKBROKER_PLUGIN_MODULES``).
        objects: ``(name, plugin)`` pairs registered directly (tests).
        entry_points: load the ``taskbroker`` entry-point group.
        allow: ``TASKBROKER_LOAD_PLUGINS``: comma list of distribution or entry-point names;
            None loads every installed plugin, an empty string loads none.
        configure: called with the manager and the plugin infos after loading, before task
            types register (the application calls ``taskbroker_configure`` here, see
            :func:`call_configure`).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    info: dict[str, PluginInfo] = {}

    def add(name: str, plugin: object, source: str, version: str | None) -> None:
        if pm.has_plugin(name):
            info.setdefault(name, PluginInfo(name, version, source)).errors.append(
                "a plugin with this name is already loaded; skipped"
            )
            return
        info[name] = PluginInfo(name, version, source)
        try:
            pm.register(_Guarded(plugin, name, info[name], hookspecs.PROJECT), name=name)
        except Exception as exc:
            info[name].errors.append(f"could not register: {exc}")
            log.error("plugin %s could not register: %s", name, exc)

    def add_module(module_name: str, source: str, name: str | None = None,
                   version: str | None = None) -> None:
        label = name or module_name.rsplit(".", 1)[-1]
        try:
            module: ModuleType = importlib.import_module(module_name)
        except Exception as exc:
            info[label] = PluginInfo(label, version, source, errors=[f"import failed: {exc!r}"])
            log.error("plugin %s failed to import: %r", label, exc)
            return
        add(label, module, source, version)

    for module_name in builtins:
        add_module(module_name, "builtin", version=_distribution_version(module_name))
    for module_name in modules:
        add_module(module_name, "module", name=module_name)
    for name, obj in objects:
        add(name, obj, "module", None)
    if entry_points:
        allowed = _parse_allow_list(allow)
        for ep in md.entry_points(group=hookspecs.PROJECT):
            dist = ep.dist.name if ep.dist else None
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            version = ep.dist.version if ep.dist else None
            try:
                plugin = ep.load()
            except Exception as exc:
                info[ep.name] = PluginInfo(ep.name, version, "entrypoint",
                                           errors=[f"import failed: {exc!r}"])
                log.error("plugin %s failed to import: %r", ep.name, exc)
                continue
            add(ep.name, plugin, "entrypoint", version)

    if configure is not None:
        configure(pm, info)

    offered: list[tuple[str, TaskType]] = []
    pm.hook.taskbroker_register_task_types(
        register=lambda task_type: offered.append((_current_plugin.get(), task_type)))
    registry = Registry()
    # pluggy calls the last registered plugin first; the first loaded keeps a contested name
    for name, task_type in _in_load_order(offered, info):
        plugin_info = info.setdefault(name, PluginInfo(name, None, "module"))
        try:
            registry.add(task_type, plugin=name)
        except (ValueError, TypeError) as exc:
            plugin_info.errors.append(str(exc))
            log.error("plugin %s: %s", name, exc)
            continue
        plugin_info.task_types.append(task_type.name)

    for name, plugin_info in info.items():
        plugin = pm.get_plugin(name)
        if plugin is not None:
            plugin_info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return Plugins(pm, registry, info)
