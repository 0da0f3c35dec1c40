"""Engines, sessions and row locks, the same on SQLite and PostgreSQL.

The engine and its `sessionmaker` are made once, at configuration time, by the
process's edge (the CLI or the Celery app) and passed down; nothing here runs
at import.
"""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from models.errors import IntegrationNotFound
from models.schema import Base, Integration

# How long a SQLite writer waits for another's transaction before giving up; generous,
# because BEGIN IMMEDIATE makes every writer queue for the one write lock.
SQLITE_BUSY_TIMEOUT_S = 30


# The embedded database holds customer records: its folder and its file are the owner's only
# (SQLite gives its -wal and -shm files the database file's mode).
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

# A pooled PostgreSQL connection is replaced after this long, before any server or proxy
# idle timeout closes it under us.
POOL_RECYCLE_S = 1800


def make_engine(
    url: str, *, pool_size: int = 10, pre_ping: bool = False, echo: bool = False
) -> Engine:
    """Create the engine for `url`, with the settings each backend needs to be correct.

    Pooled connections are not pinged before use by default: a ping is a round trip and
    about 0.27 ms of CPU per checkout, and a sync checks out twice. A connection the server
    dropped fails its first statement instead; SQLAlchemy then discards the whole pool and
    the caller retries (a sync task retries; `is_disconnect`). `pre_ping=True` (setting
    SYNCWORKER_DB_PRE_PING) trades that CPU for never seeing such an error.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo)
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(
        url,
        echo=echo,
        # Parameters carry synced customer data and sealed credentials: never in an error.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=POOL_RECYCLE_S,
    )


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    database = make_url(url).database
    engine = create_engine(
        url,
        echo=echo,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
    )
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)

        @event.listens_for(engine, "do_connect")
        def _create_privately(*_: Any) -> None:
            # On first use, not when the engine is made: a command that only finds the
            # database missing leaves no folder or file behind.
            create_private_file(path)

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


def create_private_file(path: Path) -> None:
    """Create `path` (and its folder) readable by the owner only, unless it exists."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(descriptor)


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


def is_disconnect(exc: BaseException) -> bool:
    """True for a database error caused by a lost connection (worth retrying at once)."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def as_uuid(value: uuid.UUID | str) -> uuid.UUID:
    """Parse an integration id, raising IntegrationNotFound for one that is not a UUID."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise IntegrationNotFound(value) from None


def table_of(model: type[Base]) -> Table:
    """A mapped class's Core table, for statements that need none of the ORM's bookkeeping."""
    return Base.metadata.tables[model.__tablename__]


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
    stmt = _upsert_statement(dialect, table, tuple(keys), tuple(refresh))
    session.execute(stmt, rows)


@functools.cache
def _upsert_statement(
    dialect: str, table: type[Base], keys: tuple[str, ...], refresh: tuple[str, ...]
) -> postgresql.Insert | sqlite.Insert:
    """One single-row INSERT ... ON CONFLICT DO UPDATE per table, built once and reused.

    Executed with a list of rows (executemany), it keeps one compiled form in
    SQLAlchemy's cache whatever the row count, and psycopg sends the rows in one
    pipelined round trip; a multi-row `.values(rows)` has no cache key and was compiled
    anew on every call. On the Core table, not the mapped class, it skips the ORM's
    bulk-insert bookkeeping: upserted rows never enter a session's identity map anyway.
    """
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table_of(table))
    return stmt.on_conflict_do_update(
        index_elements=list(keys), set_={name: stmt.excluded[name] for name in refresh}
    )
