"""Initial schema of the metrics plugin's snapshots.

Adopts a database an earlier taskbroker created without migrations (``create_all`` of the
same tables): when ``metrics_snapshots`` already exists nothing is created, and the database is
simply recorded as being at this revision.

Revision ID: metrics_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "metrics_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables (unless an earlier release already did)."""
    if sa.inspect(op.get_bind()).has_table("metrics_snapshots"):
        return
    op.create_table('metrics_snapshots',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('run_id', sa.String(length=200), nullable=True),
    sa.Column('fairness', sa.Float(), nullable=False),
    sa.Column('coverage', sa.Float(), nullable=False),
    sa.Column('compliance', sa.Float(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_metrics_snapshots_created_at'), 'metrics_snapshots', ['created_at'], unique=False)


def downgrade() -> None:
    """Not supported: it would drop data."""
    raise NotImplementedError("downgrading the initial schema is not supported")
