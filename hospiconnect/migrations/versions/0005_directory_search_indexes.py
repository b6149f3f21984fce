"""Directory: indexes for SCIM sorting and filtering at 100,000 identities

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 19:00:00.000000
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sorting by the displayed family name (usage name, else birth name), then by id for a stable order.
    op.create_index(
        "ix_identities_family_sort", "identities",
        [sa.text("coalesce(usage_name_norm, birth_family_name_norm)"), "id"],
    )
    op.create_index("ix_identities_created_id", "identities", ["created_at", "id"])
    op.create_index("ix_identities_birth_date", "identities", ["birth_date"])


def downgrade() -> None:
    op.drop_index("ix_identities_birth_date", table_name="identities")
    op.drop_index("ix_identities_created_id", table_name="identities")
    op.drop_index("ix_identities_family_sort", table_name="identities")
