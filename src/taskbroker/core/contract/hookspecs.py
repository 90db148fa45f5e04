"""The hooks a taskbroker plugin may implement.

Every hook is a module-level function (or method) named ``taskbroker_*`` and decorated with
:data:`taskbroker.hookimpl`.  Built-in plugins use exactly these hooks, like third-party ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import click

    from taskbroker.core.contract.tasktype import TaskType

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "taskbroker"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- task types -------------------------------------------------------------------------


@hookspec
def taskbroker_register_task_types(register: Callable[[TaskType], None]) -> None:
    """Register the plugin's task types by calling ``register(TaskType(...))`` for each.

    Called once per process when the registry is built.  A name already registered by
    another plugin is rejected; the error names both plugins and the rest still load.
    """


# --- periodic work ----------------------------------------------------------------------


@hookspec
def taskbroker_register_schedules(register: Callable[..., None]) -> None:
    """Ask beat for periodic runs: ``register(name, task_type, schedule, params={})``.

    ``schedule`` is a :class:`celery.schedules.crontab` or a number of seconds.  Settings may
    override or disable each entry by ``name``.
    """


# --- configuration ----------------------------------------------------------------------


@hookspec
def taskbroker_configure(settings: Any) -> None:
    """Called once with the process's :class:`~taskbroker.core.settings.Settings` after load.

    Use it to read settings a plugin needs; do not start threads or connections here.
    """


# --- database schema --------------------------------------------------------------------


@hookspec
def taskbroker_register_migrations(register: Callable[[str, str | Path], None]) -> None:
    """Register the plugin's Alembic revisions: ``register(name, folder)``.

    A plugin that keeps tables in the ledger's database owns them through migrations: its
    revisions live in ``folder`` (the first one with ``down_revision = None``) and its version
    is kept in the table ``taskbroker_schema_<name>`` (``name``: ``[a-z][a-z0-9_]*``, unique),
    so plugins migrate independently and a plugin that is not loaded is left alone.
    ``taskbroker db upgrade`` (and ``serve``/``worker`` at start, unless
    ``TASKBROKER_AUTO_MIGRATE=false``) brings every registered schema to its newest revision
    under a lock.
    """


# --- command line -----------------------------------------------------------------------


@hookspec
def taskbroker_register_commands(cli: click.Group) -> None:
    """Add commands to the ``taskbroker`` command line: ``cli`` is its click group.

    Called once per CLI run, lazily (only when a command is looked up).  Use
    ``@hookimpl(tryfirst=True)`` to create a group that other plugins add subcommands to, and
    ``trylast=True`` to add to one.  The built-in ``data`` plugin registers ``taskbroker data``
    this way; the CLI itself never imports a plugin's module.
    """
