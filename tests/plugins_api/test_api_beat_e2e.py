"""A real ``taskbroker beat`` process against the session's Redis, PostgreSQL and worker: a
plugin's short-interval entry produces ledger records, started as the beat user, that run."""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from taskbroker.adapters.sql.ledger import _record
from taskbroker.adapters.sql.tables import tasks
from taskbroker.app import App
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.ports import TaskRecord
from tests.conftest import LOG_DIR
from tests.support.procs import Proc, start_process, taskbroker_argv, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker")]

BEAT_PLUGIN = """
    from taskbroker import hookimpl

    @hookimpl
    def taskbroker_register_schedules(register):
        register("tbx_echo_every_second", "test_echo", 1.0)
        register("tbx_disabled", "test_fail", 1.0, {"message": "disabled entries must not run"})
"""


def records_of(app: App, owner: str) -> list[TaskRecord]:
    """Every ledger record owned by ``owner``, oldest first."""
    query = select(tasks).where(tasks.c.owner == owner).order_by(tasks.c.queued_at)
    with app.ledger.engine.connect() as conn:
        return [_record(r) for r in conn.execute(query).mappings()]


def test_beat_entry_creates_a_ledger_record_and_the_task_runs(
    dist_env: dict[str, str], dist_app: App, admin: Principal, tmp_path: Path
) -> None:
    (tmp_path / "tbx_beat_plugin.py").write_text(textwrap.dedent(BEAT_PLUGIN))
    beat_user = f"beat-{uuid.uuid4().hex[:8]}"
    env = dict(
        dist_env,
        TASKBROKER_DATA_DIR=str(tmp_path / "beat"),  # the schedule file goes here
        TASKBROKER_PLUGIN_MODULES="tests.support.sample_plugin,tbx_beat_plugin",
        TASKBROKER_BEAT_USER=beat_user,
        TASKBROKER_SCHEDULES=json.dumps({"tbx_disabled": "off"}),
        PYTHONPATH=os.pathsep.join([str(tmp_path), dist_env["PYTHONPATH"]]),
    )
    beat: Proc = start_process(taskbroker_argv("beat"), env=env, name="beat", log_dir=LOG_DIR)
    try:
        done = wait_for(
            lambda: [r for r in records_of(dist_app, beat_user) if r.status == "success"],
            timeout=60, what="a beat-started test_echo to succeed",
        )
        assert beat.alive(), beat.log()[-3000:]
    finally:
        beat.stop()

    record = done[0]
    assert record.task_type == "test_echo" and record.task_name == "taskbroker.tasks.test_echo"
    assert record.result == {"owner": beat_user}  # the handler ran as the beat principal
    assert record.started_at is not None and record.worker
    # the same record through the service, as an admin polls it
    status = dist_app.service.status(admin, record.id)
    assert status.status == "success"
    # the disabled entry never produced anything
    assert {r.task_type for r in records_of(dist_app, beat_user)} == {"test_echo"}
    assert "tbx_echo_every_second" in beat.log()
    assert any((tmp_path / "beat").glob("beat-schedule*"))

