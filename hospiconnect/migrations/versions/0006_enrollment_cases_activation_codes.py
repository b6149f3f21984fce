"""Enrollment: cases, their history and activation codes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 20:03:18.183481
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enrollment_cases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=36), nullable=False),
    sa.Column('identity_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('opened_by_identity_id', sa.Integer(), nullable=True),
    sa.Column('opened_by', sa.String(length=200), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('identity_check_method', sa.String(length=20), nullable=True),
    sa.Column('identity_checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('identity_check_officer_id', sa.Integer(), nullable=True),
    sa.Column('identity_check_place', sa.String(length=200), nullable=True),
    sa.Column('document_type', sa.String(length=20), nullable=True),
    sa.Column('document_issuing_country', sa.String(length=3), nullable=True),
    sa.Column('document_expiry_date', sa.Date(), nullable=True),
    sa.Column('document_last4', sa.String(length=4), nullable=True),
    sa.Column('replaced_mie_id', sa.Integer(), nullable=True),
    sa.Column('activated_mie_id', sa.Integer(), nullable=True),
    sa.Column('rejection_reasons_json', sa.Text(), nullable=True),
    sa.Column('identity_verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('mie_issued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('activated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['activated_mie_id'], ['mies.id'], name=op.f('fk_enrollment_cases_activated_mie_id_mies')),
    sa.ForeignKeyConstraint(['identity_check_officer_id'], ['identities.id'], name=op.f('fk_enrollment_cases_identity_check_officer_id_identities')),
    sa.ForeignKeyConstraint(['identity_id'], ['identities.id'], name=op.f('fk_enrollment_cases_identity_id_identities')),
    sa.ForeignKeyConstraint(['opened_by_identity_id'], ['identities.id'], name=op.f('fk_enrollment_cases_opened_by_identity_id_identities')),
    sa.ForeignKeyConstraint(['replaced_mie_id'], ['mies.id'], name=op.f('fk_enrollment_cases_replaced_mie_id_mies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment_cases')),
    sa.UniqueConstraint('public_id', name=op.f('uq_enrollment_cases_public_id'))
    )
    with op.batch_alter_table('enrollment_cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollment_cases_identity_id'), ['identity_id'], unique=False)
        batch_op.create_index('ix_enrollment_cases_state_expires', ['state', 'expires_at'], unique=False)

    op.create_table('activation_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('selector', sa.String(length=8), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('failed_attempts', sa.Integer(), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('invalidated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['enrollment_cases.id'], name=op.f('fk_activation_codes_case_id_enrollment_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_activation_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_activation_codes_code_hash'))
    )
    with op.batch_alter_table('activation_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activation_codes_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_activation_codes_selector'), ['selector'], unique=False)

    op.create_table('enrollment_transitions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=30), nullable=False),
    sa.Column('from_state', sa.String(length=20), nullable=True),
    sa.Column('to_state', sa.String(length=20), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['enrollment_cases.id'], name=op.f('fk_enrollment_transitions_case_id_enrollment_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_enrollment_transitions'))
    )
    with op.batch_alter_table('enrollment_transitions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_enrollment_transitions_case_id'), ['case_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('enrollment_transitions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_enrollment_transitions_case_id'))

    op.drop_table('enrollment_transitions')
    with op.batch_alter_table('activation_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activation_codes_selector'))
        batch_op.drop_index(batch_op.f('ix_activation_codes_case_id'))

    op.drop_table('activation_codes')
    with op.batch_alter_table('enrollment_cases', schema=None) as batch_op:
        batch_op.drop_index('ix_enrollment_cases_state_expires')
        batch_op.drop_index(batch_op.f('ix_enrollment_cases_identity_id'))

    op.drop_table('enrollment_cases')
