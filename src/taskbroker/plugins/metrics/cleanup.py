"""``metrics_cleanup``: delete metrics snapshots older than the retention — and nothing else.

The only statement this module issues is a DELETE on ``metrics_snapshots``; schedule runs and
assignments live in other tables and are never touched.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, delete

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.metrics import data
from taskbroker.plugins.metrics.params import CleanupParams
from taskbroker.plugins.metrics.snapshots import snapshot_engine, snapshots_table

__all__ = ["delete_snapshots_before", "run"]


def delete_snapshots_before(cutoff: dt.datetime, *, engine: Engine | None = None) -> int:
    """Delete snapshots created strictly before ``cutoff``; return how many were deleted."""
    eng = snapshot_engine(engine)
    with eng.begin() as conn:
        result = conn.execute(
            delete(snapshots_table).where(
                snapshots_table.c.created_at < cutoff.astimezone(dt.UTC)))
    return int(result.rowcount or 0)


def run(params: CleanupParams, ctx: TaskContext) -> dict[str, Any]:
    """Handler of ``metrics_cleanup``."""
    ctx.progress(0, "computing cutoff")
    now = data.utcnow()
    cutoff = now - dt.timedelta(days=params.retention_days)
    ctx.raise_if_cancelled()
    ctx.progress(20, "deleting old snapshots")
    deleted = delete_snapshots_before(cutoff)
    ctx.progress(100, "done")
    return {"timestamp": now.isoformat(), "retention_days": params.retention_days,
            "cutoff_date": cutoff.isoformat(), "deleted_count": deleted}
