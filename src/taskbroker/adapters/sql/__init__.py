"""The SQL ledger adapter (SQLite, PostgreSQL), and what the worker must know of its errors."""

from psycopg import Error as _PsycopgError
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as _PoolTimeout

from taskbroker.adapters.sql.engine import dispose_engines, engine_for, use_pre_ping
from taskbroker.adapters.sql.ledger import SqlLedger

__all__ = ["PRIVATE_ERRORS", "TRANSIENT_ERRORS", "SqlLedger", "dispose_engines", "engine_for",
           "use_pre_ping"]

#: database errors a handler may hit when the database blinks (retried when the type allows)
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError,
                                                     _PoolTimeout)
#: database errors whose text (SQL, bound parameters) must never reach a client
PRIVATE_ERRORS: tuple[type[BaseException], ...] = (SQLAlchemyError, _PsycopgError)
