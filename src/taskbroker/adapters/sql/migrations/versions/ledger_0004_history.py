"""The console's history: task timelines, worker heartbeats, each task's trace id, shared
random keys, and indexes for searching.

Revision ID: ledger_0004
Revises: ledger_0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0004"
down_revision = "ledger_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create taskbroker_task_events and taskbroker_workers and index queued_at and retry_of
    (each unless ``create_all`` of this release, adopted at ledger_0001, made it)."""
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("taskbroker_task_events"):
        op.create_table(
            "taskbroker_task_events",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("task_id", sa.String(length=64), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("progress", sa.Integer(), nullable=True),
            sa.Column("message", sa.Text(), nullable=True),
            sa.Column("actor", sa.String(length=255), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_taskbroker_task_events_task", "taskbroker_task_events",
                        ["task_id", "id"])
    if not inspector.has_table("taskbroker_secrets"):
        op.create_table(
            "taskbroker_secrets",
            sa.Column("name", sa.String(length=64), nullable=False),
            sa.Column("value", sa.String(length=128), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    if not inspector.has_table("taskbroker_workers"):
        op.create_table(
            "taskbroker_workers",
            sa.Column("name", sa.String(length=255), nullable=False),
            sa.Column("pid", sa.Integer(), nullable=True),
            sa.Column("queues", sa.JSON(), nullable=False),
            sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )
    columns = {c["name"] for c in inspector.get_columns("taskbroker_tasks")}
    if "trace_id" not in columns:
        op.add_column("taskbroker_tasks", sa.Column("trace_id", sa.String(32), nullable=True))
    existing = {ix["name"] for ix in inspector.get_indexes("taskbroker_tasks")}
    if "ix_taskbroker_tasks_queued" not in existing:
        op.create_index("ix_taskbroker_tasks_queued", "taskbroker_tasks", ["queued_at"])
    if "ix_taskbroker_tasks_owner_queued" not in existing:
        op.create_index("ix_taskbroker_tasks_owner_queued", "taskbroker_tasks",
                        ["owner", "queued_at"])
    if "ix_taskbroker_tasks_retry_of" not in existing:
        op.create_index("ix_taskbroker_tasks_retry_of", "taskbroker_tasks", ["retry_of"])


def downgrade() -> None:
    """Drop what upgrade made."""
    op.drop_index("ix_taskbroker_tasks_retry_of", table_name="taskbroker_tasks")
    op.drop_index("ix_taskbroker_tasks_owner_queued", table_name="taskbroker_tasks")
    op.drop_index("ix_taskbroker_tasks_queued", table_name="taskbroker_tasks")
    op.drop_column("taskbroker_tasks", "trace_id")
    op.drop_table("taskbroker_workers")
    op.drop_table("taskbroker_secrets")
    op.drop_index("ix_taskbroker_task_events_task", table_name="taskbroker_task_events")
    op.drop_table("taskbroker_task_events")
