"""Fixtures for the schedule tests: SQLite and PostgreSQL stores.

PostgreSQL (127.0.0.1:5432, user postgres, trust auth) gets a uniquely named database per
test session, dropped at the end; tests needing it are skipped when the server is down.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from taskbroker.adapters.sql.engine import dispose_engines, engine_for
from taskbroker.schedule.store import ScheduleStore
from taskbroker.schedule.tables import metadata

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this session (dropped afterwards)."""
    name = f"taskbroker_sched_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment without PostgreSQL
        admin.dispose()
        pytest.skip(f"PostgreSQL not available: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[ScheduleStore]:
    """An empty :class:`ScheduleStore` on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield ScheduleStore(engine_for(f"sqlite:///{tmp_path / 'schedule.db'}"))
        return
    url = request.getfixturevalue("pg_url")
    engine = engine_for(url)
    metadata.drop_all(engine)
    yield ScheduleStore(engine)
    metadata.drop_all(engine)
