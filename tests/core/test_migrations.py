"""Schema migrations: the ledger's and each plugin's own schema (taskbroker_register_migrations),
adopting databases made before migrations existed, idempotent, race-free when many processes
start on an empty database, and always in step with the tables' metadata."""

from __future__ import annotations

import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, insert, inspect, select

from taskbroker import hookimpl
from taskbroker.adapters.sql.migrate import current, heads, upgrade
from taskbroker.adapters.sql.tables import metadata as ledger_metadata
from taskbroker.adapters.sql.tables import tasks
from taskbroker.app import DEFAULT_PLUGINS
from taskbroker.core.contract.plugins import load_plugins
from taskbroker.plugins.metrics.snapshots import metadata as metrics_metadata
from taskbroker.schedule.tables import PersonRow
from taskbroker.schedule.tables import metadata as schedule_metadata
from tests.support.procs import Postgres, base_env, create_postgres_database, taskbroker_argv

BUILTIN = load_plugins(builtins=DEFAULT_PLUGINS, entry_points=False).migrations()
METADATA = {"ledger": ledger_metadata, "schedule": schedule_metadata,
            "metrics": metrics_metadata}


@pytest.fixture
def empty_postgres() -> Iterator[Postgres]:
    db = create_postgres_database()
    try:
        yield db
    finally:
        db.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url = request.getfixturevalue("empty_postgres").url
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_builtin_plugins_register_their_schemas() -> None:
    assert [name for name, _ in BUILTIN] == ["schedule", "metrics"]


def test_upgrade_makes_every_table_and_is_idempotent(engine: Engine) -> None:
    assert current(engine, BUILTIN) == {"ledger": None, "schedule": None, "metrics": None}
    first = upgrade(engine, BUILTIN)
    assert first == heads(BUILTIN) == {"ledger": "ledger_0004", "schedule": "schedule_0001",
                                       "metrics": "metrics_0001"}
    tables = set(inspect(engine).get_table_names())
    expected = {t for md in METADATA.values() for t in md.tables}
    assert expected <= tables
    assert upgrade(engine, BUILTIN) == first


def test_a_database_made_before_migrations_is_adopted_with_its_rows(engine: Engine) -> None:
    # what the previous release did at start: create_all of the same tables
    for md in METADATA.values():
        md.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(tasks), {
            "id": "t-1", "task_type": "x", "task_name": "tb.x", "owner": "u", "params": {},
            "status": "queued", "progress": 0, "queued_at": _now(), "updated_at": _now(),
            "cancel_requested": False, "attempts": 0})
        conn.execute(insert(PersonRow), {"id": "p1", "position": 0, "name": "Ada",
                                         "kind": "faculty", "pgy": None})
    assert upgrade(engine, BUILTIN) == heads(BUILTIN)
    with engine.connect() as conn:
        assert conn.execute(select(tasks.c.owner).where(tasks.c.id == "t-1")).scalar() == "u"
        assert conn.execute(select(PersonRow.name)).scalar() == "Ada"


@pytest.mark.parametrize("name", sorted(METADATA))
def test_migrations_and_metadata_are_in_step(engine: Engine, name: str) -> None:
    schemas = [s for s in BUILTIN if s[0] == name]
    upgrade(engine, schemas)
    wanted = MetaData()
    for md in {id(m): m for m in (ledger_metadata, METADATA[name])}.values():
        for table in md.tables.values():
            table.to_metadata(wanted)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), wanted)
    ours = [d for d in diff if not _about_version_tables(d)]
    assert ours == [], f"schema {name!r}: migrations and metadata differ: {ours}"


def _about_version_tables(diff: object) -> bool:
    table = diff[1] if isinstance(diff, tuple) and len(diff) > 1 else None
    return getattr(table, "name", "").startswith("taskbroker_schema_")


HELLO_REVISION = '''
    """Hello's table."""
    import sqlalchemy as sa
    from alembic import op

    revision = "hello_0001"
    down_revision = None
    branch_labels = None
    depends_on = None


    def upgrade() -> None:
        op.create_table("tbx_hello", sa.Column("id", sa.Integer, primary_key=True))


    def downgrade() -> None:
        op.drop_table("tbx_hello")
'''


def test_a_plugin_owns_its_tables_through_taskbroker_register_migrations(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "hello_migrations"
    folder.mkdir()
    (folder / "hello_0001.py").write_text(textwrap.dedent(HELLO_REVISION))

    class Hello:
        @hookimpl
        def taskbroker_register_migrations(self, register) -> None:  # type: ignore[no-untyped-def]
            register("hello", folder)

    plugins = load_plugins(objects=[("hello", Hello())], entry_points=False)
    engine = create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    assert upgrade(engine, plugins.migrations()) == {"ledger": "ledger_0004",
                                                     "hello": "hello_0001"}
    assert {"tbx_hello", "taskbroker_schema_hello"} <= set(inspect(engine).get_table_names())
    # a process that does not load the plugin leaves its schema alone
    assert upgrade(engine) == {"ledger": "ledger_0004"}
    assert current(engine, plugins.migrations())["hello"] == "hello_0001"


STARTERS = 15


def test_fifteen_starters_racing_on_an_empty_database_all_succeed(
    empty_postgres: Postgres,
) -> None:
    """The tight race: 15 connections released together by a barrier.  Before migrations,
    each process ran create_all, and here 14 of 15 failed (UniqueViolation on pg_type /
    DuplicateTable); the advisory lock serialises them."""
    barrier = threading.Barrier(STARTERS)
    errors: list[str] = []

    def start() -> None:
        engine = create_engine(empty_postgres.url)
        try:
            barrier.wait()
            upgrade(engine, BUILTIN)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(STARTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    engine = create_engine(empty_postgres.url)
    try:
        assert current(engine, BUILTIN) == heads(BUILTIN)
    finally:
        engine.dispose()


def test_processes_starting_together_on_an_empty_database_all_start(
    empty_postgres: Postgres, tmp_path: Path
) -> None:
    env = base_env(TASKBROKER_DATABASE_URL=empty_postgres.url,
                   TASKBROKER_DATA_DIR=str(tmp_path / "data"), TASKBROKER_BUILTIN_PLUGINS="true")
    procs = [subprocess.Popen(taskbroker_argv("tasks", "types"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(STARTERS)]
    failures = []
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            failures.append(err.decode(errors="replace")[-500:])
    print(f"{STARTERS} processes on an empty database: {len(failures)} crashed")
    assert failures == []
    engine = create_engine(empty_postgres.url)
    try:
        assert current(engine, BUILTIN) == heads(BUILTIN)
    finally:
        engine.dispose()


def _now():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.now(dt.UTC)


