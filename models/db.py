"""Engines, sessions and row locks, the same on SQLite and PostgreSQL.

The engine and its `sessionmaker` are made once, at configuration time, by the
process's edge (the CLI or the Celery app) and passed down; nothing here runs
at import.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from models.errors import IntegrationNotFound
from models.schema import Base, Integration

# How long a SQLite writer waits for another's transaction before giving up; generous,
# because BEGIN IMMEDIATE makes every writer queue for the one write lock.
SQLITE_BUSY_TIMEOUT_S = 30


def make_engine(url: str, *, pool_size: int = 10, echo: bool = False) -> Engine:
    """Create the engine for `url`, with the settings each backend needs to be correct."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # SQLite ignores FOR UPDATE. Taking the write lock when the transaction begins gives
        # the same guarantee: a read-modify-write never interleaves with another writer's.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """The one session factory of a process; sessions keep objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def lock_integration(session: Session, integration_id: uuid.UUID | str) -> Integration:
    """Load an integration under a row lock held until the transaction ends.

    Raises IntegrationNotFound when there is no such integration.
    """
    key = as_uuid(integration_id)
    stmt = select(Integration).where(Integration.id == key).with_for_update(of=Integration)
    integration = session.scalars(stmt).unique().one_or_none()
    if integration is None:
        raise IntegrationNotFound(integration_id)
    return integration


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    """Parse an integration id, raising IntegrationNotFound for one that is not a UUID."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise IntegrationNotFound(value) from None


def upsert(
    session: Session,
    table: type[Base],
    rows: list[dict[str, Any]],
    *,
    keys: list[str],
    refresh: list[str],
) -> None:
    """INSERT rows, updating `refresh` columns of those whose `keys` already exist."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={name: stmt.excluded[name] for name in refresh}
    )
    session.execute(stmt)
