"""A retried task's link to the task it retries (retry_task_tool).

Revision ID: ledger_0003
Revises: ledger_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0003"
down_revision = "ledger_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add taskbroker_tasks.retry_of (unless create_all of this release made it)."""
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("taskbroker_tasks")}
    if "retry_of" not in columns:
        op.add_column("taskbroker_tasks", sa.Column("retry_of", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    op.drop_column("taskbroker_tasks", "retry_of")
