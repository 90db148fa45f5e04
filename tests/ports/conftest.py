"""Machinery shared by the port contract suites: known breaks become strict expected failures.

A contract module may declare ``KNOWN_BREAKS = {(test_name, adapter): reason}``: the clauses an
adapter is known to break today.  Those tests still run (the break stays visible in
``-rxX``), are reported as expected failures, and turn into failures as soon as the adapter is
fixed (``strict``), so the entry has to be deleted then.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from taskbroker.adapters.sql import engine_for
from tests.support.procs import Postgres

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the known breaks of the contract modules in this directory."""
    for item in items:
        if not isinstance(item, pytest.Function) or HERE not in item.path.parents:
            continue
        breaks: dict[tuple[str, str], str] = getattr(item.module, "KNOWN_BREAKS", {})
        callspec = getattr(item, "callspec", None)
        if not breaks or callspec is None:
            continue
        for value in callspec.params.values():
            reason = breaks.get((item.originalname, value)) if isinstance(value, str) else None
            if reason is not None:
                item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture(scope="module")
def contract_pg_url(postgres: Postgres) -> Iterator[str]:
    """A PostgreSQL database of the test module's own (dropped after it)."""
    name = f"tb_ports_{uuid.uuid4().hex[:8]}"
    admin = postgres.admin_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = postgres.admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with contextlib.suppress(Exception), psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
