"""beat liveness: runs and missed runs per scheduled job

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scheduler_marks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runs", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("missed", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("every_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("scheduler_marks", schema=None) as batch_op:
        batch_op.drop_column("every_s")
        batch_op.drop_column("missed")
        batch_op.drop_column("runs")
