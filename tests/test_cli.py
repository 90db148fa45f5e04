"""The CLI as a user runs it: data generate/export/load and snapshots, tasks, plugins."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import taskbroker
from tests.support.procs import base_env, taskbroker_argv


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(taskbroker_argv(*args), env=env, capture_output=True, text=True,
                          timeout=180)


def test_data_round_trip_and_plugins(tmp_path: Path) -> None:
    env = base_env(TASKBROKER_DATA_DIR=str(tmp_path / "d"), TASKBROKER_BUILTIN_PLUGINS="true")
    gen = run(env, "data", "generate", "--faculty", "8", "--residents", "10", "--days", "14",
              "--services", "3")
    assert gen.returncode == 0, gen.stderr
    assert "18 people" in gen.stderr
    exported = run(env, "data", "export")
    program = json.loads(exported.stdout)
    assert len([p for p in program["people"] if p["kind"] == "faculty"]) == 8
    assert len(program["runs"]) >= 2

    program["people"][0]["qualified"] = ["no-such-service"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(program))
    load = run(env, "data", "load", str(bad))
    assert load.returncode != 0 and "no-such-service" in load.stderr

    snaps = run(env, "data", "snapshots")
    assert snaps.returncode == 0 and json.loads(snaps.stdout) == []

    plugins = run(env, "plugins", "--json")
    names = {p["name"]: p for p in json.loads(plugins.stdout)}
    assert "resilience_contingency" in names["resilience"]["task_types"]
    assert names["resilience"]["version"] == taskbroker.__version__
    assert "metrics_snapshot" in names["metrics"]["task_types"]
    assert names["tests.support.sample_plugin"]["errors"] == []


def test_tasks_commands_report_errors_clearly(tmp_path: Path) -> None:
    env = base_env(TASKBROKER_DATA_DIR=str(tmp_path / "d"))
    bad = run(env, "tasks", "start", "test_count", "-p", "n=0")
    assert bad.returncode != 0
    assert "ValueError: invalid params for test_count: params.n:" in bad.stderr
    missing = run(env, "tasks", "status", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode != 0 and "TaskNotFound" in missing.stderr
    started = run(env, "tasks", "start", "test_count", "-p", "n=2")
    receipt = json.loads(started.stdout)  # stdout is pure JSON: logs go to stderr
    assert receipt["status"] == "pending"
    listed = json.loads(run(env, "tasks", "list").stdout)
    assert [t["task_id"] for t in listed["tasks"]] == [receipt["task_id"]]
    cancelled = json.loads(run(env, "tasks", "cancel", receipt["task_id"]).stdout)
    assert cancelled["status"] == "revoked"
    retried = json.loads(run(env, "tasks", "retry", receipt["task_id"]).stdout)
    assert (retried["status"], retried["retry_of"]) == ("pending", receipt["task_id"])
    assert retried["task_id"] != receipt["task_id"]


def test_follow_says_when_no_worker_picks_the_task_up(tmp_path: Path) -> None:
    from tests.conftest import LOG_DIR
    from tests.support.procs import start_process, wait_for

    env = base_env(TASKBROKER_DATA_DIR=str(tmp_path / "d"))
    proc = start_process(taskbroker_argv("tasks", "start", "test_count", "-p", "n=2",
                                         "--follow", "--notice-after", "1"),
                         env=env, name="cli-follow", log_dir=LOG_DIR)
    try:
        wait_for(lambda: "no worker has picked up task" in proc.log() or not proc.alive(),
                 timeout=120, what="the no-worker notice")
        assert proc.alive(), proc.log()[-2000:]  # still waiting: nothing runs the task
        assert "is a worker running for its queue?" in proc.log()
    finally:
        proc.stop()
    bad = run(env, "tasks", "start", "test_count", "--follow", "--notice-after", "0")
    assert bad.returncode == 2 and "--notice-after" in bad.stderr
