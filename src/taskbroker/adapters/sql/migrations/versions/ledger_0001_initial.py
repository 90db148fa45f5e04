"""Initial schema of the ledger: task records and the tombstones of purged ones.

Adopts a database an earlier taskbroker created without migrations (``create_all`` of the
same tables): when ``taskbroker_tasks`` already exists nothing is created, and the database is
simply recorded as being at this revision.

Revision ID: ledger_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables (unless an earlier release already did)."""
    if sa.inspect(op.get_bind()).has_table("taskbroker_tasks"):
        return
    op.create_table('taskbroker_purged',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('purged_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('taskbroker_tasks',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('task_type', sa.String(length=64), nullable=False),
    sa.Column('task_name', sa.String(length=160), nullable=False),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('owner', 'idempotency_key', name='uq_taskbroker_tasks_idem')
    )
    op.create_index('ix_taskbroker_tasks_completed', 'taskbroker_tasks', ['completed_at'], unique=False)
    op.create_index('ix_taskbroker_tasks_owner_status', 'taskbroker_tasks', ['owner', 'status'], unique=False)
    op.create_index('ix_taskbroker_tasks_status', 'taskbroker_tasks', ['status', 'task_type'], unique=False)


def downgrade() -> None:
    """Not supported: it would drop data."""
    raise NotImplementedError("downgrading the initial schema is not supported")
