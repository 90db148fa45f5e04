"""What a client is told when a task fails: the error's kind, a human message and a reference
to the worker log; never SQL, bound parameters or driver messages (those stay in the log)."""

from __future__ import annotations

import re

from taskbroker.app import App
from taskbroker.core.pipeline.principal import Principal
from tests.support.procs import Proc, wait_for

ALICE = Principal("failure-text-alice", frozenset())
SECRET = "s3cr3t-literal-4711"


def _final(app: App, task_id: str):  # type: ignore[no-untyped-def]
    return wait_for(lambda: (s := app.service.status(ALICE, task_id)).status
                    in ("success", "failure") and s, timeout=60, what="task finished")


def test_a_database_error_in_a_handler_reads_as_internal_error_with_a_reference(
    dist_app: App, worker: Proc
) -> None:
    sql = f"SELECT * FROM no_such_table_here WHERE name = '{SECRET}'"
    receipt = dist_app.service.start(ALICE, "test_sql", {"sql": sql})
    final = _final(dist_app, receipt.task_id)
    assert final.status == "failure"
    match = re.fullmatch(r"InternalError: the task failed on a server error "
                         r"\(reference ([0-9a-f]{12})\)", final.error or "")
    assert match, final.error
    for leak in ("no_such_table_here", SECRET, "SELECT", "psycopg", "sqlalchemy", "UndefinedTable"):
        assert leak.lower() not in (final.error or "").lower()
    # the worker's log has the whole story under the same reference
    ref = match.group(1)
    wait_for(lambda: ref in worker.log(), timeout=30, what="the reference in the worker log")
    line = next(x for x in worker.log().splitlines() if ref in x)
    assert "no_such_table_here" in line or "no_such_table_here" in worker.log().split(ref, 1)[1]
