"""``metrics_snapshot``: store the metrics of a window in the ``metrics_snapshots`` table.

The table lives on its own :class:`~sqlalchemy.MetaData` in the ledger database
(:func:`taskbroker.plugins.data.schedule_engine`) and is created when missing.  The snapshot id is
derived from the task id, so a re-delivered task replaces its own snapshot instead of adding a
second one (the handler is idempotent).
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from taskbroker.core.contract.tasktype import TaskContext
from taskbroker.plugins.data import schedule_engine
from taskbroker.plugins.metrics import data
from taskbroker.plugins.metrics.computation import analyze
from taskbroker.plugins.metrics.params import SnapshotParams
from taskbroker.plugins.metrics.workload import Window

__all__ = [
    "get_snapshot",
    "list_snapshots",
    "metadata",
    "run",
    "snapshot_engine",
    "snapshots_table",
    "store_snapshot",
]

metadata = MetaData()
snapshots_table = Table(
    "metrics_snapshots",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("period_start", Date, nullable=False),
    Column("period_end", Date, nullable=False),
    Column("run_id", String(200), nullable=True),
    Column("fairness", Float, nullable=False),
    Column("coverage", Float, nullable=False),
    Column("compliance", Float, nullable=False),
    Column("data", JSON, nullable=False),
)

_created: set[str] = set()
_lock = threading.Lock()
_NAMESPACE = uuid.UUID("5b1c1c3e-8a57-4d0e-9d1e-6d6574726963")


def snapshot_engine(engine: Engine | None = None) -> Engine:
    """``engine`` (or the ledger's) with the snapshots table created if missing."""
    engine = engine or schedule_engine()
    key = f"{id(engine)}:{engine.url}"
    if key not in _created:
        with _lock:
            if key not in _created:
                try:
                    metadata.create_all(engine, checkfirst=True)
                except SQLAlchemyError:
                    # another process may have created it between check and create
                    metadata.create_all(engine, checkfirst=True)
                _created.add(key)
    return engine


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _summary(row: Any) -> dict[str, Any]:
    return {
        "snapshot_id": row.id,
        "created_at": _aware(row.created_at).isoformat(),
        "period_start": row.period_start.isoformat(),
        "period_end": row.period_end.isoformat(),
        "run_id": row.run_id,
        "fairness": row.fairness,
        "coverage": row.coverage,
        "compliance": row.compliance,
    }


def store_snapshot(
    analysis: dict[str, Any],
    *,
    snapshot_id: str | None = None,
    created_at: dt.datetime | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Store ``analysis`` (a ``schedule_analysis``) and return the stored summary row.

    An existing snapshot with the same id is replaced.
    """
    eng = snapshot_engine(engine)
    metrics = analysis["metrics"]
    row = {
        "id": snapshot_id or str(uuid.uuid4()),
        "created_at": (created_at or data.utcnow()).astimezone(dt.UTC),
        "period_start": dt.date.fromisoformat(analysis["period"]["start_date"]),
        "period_end": dt.date.fromisoformat(analysis["period"]["end_date"]),
        "run_id": analysis.get("run_id"),
        "fairness": metrics["fairness"]["value"],
        "coverage": metrics["coverage"]["value"],
        "compliance": metrics["compliance"]["value"],
        "data": analysis,
    }
    with eng.begin() as conn:
        conn.execute(delete(snapshots_table).where(snapshots_table.c.id == row["id"]))
        conn.execute(insert(snapshots_table).values(**row))
    return {
        "snapshot_id": row["id"],
        "created_at": row["created_at"].isoformat(),
        "period_start": row["period_start"].isoformat(),
        "period_end": row["period_end"].isoformat(),
        **{k: row[k] for k in ("run_id", "fairness", "coverage", "compliance")},
    }


def list_snapshots(limit: int = 20, *, engine: Engine | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` snapshots (without their full data), newest first."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    eng = snapshot_engine(engine)
    t = snapshots_table
    query = (select(t.c.id, t.c.created_at, t.c.period_start, t.c.period_end, t.c.run_id,
                    t.c.fairness, t.c.coverage, t.c.compliance)
             .order_by(t.c.created_at.desc(), t.c.id).limit(limit))
    with eng.connect() as conn:
        return [_summary(r) for r in conn.execute(query)]


def get_snapshot(snapshot_id: str, *, engine: Engine | None = None) -> dict[str, Any]:
    """One snapshot with its full data; ValueError naming the id when there is none."""
    eng = snapshot_engine(engine)
    with eng.connect() as conn:
        row = conn.execute(
            select(snapshots_table).where(snapshots_table.c.id == snapshot_id)).first()
    if row is None:
        raise ValueError(f"unknown metrics snapshot id {snapshot_id!r}")
    return {**_summary(row), "data": row.data}


def run(params: SnapshotParams, ctx: TaskContext) -> dict[str, Any]:
    """Handler of ``metrics_snapshot``: analyse today .. today + period_days and store it."""
    ctx.progress(0, "loading schedule")
    program = data.load_program()
    start = data.today(program)
    window = Window(start, start + dt.timedelta(days=params.period_days))
    ctx.raise_if_cancelled()
    analysis = analyze(program, window, tick=ctx.raise_if_cancelled,
                       progress=lambda pct, msg: ctx.progress(pct * 0.9, msg))
    ctx.raise_if_cancelled()
    ctx.progress(92, "storing snapshot")
    stored = store_snapshot(analysis, snapshot_id=str(uuid.uuid5(_NAMESPACE, ctx.task_id)))
    ctx.progress(100, "done")
    metrics = analysis["metrics"]
    return {
        "timestamp": data.utcnow().isoformat(),
        "snapshot_id": stored["snapshot_id"],
        "snapshot_data": {
            "created_at": stored["created_at"],
            "period": window.as_dict(),
            "run_id": analysis["run_id"],
            "metrics": {k: {"value": v["value"], "status": v["status"]}
                        for k, v in metrics.items()},
            "workload": {k: analysis["workload"][k]
                         for k in ("assignments", "total_hours", "people_counted")},
            "stability": {k: analysis["stability"].get(k)
                          for k in ("previous_run_id", "churn_rate", "status")},
        },
    }
