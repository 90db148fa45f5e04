"""Fixtures of the metrics tests: ledger databases on SQLite and PostgreSQL, a fixed today."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from metrics_programs import D0

from taskbroker.adapters.sql.engine import engine_for
from taskbroker.core.settings import get_settings
from taskbroker.plugins.metrics import data

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


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
def postgres_url() -> Iterator[str]:
    """A uniquely named PostgreSQL database at 127.0.0.1:5432, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"tb_metrics_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
