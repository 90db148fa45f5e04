"""An index for the recent run times of a task type (estimates from history).

Revision ID: ledger_0002
Revises: ledger_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index successful runs by type and completion time (unless a database made by
    ``create_all`` of this release, adopted at ledger_0001, has it already)."""
    existing = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes("taskbroker_tasks")}
    if "ix_taskbroker_tasks_type_completed" in existing:
        return
    op.create_index("ix_taskbroker_tasks_type_completed", "taskbroker_tasks",
                    ["task_type", "status", "completed_at"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_taskbroker_tasks_type_completed", table_name="taskbroker_tasks")
