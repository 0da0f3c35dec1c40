"""health beyond status: lateness, failure kinds, provider incidents, recovery probes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The last successful sync of each integration, from the runs already stored.
BACKFILL_LAST_SUCCESS = """
UPDATE integrations SET last_success_at = (
    SELECT max(sync_runs.finished_at) FROM sync_runs
    WHERE sync_runs.integration_id = integrations.id
      AND sync_runs.outcome IN ('succeeded', 'succeeded_with_warnings')
)
"""


def upgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("lateness", sa.String(length=16), server_default="on_time", nullable=False)
        )
        batch_op.add_column(sa.Column("probed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL_LAST_SUCCESS)

    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_kind", sa.String(length=16), nullable=True))
        batch_op.create_index("ix_sync_runs_finished", ["finished_at"], unique=False)

    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.alter_column("integration_id", existing_type=sa.Uuid(), nullable=True)

    op.create_table(
        "provider_incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_s", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("integrations_seen", sa.Integer(), nullable=False),
        sa.Column("integrations_failing", sa.Integer(), nullable=False),
        sa.Column("peak_failing", sa.Integer(), nullable=False),
        sa.Column("last_seen", sa.Integer(), nullable=False),
        sa.Column("last_failing", sa.Integer(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("backoff", sa.Float(), nullable=False),
        sa.Column("clock_held_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_incidents")),
    )
    op.create_index(
        "ix_provider_incidents_open", "provider_incidents", ["provider", "closed_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_provider_incidents_open", table_name="provider_incidents")
    op.drop_table("provider_incidents")
    op.execute("DELETE FROM outbox_events WHERE integration_id IS NULL")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.alter_column("integration_id", existing_type=sa.Uuid(), nullable=False)
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_runs_finished")
        batch_op.drop_column("failure_kind")
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("probed_at")
        batch_op.drop_column("lateness")
        batch_op.drop_column("last_success_at")
