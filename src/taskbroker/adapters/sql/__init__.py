"""The SQL ledger adapter (SQLite, PostgreSQL)."""

from taskbroker.adapters.sql.engine import dispose_engines, engine_for
from taskbroker.adapters.sql.ledger import SqlLedger

__all__ = ["SqlLedger", "dispose_engines", "engine_for"]
