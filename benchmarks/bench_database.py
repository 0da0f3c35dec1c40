"""The benchmarks' PostgreSQL: a dedicated database, emptied and migrated for each run."""

from __future__ import annotations

from sqlalchemy import Engine, make_url, text

from models import migrate
from models.db import make_engine


def fresh_postgres_schema(url: str) -> Engine:
    """The database at `url`, created if missing, with an empty, migrated `public` schema.

    Point it at a database of its own: everything in `public` is dropped.
    """
    parsed = make_url(url)
    server = make_engine(parsed.set(database="postgres").render_as_string(hide_password=False))
    with server.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        exists = connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
        )
        if not exists:
            connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    server.dispose()
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    migrate.upgrade(engine)
    return engine
