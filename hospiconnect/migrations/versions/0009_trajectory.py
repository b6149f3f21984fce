"""Trajectory: daily snapshots per indicator and breakdown, per-person statuses of the latest day, RSSI targets

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 00:10:04.636256
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('trajectory_snapshots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('indicator', sa.String(length=60), nullable=False),
    sa.Column('dimension', sa.String(length=20), nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('taken_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trajectory_snapshots')),
    sa.UniqueConstraint('day', 'indicator', 'dimension', 'value', name='uq_trajectory_snapshots_day_key')
    )
    with op.batch_alter_table('trajectory_snapshots', schema=None) as batch_op:
        batch_op.create_index('ix_trajectory_snapshots_series', ['indicator', 'dimension', 'day'], unique=False)

    op.create_table('trajectory_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('dimension', sa.String(length=20), nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    sa.Column('indicator', sa.String(length=60), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=False),
    sa.Column('due', sa.Date(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('removed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('removed_by', sa.String(length=200), nullable=True),
    sa.CheckConstraint('percent >= 1 AND percent <= 100', name=op.f('ck_trajectory_targets_percent_range')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trajectory_targets')),
    sa.UniqueConstraint('public_id', name=op.f('uq_trajectory_targets_public_id'))
    )
    with op.batch_alter_table('trajectory_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trajectory_targets_removed_at'), ['removed_at'], unique=False)

    op.create_table('trajectory_person_status',
    sa.Column('identity_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=60), nullable=False),
    sa.Column('rpps', sa.Boolean(), nullable=False),
    sa.Column('contract_type', sa.String(length=20), nullable=False),
    sa.Column('units', sa.String(length=500), nullable=False),
    sa.Column('poles', sa.String(length=500), nullable=False),
    sa.Column('roles', sa.String(length=500), nullable=False),
    sa.Column('establishments', sa.String(length=500), nullable=False),
    sa.Column('mie_types', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_trajectory_person_status_identity_id_identities'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('identity_id', name=op.f('pk_trajectory_person_status'))
    )
    with op.batch_alter_table('trajectory_person_status', schema=None) as batch_op:
        batch_op.create_index('ix_trajectory_person_status_status', ['status', 'identity_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('trajectory_person_status', schema=None) as batch_op:
        batch_op.drop_index('ix_trajectory_person_status_status')

    op.drop_table('trajectory_person_status')
    with op.batch_alter_table('trajectory_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trajectory_targets_removed_at'))

    op.drop_table('trajectory_targets')
    with op.batch_alter_table('trajectory_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_trajectory_snapshots_series')

    op.drop_table('trajectory_snapshots')
