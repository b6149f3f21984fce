"""Trajectory: the per-person statuses say whether the identity is paired with Pro Santé Connect that day

The daily counts need no change (indicators are rows of trajectory_snapshots, ``psc_paired`` among them); the
people list needs a column. NOT NULL with a server default of false: the rows already there are rewritten by the
next snapshot, and a server of the previous release, still writing the table during a rolling upgrade, does not
name the column.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28 04:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trajectory_person_status') as batch_op:
        batch_op.add_column(sa.Column('psc_paired', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('trajectory_person_status') as batch_op:
        batch_op.drop_column('psc_paired')
