"""Discovering plugins: built-ins, extra modules and the ``taskbroker`` entry-point group.

Built-in plugins are named by the application (core does not know them) and go through the
same hooks as third-party packages.  A plugin that fails to import, or registers a bad or
duplicate task type, is recorded in :attr:`Plugins.errors` with its name; the others load.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from taskbroker.core import hookspecs
from taskbroker.core.registry import Registry
from taskbroker.core.tasktype import TaskType

__all__ = ["PluginInfo", "Plugins", "call_configure", "load_plugins"]

log = logging.getLogger("taskbroker.plugins")


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
        entries: list[dict[str, Any]] = []
        for impl in self.manager.hook.taskbroker_register_schedules.get_hookimpls():
            plugin = self.manager.get_name(impl.plugin) or "?"

            def register(
                name: str, task_type: str, schedule: Any, params: dict | None = None,
                _plugin: str = plugin,
            ) -> None:
                entries.append({"name": name, "task_type": task_type, "schedule": schedule,
                                "params": dict(params or {}), "plugin": _plugin})

            try:
                impl.function(register=register)
            except Exception as exc:  # a broken plugin must not take the process down
                self.info[plugin].errors.append(f"register_schedules failed: {exc!r}")
                log.error("plugin %s: register_schedules failed: %r", plugin, exc)
        return entries


def call_configure(pm: pluggy.PluginManager, info: dict[str, PluginInfo], settings: Any) -> None:
    """Call every ``taskbroker_configure`` implementation, each in isolation.

    A plugin whose hook raises gets the error recorded under its name; the others go on.
    """
    for impl in pm.hook.taskbroker_configure.get_hookimpls():
        name = pm.get_name(impl.plugin) or "?"
        try:
            impl.function(settings=settings)
        except Exception as exc:
            info.setdefault(name, PluginInfo(name, None, "module")).errors.append(
                f"configure failed: {exc!r}")
            log.error("plugin %s: configure failed: %r", name, exc)


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
            pm.register(plugin, name=name)
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

    registry = Registry()
    for impl in pm.hook.taskbroker_register_task_types.get_hookimpls():
        name = pm.get_name(impl.plugin) or "?"
        plugin_info = info.setdefault(name, PluginInfo(name, None, "module"))

        def register(task_type: TaskType, _name: str = name,
                     _info: PluginInfo = plugin_info) -> None:
            try:
                registry.add(task_type, plugin=_name)
            except (ValueError, TypeError) as exc:
                _info.errors.append(str(exc))
                log.error("plugin %s: %s", _name, exc)
                return
            _info.task_types.append(task_type.name)

        try:
            impl.function(register=register)
        except Exception as exc:
            plugin_info.errors.append(f"register_task_types failed: {exc!r}")
            log.error("plugin %s: register_task_types failed: %r", name, exc)

    for name, plugin_info in info.items():
        plugin = pm.get_plugin(name)
        if plugin is not None:
            plugin_info.hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
    return Plugins(pm, registry, info)
