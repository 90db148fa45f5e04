"""Fixtures of the metrics tests: ledger databases on SQLite and PostgreSQL, a fixed today."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from metrics_programs import D0

from taskbroker.core.settings import get_settings
from taskbroker.plugins.metrics import data
from tests.support.procs import Postgres


@pytest.fixture
def fixed_today(monkeypatch: pytest.MonkeyPatch) -> dt.date:
    """data.utcnow() is D0 12:00 UTC, so data.today(program) is D0 in every program time zone
    from UTC-11 to UTC+11 (the test programs use UTC and America/New_York)."""
    monkeypatch.setattr(data, "utcnow",
                        lambda: dt.datetime.combine(D0, dt.time(12), tzinfo=dt.UTC))
    return D0


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A fresh SQLite ledger file."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def postgres_url(postgres: Postgres) -> Iterator[str]:
    """A throwaway database on the session's PostgreSQL, dropped afterwards."""
    with postgres.scratch_database("tb_metrics") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """The ledger URL, once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue(f"{request.param}_url" if request.param == "sqlite"
                                   else "postgres_url")


@pytest.fixture
def ledger_env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Settings point the ledger (and schedule store) at ``db_url``."""
    monkeypatch.setenv("TASKBROKER_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()
