"""SQLAlchemy engines, one per URL per process, tuned for SQLite (WAL) and PostgreSQL."""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

__all__ = ["dispose_engines", "engine_for", "use_pre_ping"]

_engines: dict[str, Engine] = {}
_lock = threading.Lock()
_pre_ping = False


def use_pre_ping(enabled: bool = True) -> None:
    """Engines made from now on test a pooled connection before each use (workers: a
    database restart costs a reconnect, never a failed task; servers skip the round trip and
    retry once instead)."""
    global _pre_ping
    _pre_ping = enabled


def _after_fork_in_child() -> None:
    # A forked child must not reuse the parent's pooled connections (SQLAlchemy's advice:
    # dispose(close=False) drops them without closing the parent's sockets).
    for engine in _engines.values():
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def engine_for(url: str) -> Engine:
    """The engine for ``url`` in this process (its pool is emptied in forked children).

    ``sqlite://`` (or ``sqlite:///:memory:``) is one in-memory database shared by every
    thread of the process, one thread at a time.
    """
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create(url)
        return engine


def _create(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # one connection is the database: a pool of exactly one, checked out by one
            # thread at a time (a StaticPool would share it between threads, interleaving
            # their transactions); it is never closed, so the database lives as long as this
            engine = create_engine(url, connect_args={"check_same_thread": False},
                                   poolclass=QueuePool, pool_size=1, max_overflow=0,
                                   pool_timeout=60, pool_recycle=-1)
        else:
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    # No pool_pre_ping on servers: it costs a round trip on every checkout. A connection that
    # died surfaces as a DBAPIError with connection_invalidated set; the pool then drops it and
    # the ledger retries the statement once. Workers turn it on (use_pre_ping).
    return create_engine(
        parsed,
        pool_pre_ping=_pre_ping,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        pool_timeout=5,
        connect_args={"connect_timeout": 3},
    )


def dispose_engines() -> None:
    """Close every pooled connection of this process (tests, shutdown)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
