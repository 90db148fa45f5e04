"""Workers die mid-task: every accepted task still ends terminal, none stuck, none lost, and
a non-idempotent task never completes twice."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from taskbroker.app import App
from taskbroker.core.pipeline.principal import Principal
from taskbroker.core.reaper import Reaper
from tests.conftest import start_worker
from tests.support.procs import Proc, wait_for

USER = Principal("fault-user", frozenset())


def pool_children(proc: Proc) -> list[int]:
    """Pids of the worker's prefork children."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == proc.pid:
                out.append(int(entry.name))
    return out


def all_terminal(app: App, ids: list[str]) -> bool:
    return all(app.ledger.get(i).terminal for i in ids)


def test_200_tasks_5_worker_kills_2_workers(fault_app: App, fault_env: dict[str, str],
                                            reaper: Reaper, tmp_path: Path) -> None:
    rng = random.Random(7)
    record = tmp_path / "completions.log"
    workers = [start_worker(fault_env, name=f"fw{i}") for i in range(2)]
    try:
        ids: dict[str, str] = {}
        for i in range(200):
            kind = "test_once" if i % 2 == 0 else "test_idem"
            r = fault_app.service.start(USER, kind, {"ms": rng.randint(30, 300),
                                                     "record": str(record)})
            ids[r.task_id] = kind
        kills = 0
        while kills < 5:
            time.sleep(rng.uniform(0.3, 1.2))
            victim = rng.randrange(2)
            # a whole-worker crash (node loss): the main process and its children at once
            os.killpg(workers[victim].pid, signal.SIGKILL)
            workers[victim].stop()
            workers[victim] = start_worker(fault_env, name=f"fw{victim}")
            kills += 1

        wait_for(lambda: all_terminal(fault_app, list(ids)), timeout=240, interval=0.5,
                 what="every task terminal")
    finally:
        for w in workers:
            w.stop()

    records = {i: fault_app.ledger.get(i) for i in ids}
    statuses = Counter(r.status for r in records.values())
    assert set(statuses) <= {"success", "failure"}, statuses  # 0 stuck, 0 lost
    for task_id, rec in records.items():
        if rec.status == "failure":
            assert rec.error == "worker lost", (task_id, rec.error)
    completions = Counter(record.read_text().split())
    once = [i for i, kind in ids.items() if kind == "test_once"]
    assert all(completions[i] <= 1 for i in once), "a non-idempotent task completed twice"
    # every success really ran; idempotent ones had retry budget for 5 kills
    for task_id, rec in records.items():
        if rec.status == "success":
            assert completions[task_id] >= 1
    idem = [i for i, kind in ids.items() if kind == "test_idem"]
    assert all(records[i].status == "success" for i in idem)


def test_prefork_child_killed(fault_app: App, fault_env: dict[str, str], reaper: Reaper,
                              tmp_path: Path) -> None:
    record = tmp_path / "child.log"
    worker = start_worker(fault_env, name="fchild", concurrency=1)
    try:
        idem = fault_app.service.start(USER, "test_idem", {"ms": 4000, "record": str(record)})
        wait_for(lambda: fault_app.ledger.get(idem.task_id).status == "started", timeout=60,
                 what="idempotent task started")
        child = pool_children(worker)
        assert child, "no pool child found"
        os.kill(child[0], signal.SIGKILL)
        rec = wait_for(lambda: (r := fault_app.ledger.get(idem.task_id)).status == "success"
                       and r, timeout=120, what="idempotent task re-run to success")
        assert rec.attempts == 2

        once = fault_app.service.start(USER, "test_once", {"ms": 4000, "record": str(record)})
        wait_for(lambda: fault_app.ledger.get(once.task_id).status == "started", timeout=60,
                 what="non-idempotent task started")
        os.kill(pool_children(worker)[0], signal.SIGKILL)
        rec = wait_for(lambda: (r := fault_app.ledger.get(once.task_id)).terminal and r,
                       timeout=120, what="non-idempotent task terminal")
        assert rec.status == "failure" and rec.error == "worker lost"
        assert once.task_id not in record.read_text()
    finally:
        worker.stop()


@pytest.mark.parametrize("kind", ["test_idem", "test_once"])
def test_warm_shutdown_finishes_in_flight_tasks(fault_app: App, fault_env: dict[str, str],
                                                kind: str, tmp_path: Path) -> None:
    record = tmp_path / "warm.log"
    worker = start_worker(fault_env, name="fwarm", concurrency=1)
    try:
        r = fault_app.service.start(USER, kind, {"ms": 2000, "record": str(record)})
        wait_for(lambda: fault_app.ledger.get(r.task_id).status == "started", timeout=60,
                 what="task started")
        os.kill(worker.pid, signal.SIGTERM)  # warm shutdown, as Kubernetes sends
        worker.popen.wait(60)
    finally:
        worker.stop()
    rec = fault_app.ledger.get(r.task_id)
    assert rec.status == "success" and record.read_text().split() == [r.task_id]
