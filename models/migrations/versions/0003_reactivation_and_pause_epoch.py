"""reactivation window and pause epochs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reactivated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("pause_epoch", sa.Integer(), server_default="0", nullable=False)
        )

    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pause_epoch", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_column("pause_epoch")

    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("pause_epoch")
        batch_op.drop_column("reactivated_at")
