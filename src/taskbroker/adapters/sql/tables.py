"""The ledger's tables (SQLAlchemy Core): task records and the tombstones of purged ones."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["metadata", "purged", "secrets", "task_events", "tasks", "workers"]

metadata = MetaData()

tasks = Table(
    "taskbroker_tasks",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("task_type", String(64), nullable=False),
    Column("task_name", String(160), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False, default=0),
    Column("message", Text),
    Column("result", JSON),
    Column("error", Text),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("ended_at", DateTime(timezone=True)),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("worker", String(255)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("priority", Integer),
    Column("idempotency_key", String(200)),
    Column("retry_of", String(64)),
    Column("trace_id", String(32)),
    UniqueConstraint("owner", "idempotency_key", name="uq_taskbroker_tasks_idem"),
    Index("ix_taskbroker_tasks_status", "status", "task_type"),
    Index("ix_taskbroker_tasks_owner_status", "owner", "status"),
    Index("ix_taskbroker_tasks_completed", "completed_at"),
    Index("ix_taskbroker_tasks_type_completed", "task_type", "status", "completed_at"),
    Index("ix_taskbroker_tasks_queued", "queued_at"),
    Index("ix_taskbroker_tasks_owner_queued", "owner", "queued_at"),
    Index("ix_taskbroker_tasks_retry_of", "retry_of"),
)

#: each task's timeline: starts, progress messages, retries, cancels (see ports.TaskEvent)
task_events = Table(
    "taskbroker_task_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("progress", Integer),
    Column("message", Text),
    Column("actor", String(255)),
    Index("ix_taskbroker_task_events_task", "task_id", "id"),
)

#: random keys the processes on one ledger share (ports.Ledger.shared_secret)
secrets = Table(
    "taskbroker_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)

#: one row per live worker, refreshed by its heartbeat
workers = Table(
    "taskbroker_workers",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("pid", Integer),
    Column("queues", JSON, nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

purged = Table(
    "taskbroker_purged",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("purged_at", DateTime(timezone=True), nullable=False),
)
