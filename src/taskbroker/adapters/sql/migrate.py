"""Schema migrations (Alembic), one independent schema per owner of tables.

The ledger's tables are the ``ledger`` schema (revisions in ``migrations/versions`` beside this
module); each plugin that keeps tables registers its own through
``taskbroker_register_migrations`` (the built-in ``data`` and ``metrics`` plugins do).  Each
schema records its revision in its own table, ``taskbroker_schema_<name>``, so a plugin that
is not loaded in some process is simply left alone.

:func:`upgrade` brings every schema to its newest revision, idempotently, holding a lock so
that processes starting together on an empty database cannot race: a PostgreSQL advisory
lock, or a file lock beside a SQLite file.  ``taskbroker db upgrade`` runs it; ``serve`` and
``worker`` run it at start unless ``TASKBROKER_AUTO_MIGRATE=false`` (the Helm chart runs a
pre-install/pre-upgrade Job instead).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text
from sqlalchemy.exc import OperationalError

from taskbroker.core.ports import Unavailable

__all__ = ["LEDGER", "Schema", "current", "heads", "make_config", "upgrade"]

log = logging.getLogger("taskbroker.migrate")

#: (name, folder of revisions)
Schema = tuple[str, Path]

#: the ledger's own schema
LEDGER: Schema = ("ledger", Path(__file__).resolve().parent / "migrations" / "versions")
_SCRIPTS = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
#: the PostgreSQL advisory lock key migrations hold
LOCK_KEY = 0x74626D6967726174 & 0x7FFFFFFFFFFFFFFF


def version_table(name: str) -> str:
    """The table recording the revision of schema ``name``."""
    if not _NAME.match(name):
        raise ValueError(f"migration schema name {name!r} must match [a-z][a-z0-9_]*")
    return f"taskbroker_schema_{name}"


def make_config(schema: Schema, metadata: MetaData | None = None) -> Config:
    """An Alembic config for one schema (no ini file needed)."""
    name, folder = schema
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(folder))
    config.attributes["metadata"] = metadata
    config.attributes["version_table"] = version_table(name)
    return config


def _all(schemas: Sequence[Schema]) -> list[Schema]:
    seen = {LEDGER[0]}
    out = [LEDGER]
    for name, folder in schemas:
        if name in seen:
            raise ValueError(f"two migration schemas are named {name!r}")
        seen.add(name)
        out.append((name, Path(folder)))
    return out


def heads(schemas: Sequence[Schema] = ()) -> dict[str, str | None]:
    """The newest revision of every schema, by name."""
    return {name: ScriptDirectory.from_config(make_config((name, folder))).get_current_head()
            for name, folder in _all(schemas)}


def current(engine: Engine, schemas: Sequence[Schema] = ()) -> dict[str, str | None]:
    """The revision the database is at for every schema (None: never migrated)."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        found: dict[str, str | None] = {}
        for name, _ in _all(schemas):
            table = version_table(name)
            found[name] = (MigrationContext.configure(conn, opts={"version_table": table})
                           .get_current_revision() if table in tables else None)
        return found


def upgrade(engine: Engine, schemas: Sequence[Schema] = ()) -> dict[str, str | None]:
    """Bring the ledger's and every given schema to its newest revision under a migration
    lock; returns the revisions now current.  Safe to call from many processes at once, and
    again when nothing is to do.

    Raises:
        Unavailable: the database cannot be reached.
    """
    try:
        with _migration_lock(engine) as conn:
            for schema in _all(schemas):
                config = make_config(schema)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
    except OperationalError as exc:
        raise Unavailable("ledger database unavailable: cannot migrate its schema") from exc
    now = current(engine, schemas)
    log.info("database schema: %s", ", ".join(f"{k} {v}" for k, v in sorted(now.items())))
    return now


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection holding the migration lock for the ``with`` block."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with open(f"{database}.migrate-lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with engine.connect() as conn:
                    yield conn
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        yield conn
