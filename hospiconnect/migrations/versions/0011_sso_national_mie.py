"""SSO sessions opened through Pro Santé Connect record the national MIE used (cps or e-cps)

A nullable column: a server of the previous release, still serving during a rolling upgrade, neither reads nor
writes it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 03:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sso_sessions') as batch_op:
        batch_op.add_column(sa.Column('national_mie', sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sso_sessions') as batch_op:
        batch_op.drop_column('national_mie')
