"""Exceptions (dérogations) and emergency credentials (bris de glace)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 22:11:28.862025
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('emergency_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=False),
    sa.Column('issued_by_identity_id', sa.Integer(), nullable=False),
    sa.Column('issued_by', sa.String(length=200), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('selector', sa.String(length=8), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('networks_json', sa.Text(), nullable=False),
    sa.Column('cidrs_json', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('used_from_ip', sa.String(length=45), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=200), nullable=True),
    sa.Column('revoke_reason', sa.String(length=500), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reviewed_by_identity_id', sa.Integer(), nullable=True),
    sa.Column('review_comment', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_emergency_credentials_identity_id_identities')),
    sa.ForeignKeyConstraint(['issued_by_identity_id'], ['identities.id'], name=op.f('fk_emergency_credentials_issued_by_identity_id_identities')),
    sa.ForeignKeyConstraint(['reviewed_by_identity_id'], ['identities.id'], name=op.f('fk_emergency_credentials_reviewed_by_identity_id_identities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_emergency_credentials')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_emergency_credentials_code_hash')),
    sa.UniqueConstraint('public_id', name=op.f('uq_emergency_credentials_public_id'))
    )
    with op.batch_alter_table('emergency_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_emergency_credentials_identity_id'), ['identity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_emergency_credentials_issued_at'), ['issued_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_emergency_credentials_issued_by_identity_id'), ['issued_by_identity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_emergency_credentials_reviewed_at'), ['reviewed_at'], unique=False)

    op.create_table('policy_exceptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=True),
    sa.Column('population', sa.String(length=20), nullable=True),
    sa.Column('units_json', sa.Text(), nullable=False),
    sa.Column('app_class', sa.String(length=40), nullable=False),
    sa.Column('relaxation_json', sa.Text(), nullable=False),
    sa.Column('justification', sa.Text(), nullable=False),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('granted_by', sa.String(length=200), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('policy_digest', sa.String(length=64), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=200), nullable=True),
    sa.Column('revoke_reason', sa.String(length=500), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('use_count', sa.Integer(), nullable=False),
    sa.Column('expiry_reported_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('(identity_id IS NULL) <> (population IS NULL)', name=op.f('ck_policy_exceptions_one_target')),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_policy_exceptions_identity_id_identities')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policy_exceptions')),
    sa.UniqueConstraint('public_id', name=op.f('uq_policy_exceptions_public_id'))
    )
    with op.batch_alter_table('policy_exceptions', schema=None) as batch_op:
        batch_op.create_index('ix_policy_exceptions_class_ends', ['app_class', 'ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_policy_exceptions_ends_at'), ['ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_policy_exceptions_identity_id'), ['identity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_policy_exceptions_population'), ['population'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('policy_exceptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_policy_exceptions_population'))
        batch_op.drop_index(batch_op.f('ix_policy_exceptions_identity_id'))
        batch_op.drop_index(batch_op.f('ix_policy_exceptions_ends_at'))
        batch_op.drop_index('ix_policy_exceptions_class_ends')

    op.drop_table('policy_exceptions')
    with op.batch_alter_table('emergency_credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_emergency_credentials_reviewed_at'))
        batch_op.drop_index(batch_op.f('ix_emergency_credentials_issued_by_identity_id'))
        batch_op.drop_index(batch_op.f('ix_emergency_credentials_issued_at'))
        batch_op.drop_index(batch_op.f('ix_emergency_credentials_identity_id'))

    op.drop_table('emergency_credentials')
