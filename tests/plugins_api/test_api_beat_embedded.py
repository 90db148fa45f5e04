"""`taskbroker serve --beat` in embedded mode: one process tree serves MCP, runs the worker and
the periodic schedule; a plugin's 1-second entry produces tasks that run, and SIGTERM to the
server stops all three."""

from __future__ import annotations

import os
import signal
import textwrap
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

from taskbroker.adapters.sql.ledger import _record
from taskbroker.adapters.sql.tables import tasks
from tests.conftest import LOG_DIR
from tests.support.procs import base_env, free_port, start_process, taskbroker_argv, wait_for

BEAT_PLUGIN = """
    from taskbroker import hookimpl

    @hookimpl
    def taskbroker_register_schedules(register):
        register("tbx_embedded_echo", "test_echo", 1.0)
"""


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_serve_with_beat_runs_the_schedule_and_stops_it(tmp_path: Path) -> None:
    (tmp_path / "tbx_embedded_beat.py").write_text(textwrap.dedent(BEAT_PLUGIN))
    beat_user = f"beat-{uuid.uuid4().hex[:8]}"
    data = tmp_path / "data"
    port = free_port()
    env = base_env(
        TASKBROKER_DATA_DIR=str(data), TASKBROKER_BEAT_USER=beat_user,
        TASKBROKER_PLUGIN_MODULES="tests.support.sample_plugin,tbx_embedded_beat",
        PYTHONPATH=os.pathsep.join([str(tmp_path), base_env()["PYTHONPATH"]]),
        TB_BEAT_MARKER=beat_user,
    )
    proc = start_process(taskbroker_argv("serve", "--port", str(port), "--beat"), env=env,
                         name="serve-beat", log_dir=LOG_DIR)
    engine = None
    try:
        wait_for(lambda: not proc.alive() or httpx.get(
            f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200,
            timeout=60, what="embedded server up")
        assert proc.alive(), proc.log()[-3000:]
        engine = create_engine(f"sqlite:///{data / 'taskbroker.db'}")

        def succeeded() -> list:
            query = select(tasks).where(tasks.c.owner == beat_user)
            with engine.connect() as conn:
                rows = [_record(r) for r in conn.execute(query).mappings()]
            return [r for r in rows if r.status == "success"]

        done = wait_for(succeeded, timeout=90, what="a beat-started task to succeed")
        assert done[0].task_type == "test_echo" and done[0].result == {"owner": beat_user}
        # serve, its worker and its beat all carry the marker
        assert len(_processes_with(f"TB_BEAT_MARKER={beat_user}")) >= 3
        os.kill(proc.pid, signal.SIGTERM)  # the server only: it must stop its children
        assert proc.popen.wait(timeout=60) == 0
        wait_for(lambda: not _processes_with(f"TB_BEAT_MARKER={beat_user}"), timeout=30,
                 what="the worker and beat to stop with their server")
    finally:
        if engine is not None:
            engine.dispose()
        proc.stop()
    assert "tbx_embedded_echo" in proc.log()
