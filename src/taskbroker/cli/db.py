"""``taskbroker db``: the database schema (Alembic migrations of the ledger and the plugins)."""

from __future__ import annotations

import click

from taskbroker.cli.output import print_json
from taskbroker.core.settings import get_settings

__all__ = ["db"]


@click.group()
def db() -> None:
    """The ledger database's schema: upgrade it, or show where it is."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema of the ledger and of every loaded plugin to its newest revision.

    Idempotent, and safe when several processes run it at once (it holds a lock).
    """
    from taskbroker.app import is_sql_url, load_app_plugins, migrate_database

    settings = get_settings()
    if not is_sql_url(settings.ledger_url):
        raise click.ClickException("the ledger is not a SQL database: nothing to migrate")
    print_json(migrate_database(settings, load_app_plugins(settings)))


@db.command("current")
def db_current() -> None:
    """Show each schema's current and newest revision; exit 1 when one is behind."""
    from taskbroker.adapters.sql import engine_for
    from taskbroker.adapters.sql.migrate import current, heads
    from taskbroker.app import is_sql_url, load_app_plugins

    settings = get_settings()
    if not is_sql_url(settings.ledger_url):
        raise click.ClickException("the ledger is not a SQL database: it has no schema")
    schemas = load_app_plugins(settings).migrations()
    now, newest = current(engine_for(settings.ledger_url), schemas), heads(schemas)
    print_json({name: {"current": now.get(name), "head": head} for name, head in newest.items()})
    if any(now.get(name) != head for name, head in newest.items()):
        raise SystemExit(1)
