"""Remote enrollment: invitations, FranceConnect+ transactions and upstream encryption keys

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 21:01:51.132072
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('upstream_encryption_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('alg', sa.String(length=20), nullable=False),
    sa.Column('private_jwk_enc', sa.Text(), nullable=False),
    sa.Column('public_jwk_json', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_encryption_keys')),
    sa.UniqueConstraint('kid', name=op.f('uq_upstream_encryption_keys_kid'))
    )
    op.create_table('enrollment_invitations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('sent_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['enrollment_cases.id'], name=op.f('fk_enrollment_invitations_case_id_enrollment_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment_invitations')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_enrollment_invitations_token_hash'))
    )
    with op.batch_alter_table('enrollment_invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollment_invitations_case_id'), ['case_id'], unique=False)

    op.create_table('fcplus_transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('browser_hash', sa.String(length=64), nullable=False),
    sa.Column('nonce', sa.String(length=128), nullable=False),
    sa.Column('issuer', sa.String(length=300), nullable=False),
    sa.Column('acr_values', sa.String(length=20), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('invitation_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['enrollment_cases.id'], name=op.f('fk_fcplus_transactions_case_id_enrollment_cases')),
    sa.ForeignKeyConstraint(['invitation_id'], ['enrollment_invitations.id'], name=op.f('fk_fcplus_transactions_invitation_id_enrollment_invitations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fcplus_transactions')),
    sa.UniqueConstraint('state_hash', name=op.f('uq_fcplus_transactions_state_hash'))
    )
    with op.batch_alter_table('fcplus_transactions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fcplus_transactions_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fcplus_transactions_expires_at'), ['expires_at'], unique=False)

    with op.batch_alter_table('enrollment_cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fcplus_issuer', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('fcplus_sub', sa.String(length=255), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('enrollment_cases', schema=None) as batch_op:
        batch_op.drop_column('fcplus_sub')
        batch_op.drop_column('fcplus_issuer')

    with op.batch_alter_table('fcplus_transactions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fcplus_transactions_expires_at'))
        batch_op.drop_index(batch_op.f('ix_fcplus_transactions_case_id'))

    op.drop_table('fcplus_transactions')
    with op.batch_alter_table('enrollment_invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollment_invitations_case_id'))

    op.drop_table('enrollment_invitations')
    op.drop_table('upstream_encryption_keys')
