"""indexes for keyset-paginated integration lists

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_integrations_listing", "integrations", ["created_at", "id"])
    op.create_index(
        "ix_integrations_workspace_listing",
        "integrations",
        ["environment_id", "created_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_integrations_workspace_listing", table_name="integrations")
    op.drop_index("ix_integrations_listing", table_name="integrations")
