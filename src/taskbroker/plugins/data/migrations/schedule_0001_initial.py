"""Initial schema of the schedule data of the built-in plugins.

Adopts a database an earlier taskbroker created without migrations (``create_all`` of the
same tables): when ``schedule_program`` already exists nothing is created, and the database is
simply recorded as being at this revision.

Revision ID: schedule_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "schedule_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables (unless an earlier release already did)."""
    if sa.inspect(op.get_bind()).has_table("schedule_program"):
        return
    op.create_table('schedule_crisis',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('defense_level', sa.Integer(), nullable=False),
    sa.Column('defense_level_name', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('approved_by', sa.String(length=200), nullable=False),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deactivated_by', sa.String(length=200), nullable=True),
    sa.Column('deactivation_reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_schedule_crisis_activated_at'), 'schedule_crisis', ['activated_at'], unique=False)
    op.create_index(op.f('ix_schedule_crisis_deactivated_at'), 'schedule_crisis', ['deactivated_at'], unique=False)
    op.create_table('schedule_fallbacks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('scenario', sa.String(length=64), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_until', sa.Date(), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('coverage_rate', sa.Float(), nullable=False),
    sa.Column('services_reduced', sa.JSON(), nullable=False),
    sa.Column('removed_people', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('assignments', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_schedule_fallbacks_created_at'), 'schedule_fallbacks', ['created_at'], unique=False)
    op.create_index(op.f('ix_schedule_fallbacks_scenario'), 'schedule_fallbacks', ['scenario'], unique=False)
    op.create_table('schedule_people',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('pgy', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('schedule_program',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('schedule_runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_schedule_runs_created_at'), 'schedule_runs', ['created_at'], unique=False)
    op.create_table('schedule_services',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('min_faculty', sa.Integer(), nullable=False),
    sa.Column('essential', sa.Boolean(), nullable=False),
    sa.Column('max_residents_per_faculty', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('schedule_absences',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('start', sa.Date(), nullable=False),
    sa.Column('end', sa.Date(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['schedule_people.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_schedule_absences_person_id'), 'schedule_absences', ['person_id'], unique=False)
    op.create_table('schedule_assignments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('half', sa.String(length=2), nullable=False),
    sa.Column('service_id', sa.String(length=64), nullable=False),
    sa.Column('hours', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['schedule_people.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['schedule_runs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_id'], ['schedule_services.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'person_id', 'date', 'half', name='uq_schedule_assignment')
    )
    op.create_index('ix_schedule_assignments_run_date', 'schedule_assignments', ['run_id', 'date'], unique=False)
    op.create_table('schedule_qualifications',
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('service_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['schedule_people.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_id'], ['schedule_services.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('person_id', 'service_id')
    )


def downgrade() -> None:
    """Not supported: it would drop data."""
    raise NotImplementedError("downgrading the initial schema is not supported")
