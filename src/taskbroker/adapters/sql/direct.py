"""The two hottest ledger statements on the driver's own cursor (PostgreSQL + psycopg).

A start inserts one row and a status poll reads one row by primary key.  Through SQLAlchemy's
execution layer each costs ~250-300 microseconds of CPU, of which the database driver's part
is ~90: the rest is SQLAlchemy's per-execution bookkeeping (events, isolation-level switching
of the autocommit view, result metadata built from 23 column descriptions).  Here the two
statements run on the DBAPI connection of a connection checked out of the same engine's
pool, in autocommit for the statement, and errors come back as SQLAlchemy's own
``DBAPIError`` subclasses (a dead connection invalidated in the pool and flagged), so
:func:`~taskbroker.adapters.sql.ledger.translate_db_errors` treats them exactly as it treats
the same error from SQLAlchemy: one retry on a fresh connection, then the port's error.

Every other statement, and SQLite, stays on SQLAlchemy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from taskbroker.adapters.sql.tables import tasks

__all__ = ["DirectStatements", "direct_statements"]

#: every column of the tasks table, in the order the direct statements name them
COLUMNS: tuple[str, ...] = tuple(c.name for c in tasks.columns)


class DirectStatements:
    """Insert one task record and read one by id, on psycopg's cursor.

    Args:
        engine: a PostgreSQL engine whose driver is psycopg (3).
    """

    def __init__(self, engine: Engine) -> None:
        import psycopg
        from psycopg.types.json import Json

        self.engine = engine
        self._error: type[Exception] = psycopg.Error
        self._json = Json
        table = tasks.name
        names = ", ".join(COLUMNS)
        self._select = f"SELECT {names} FROM {table} WHERE id = %s"
        self._select_owned = f"{self._select} AND owner = %s"
        self._table = table

    @contextlib.contextmanager
    def _cursor(self, statement: str) -> Iterator[Any]:
        """A cursor of a pooled connection in autocommit; the connection goes back to the
        pool as it came (autocommit off), or is invalidated when it died."""
        try:
            raw = self.engine.raw_connection()
        except self._error as exc:  # the database cannot be reached
            raise self._wrapped(statement, exc, dead=False) from exc
        try:
            driver = raw.driver_connection
            try:
                driver.autocommit = True
                try:
                    with driver.cursor() as cur:
                        yield cur
                finally:
                    if not (driver.closed or driver.broken):
                        driver.autocommit = False
            except self._error as exc:
                dead = bool(self.engine.dialect.is_disconnect(exc, driver, None))
                if dead:
                    # as SQLAlchemy does on a disconnect: every connection made before this
                    # one is recycled at its next checkout (a restart killed them all)
                    self.engine.pool._invalidate(raw, exc)
                raise self._wrapped(statement, exc, dead=dead) from exc
        finally:
            raw.close()

    def _wrapped(self, statement: str, exc: Exception, *, dead: bool) -> Exception:
        """``exc`` as SQLAlchemy would raise it (its DBAPIError subclass; no parameters in
        the message: they may hold personal data)."""
        return DBAPIError.instance(statement, None, exc, self._error, hide_parameters=True,
                                   connection_invalidated=dead, dialect=self.engine.dialect)

    def insert(self, values: Mapping[str, Any]) -> None:
        """INSERT one row of the tasks table (``params`` and ``result`` as JSON)."""
        names = list(values)
        statement = (f"INSERT INTO {self._table} ({', '.join(names)}) "
                     f"VALUES ({', '.join(['%s'] * len(names))})")
        row = [self._json(v) if k in ("params", "result") and v is not None else v
               for k, v in values.items()]
        with self._cursor(statement) as cur:
            cur.execute(statement, row)

    def get(self, task_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The row of ``task_id`` (only when ``owner`` owns it, if given), by column name."""
        if owner is None:
            statement, args = self._select, (task_id,)
        else:
            statement, args = self._select_owned, (task_id, owner)
        with self._cursor(statement) as cur:
            cur.execute(statement, args)
            row = cur.fetchone()
        return None if row is None else dict(zip(COLUMNS, row, strict=True))


def direct_statements(engine: Engine) -> DirectStatements | None:
    """The direct statements for ``engine`` when its driver is psycopg, else None."""
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return DirectStatements(engine)
    return None
