"""Alembic environment: runs migrations on the connection `models.migrate` hands over."""

from __future__ import annotations

from alembic import context

from models.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always invoked through models.migrate
    raise RuntimeError("run migrations with `syncworker db upgrade`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
