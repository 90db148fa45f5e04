"""Every metrics handler reports progress and stops when cancelled, leaving nothing behind."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from metrics_programs import D0, make_run, three_person_assignments, three_person_program

from taskbroker import TaskCancelled, TaskContext
from taskbroker.plugins.metrics import TASK_TYPES, data
from taskbroker.plugins.metrics.snapshots import list_snapshots, store_snapshot
from taskbroker.testing import RecordingSink

TYPES = {t.name: t for t in TASK_TYPES}
PARAMS = {
    "metrics_computation": {"start_date": D0.isoformat(),
                            "end_date": (D0 + dt.timedelta(days=27)).isoformat()},
    "metrics_snapshot": {"period_days": 27},
    "metrics_cleanup": {"retention_days": 1},
    "metrics_fairness_report": {"weeks_back": 4,
                                "end_date": (D0 + dt.timedelta(days=27)).isoformat()},
    "metrics_version_diff": {"run_id_1": "prev", "run_id_2": "run-3p"},
}


class CancelAfter(RecordingSink):
    """Asks to cancel once ``after`` progress reports were made."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def report_progress(self, task_id: str, progress: int, message: str | None) -> None:
        super().report_progress(task_id, progress, message)
        if len(self.reports) >= self.after:
            self.cancel.set()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, sqlite_url: str, fixed_today: dt.date) -> str:
    from taskbroker.core.settings import get_settings

    base = three_person_program()
    program = base.model_copy(update={"runs": (
        *base.runs, make_run("prev", three_person_assignments()[:50], hours_ago=5))})
    monkeypatch.setattr(data, "load_program", lambda: program)
    monkeypatch.setenv("TASKBROKER_DATABASE_URL", sqlite_url)
    get_settings.cache_clear()
    yield sqlite_url
    get_settings.cache_clear()


def _run(name: str, sink: RecordingSink) -> dict:
    task_type = TYPES[name]
    ctx = TaskContext("cancel-test", name, sink=sink, check_interval=0.0)
    return dict(task_type.run(task_type.params.model_validate(PARAMS[name]), ctx))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_runs_to_completion_with_progress(env: str, name: str) -> None:
    sink = RecordingSink()
    result = _run(name, sink)
    assert json.loads(json.dumps(result)) == result  # a JSON-serialisable task result
    pcts = [p for p, _ in sink.reports]
    assert pcts[0] == 0 and pcts[-1] == 100 and pcts == sorted(pcts)
    assert len(pcts) >= 3


@pytest.mark.parametrize("after", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_cancel_stops_the_handler(env: str, name: str, after: int) -> None:
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    store_snapshot(_analysis(), snapshot_id="old", created_at=old)
    sink = CancelAfter(after)
    try:
        _run(name, sink)
    except TaskCancelled:
        pass
    else:
        # only a handler with fewer than `after` reports before its last check may finish
        assert name == "metrics_cleanup" and after > 1
        return
    assert sink.reports[-1][0] < 100
    snapshots = [s["snapshot_id"] for s in list_snapshots(10)]
    assert snapshots == ["old"]  # nothing stored, nothing deleted


def _analysis() -> dict:
    from taskbroker.plugins.metrics.computation import analyze
    from taskbroker.plugins.metrics.workload import Window

    return analyze(three_person_program(), Window(D0, D0 + dt.timedelta(days=6)))
