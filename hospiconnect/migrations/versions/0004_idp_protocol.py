"""OpenID provider protocol: ID token algorithm preference per client, used client-assertion jti

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 20:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # OpenID Connect Dynamic Client Registration §2 id_token_signed_response_alg: NULL means ES256.
    with op.batch_alter_table('oidc_clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id_token_signed_response_alg', sa.String(length=10), nullable=True))
    # RFC 7523 §3 item 7: a private_key_jwt assertion's jti is accepted once (kept until its exp).
    op.create_table('oidc_client_assertions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('jti_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_oidc_client_assertions')),
    sa.UniqueConstraint('client_id', 'jti_hash', name=op.f('uq_oidc_client_assertions_client_id'))
    )
    with op.batch_alter_table('oidc_client_assertions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oidc_client_assertions_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oidc_client_assertions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_oidc_client_assertions_expires_at'))
    op.drop_table('oidc_client_assertions')
    with op.batch_alter_table('oidc_clients', schema=None) as batch_op:
        batch_op.drop_column('id_token_signed_response_alg')
