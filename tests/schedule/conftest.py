"""Fixtures for the schedule tests: SQLite and PostgreSQL stores.

PostgreSQL: a uniquely named database on the session's server (the machine's on
127.0.0.1:5432, or a cluster the suite starts), dropped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskbroker.adapters.sql.engine import dispose_engines, engine_for
from taskbroker.schedule.store import ScheduleStore
from taskbroker.schedule.tables import metadata
from tests.support.procs import Postgres


@pytest.fixture(scope="session")
def pg_url(postgres: Postgres) -> Iterator[str]:
    """URL of a fresh database on the session's PostgreSQL (dropped afterwards)."""
    with postgres.scratch_database("taskbroker_sched") as url:
        try:
            yield url
        finally:
            dispose_engines()


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
