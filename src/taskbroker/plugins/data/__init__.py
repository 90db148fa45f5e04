"""The built-in ``data`` plugin: where the schedule data lives, and the ``taskbroker data``
commands that load, generate and export it.

The schedule domain (:mod:`taskbroker.schedule`) takes its database engine from its caller;
this plugin is that caller for the built-in task types: :func:`schedule_store` is the store on
the database the settings name (the ledger's, by default), one per process.  It registers one
read-only task type, ``schedule_runs`` (the runs over MCP), and the ``data`` command group,
through the same ``taskbroker_register_commands`` hook a third-party plugin uses
(``tryfirst``, so other plugins can add subcommands to the group: the metrics plugin adds
``data snapshots``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskbroker import hookimpl

if TYPE_CHECKING:
    import click
    from sqlalchemy import Engine

    from taskbroker.schedule.store import ScheduleStore

__all__ = ["configure_database", "data_group", "schedule_engine", "schedule_store",
           "taskbroker_configure", "taskbroker_register_commands",
           "taskbroker_register_migrations", "taskbroker_register_task_types"]

_lock = threading.Lock()
_url: str | None = None
_stores: dict[tuple[int, str], ScheduleStore] = {}


def _database_url() -> str:
    url = _url
    if url is None:
        from taskbroker.core.settings import get_settings

        url = get_settings().ledger_url
    # a ledger that is not SQL (the in-memory one) keeps schedule data in in-memory SQLite
    return url if url.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql") \
        else "sqlite://"


def schedule_engine() -> Engine:
    """The SQLAlchemy engine of the schedule data (the ledger's database by default)."""
    from taskbroker.adapters.sql.engine import engine_for

    return engine_for(_database_url())


def schedule_store() -> ScheduleStore:
    """The schedule store of this process's configured database (one per process and URL)."""
    from taskbroker.schedule.store import ScheduleStore

    key = (os.getpid(), _database_url())
    with _lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = ScheduleStore(schedule_engine())
        return store


def data_group(cli: click.Group) -> click.Group:
    """The ``data`` command group of ``cli`` (made when this plugin is not loaded)."""
    from taskbroker.plugins.data.commands import data

    existing = cli.commands.get("data")
    if isinstance(existing, type(data)):
        return existing
    cli.add_command(data)
    return data


def configure_database(url: str | None) -> None:
    """Keep the schedule data at ``url`` (None: the URL of the process settings)."""
    global _url
    _url = url


@hookimpl
def taskbroker_configure(settings: Any) -> None:
    """Remember which database holds the schedule data (the ledger's)."""
    configure_database(settings.ledger_url)


@hookimpl
def taskbroker_register_migrations(register: Any) -> None:
    """The schedule tables' revisions (version table ``taskbroker_schema_schedule``)."""
    register("schedule", Path(__file__).resolve().parent / "migrations")


@hookimpl
def taskbroker_register_task_types(register: Any) -> None:
    """``schedule_runs``: the program's schedule runs over MCP (read-only, any user)."""
    from taskbroker import TaskType
    from taskbroker.plugins.data import runs

    register(TaskType(
        name="schedule_runs",
        description="List the schedule runs (ids, creation time, status, assignments, first "
        "and last date, which one is current), newest first: the run ids "
        "metrics_version_diff compares.",
        run=runs.run, params=runs.ScheduleRunsParams, estimated_duration="a few seconds",
        soft_time_limit=60, time_limit=90))


@hookimpl(tryfirst=True)
def taskbroker_register_commands(cli: click.Group) -> None:
    """Add ``taskbroker data generate|load|export|runs``."""
    data_group(cli)
