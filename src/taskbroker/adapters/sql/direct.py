"""The hottest ledger statements on the driver's own cursor (PostgreSQL + psycopg).

A start inserts one row (after counting its owner's active tasks, when a cap is set) and a
status poll reads one row by primary key.  Through SQLAlchemy's
execution layer each costs ~250-300 microseconds of CPU, of which the database driver's part
is ~90: the rest is SQLAlchemy's per-execution bookkeeping (events, isolation-level switching
of the autocommit view, result metadata built from 23 column descriptions).  Here the
statements run on the DBAPI connection of a connection checked out of the same engine's
pool, in autocommit for the statement, and errors come back as SQLAlchemy's own
``DBAPIError`` subclasses (a dead connection invalidated in the pool and flagged), so
:func:`~taskbroker.adapters.sql.ledger.translate_db_errors` treats them exactly as it treats
the same error from SQLAlchemy: one retry on a fresh connection, then the port's error.

Every other statement, and SQLite, stays on SQLAlchemy.

On the event loop (:func:`~taskbroker.core.loop_bridge.run_on_loop`) the same statements
run on psycopg's async connections, a few per loop (:class:`LoopConnections`), awaited there:
no thread wakes for them.  Their errors are wrapped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from taskbroker.adapters.sql.tables import tasks
from taskbroker.core.loop_bridge import LoopLocal, await_io, on_loop

__all__ = ["DirectStatements", "LoopConnections", "direct_statements"]

#: every column of the tasks table, in the order the direct statements name them
COLUMNS: tuple[str, ...] = tuple(c.name for c in tasks.columns)

#: async connections per event loop; seconds to wait for one; seconds one is kept (as the
#: engine's pool_timeout and pool_recycle)
LOOP_POOL_SIZE, LOOP_POOL_TIMEOUT, LOOP_POOL_RECYCLE = 8, 5.0, 1800.0


class LoopConnections:
    """Up to ``size`` psycopg async connections in autocommit for one event loop, made on
    demand and reused; a broken one is dropped.

    Args:
        params: psycopg's connection keywords (what the engine's dialect passes).
    """

    def __init__(self, params: Mapping[str, Any], size: int = LOOP_POOL_SIZE) -> None:
        self._params = dict(params)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []
        self._born: dict[int, float] = {}  # id(connection) -> when it was made, while open

    async def acquire(self) -> Any:
        """An open connection (raises psycopg's OperationalError when none can be had)."""
        import psycopg

        try:
            if self._slots.locked():  # all in use: wait, within the pool's timeout
                await asyncio.wait_for(self._slots.acquire(), LOOP_POOL_TIMEOUT)
            else:
                await self._slots.acquire()
        except TimeoutError:
            raise psycopg.OperationalError(
                f"no free connection within {LOOP_POOL_TIMEOUT:g} s") from None
        try:
            while self._idle:
                conn = self._idle.pop()
                if conn.closed or conn.broken or \
                        time.monotonic() - self._born[id(conn)] >= LOOP_POOL_RECYCLE:
                    self._born.pop(id(conn), None)
                    await conn.close()
                    continue
                return conn
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._params)
            self._born[id(conn)] = time.monotonic()
            return conn
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: Any) -> None:
        """Give ``conn`` back (a closed or broken one is forgotten)."""
        if conn.closed or conn.broken:
            self._born.pop(id(conn), None)
        else:
            self._idle.append(conn)
        self._slots.release()

    async def aclose(self) -> None:
        """Close the idle connections (the loop ends, or a database restart killed them)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            self._born.pop(id(conn), None)
            with contextlib.suppress(Exception):
                await conn.close()


class DirectStatements:
    """Insert one task record, read one by id and count an owner's active ones, on psycopg's
    cursor.

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
        self._count_active = (f"SELECT count(*) FROM {table} WHERE owner = %s "
                              "AND status = ANY(%s)")
        self._table = table
        _args, params = engine.dialect.create_connect_args(engine.url)
        params.setdefault("connect_timeout", 3)
        self.loop_connections: LoopLocal[LoopConnections] = LoopLocal(
            lambda: LoopConnections(params), LoopConnections.aclose)

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

    def _execute(self, statement: str, args: Any, *, fetch: bool) -> Any:
        """Run ``statement``; the first row when ``fetch``.  Awaited on the loop's async
        connections inside :func:`~taskbroker.core.loop_bridge.run_on_loop`."""
        if on_loop():
            return await_io(self._execute_on_loop(statement, args, fetch))
        with self._cursor(statement) as cur:
            cur.execute(statement, args)
            return cur.fetchone() if fetch else None

    async def _execute_on_loop(self, statement: str, args: Any, fetch: bool) -> Any:
        connections = self.loop_connections.get()
        try:
            conn = await connections.acquire()
        except self._error as exc:  # the database cannot be reached
            raise self._wrapped(statement, exc, dead=False) from exc
        try:
            async with conn.cursor() as cur:
                await cur.execute(statement, args)
                return await cur.fetchone() if fetch else None
        except self._error as exc:
            dead = bool(conn.closed or conn.broken)
            if dead:  # as on the engine's pool: the connections made before it died too
                await connections.aclose()
            raise self._wrapped(statement, exc, dead=dead) from exc
        finally:
            connections.release(conn)

    def insert(self, values: Mapping[str, Any]) -> None:
        """INSERT one row of the tasks table (``params`` and ``result`` as JSON)."""
        names = list(values)
        statement = (f"INSERT INTO {self._table} ({', '.join(names)}) "
                     f"VALUES ({', '.join(['%s'] * len(names))})")
        row = [self._json(v) if k in ("params", "result") and v is not None else v
               for k, v in values.items()]
        self._execute(statement, row, fetch=False)

    def get(self, task_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The row of ``task_id`` (only when ``owner`` owns it, if given), by column name."""
        if owner is None:
            statement, args = self._select, (task_id,)
        else:
            statement, args = self._select_owned, (task_id, owner)
        row = self._execute(statement, args, fetch=True)
        return None if row is None else dict(zip(COLUMNS, row, strict=True))

    def count_active(self, owner: str, statuses: tuple[str, ...]) -> int:
        """How many of ``owner``'s tasks have one of ``statuses`` (a start's active cap)."""
        row = self._execute(self._count_active, (owner, list(statuses)), fetch=True)
        return int(row[0])


def direct_statements(engine: Engine) -> DirectStatements | None:
    """The direct statements for ``engine`` when its driver is psycopg, else None."""
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return DirectStatements(engine)
    return None
