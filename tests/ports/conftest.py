"""Machinery shared by the port contract suites: known breaks become strict expected failures.

A contract module may declare ``KNOWN_BREAKS = {(test_name, adapter): reason}``: the clauses an
adapter is known to break today.  Those tests still run (the break stays visible in
``-rxX``), are reported as expected failures, and turn into failures as soon as the adapter is
fixed (``strict``), so the entry has to be deleted then.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
    with postgres.scratch_database("tb_ports") as url:
        yield url
