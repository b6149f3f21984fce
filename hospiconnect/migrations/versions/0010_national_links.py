"""National identity: links to Pro Santé Connect (at most one live link per identity and per (issuer, sub),
as partial unique indexes) and the PSC transactions in flight (pairing or sign-in)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 01:29:31.649391
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('national_links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=False),
    sa.Column('issuer', sa.String(length=300), nullable=False),
    sa.Column('sub', sa.String(length=255), nullable=False),
    sa.Column('rpps', sa.String(length=11), nullable=True),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('linked_by', sa.String(length=200), nullable=False),
    sa.Column('unlinked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unlinked_by', sa.String(length=200), nullable=True),
    sa.Column('unlink_reason', sa.String(length=300), nullable=True),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_national_links_identity_id_identities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_national_links')),
    sa.UniqueConstraint('public_id', name=op.f('uq_national_links_public_id'))
    )
    with op.batch_alter_table('national_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_national_links_identity_id'), ['identity_id'], unique=False)
        batch_op.create_index('ix_national_links_issuer_sub', ['issuer', 'sub'], unique=False)
        batch_op.create_index('uq_national_links_live_identity', ['identity_id'], unique=True, postgresql_where=sa.text('unlinked_at IS NULL'), sqlite_where=sa.text('unlinked_at IS NULL'))
        batch_op.create_index('uq_national_links_live_subject', ['issuer', 'sub'], unique=True, postgresql_where=sa.text('unlinked_at IS NULL'), sqlite_where=sa.text('unlinked_at IS NULL'))

    op.create_table('psc_transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=10), nullable=False),
    sa.Column('nonce', sa.String(length=128), nullable=False),
    sa.Column('issuer', sa.String(length=300), nullable=False),
    sa.Column('acr_values', sa.String(length=20), nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=True),
    sa.Column('interaction_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_psc_transactions_identity_id_identities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_psc_transactions')),
    sa.UniqueConstraint('state_hash', name=op.f('uq_psc_transactions_state_hash'))
    )
    with op.batch_alter_table('psc_transactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_psc_transactions_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_psc_transactions_identity_id'), ['identity_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('psc_transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_psc_transactions_identity_id'))
        batch_op.drop_index(batch_op.f('ix_psc_transactions_expires_at'))

    op.drop_table('psc_transactions')
    with op.batch_alter_table('national_links', schema=None) as batch_op:
        batch_op.drop_index('uq_national_links_live_subject', postgresql_where=sa.text('unlinked_at IS NULL'), sqlite_where=sa.text('unlinked_at IS NULL'))
        batch_op.drop_index('uq_national_links_live_identity', postgresql_where=sa.text('unlinked_at IS NULL'), sqlite_where=sa.text('unlinked_at IS NULL'))
        batch_op.drop_index('ix_national_links_issuer_sub')
        batch_op.drop_index(batch_op.f('ix_national_links_identity_id'))

    op.drop_table('national_links')
