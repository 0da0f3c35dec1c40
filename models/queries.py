"""Reading integrations: filtered, keyset-paginated lists, and one integration's story.

Every read takes the session and returns ORM rows (the caller serialises them), so
the operator service, the CLI and the API read through the same queries. Lists
are ordered newest first by (`created_at`, `id`) and paged by keyset: a page's
cursor names the last row it returned, so a page costs the same at row 100 and
row 100,000 (`ix_integrations_listing` serves both orders), and rows created
meanwhile never shift a page the way OFFSET would.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Connection, Row, Select, bindparam, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session, load_only, raiseload

from models.clock import ensure_utc
from models.errors import InvalidValue
from models.schema import Environment, Integration, StatusChange, SyncedRecord, SyncRun
from models.serializers import API_VIEW_COLUMNS
from models.status import API_STATUS, ApiStatus, Provider, Status

# A page holds at most this many rows: enough for a screen or a batch job, small enough
# that one request never reads a large table at once.
MAX_PAGE_SIZE: Final = 500
DEFAULT_PAGE_SIZE: Final = 100
# An opaque cursor longer than this was not made by us: a records cursor holds an external
# id of up to 255 characters, which JSON escapes and base64 grow to at most about 2,050.
MAX_CURSOR_CHARS: Final = 2100
CURSOR_REFUSED: Final = "cursor is not one this API returned"

T = TypeVar("T")


@dataclass(frozen=True)
class IntegrationQuery:
    """Which integrations a list shows; empty tuples mean any. Deleted ones only if asked."""

    providers: tuple[Provider, ...] = ()
    statuses: tuple[Status, ...] = ()
    api_statuses: tuple[ApiStatus, ...] = ()
    workspace_id: str | None = None  # the environment (seed 003's workspace)
    organization_id: str | None = None
    include_deleted: bool = False

    def wanted_statuses(self) -> set[Status] | None:
        """The statuses the filters allow, or None for any (deleted aside)."""
        wanted: set[Status] | None = None
        if self.statuses:
            wanted = set(self.statuses)
        if self.api_statuses:
            by_api = {s for s, api in API_STATUS.items() if api in self.api_statuses}
            wanted = by_api if wanted is None else wanted & by_api
        if not self.include_deleted and not (self.statuses and Status.DELETED in self.statuses):
            wanted = (set(Status) if wanted is None else wanted) - {Status.DELETED}
        return wanted


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None on the last page)."""

    items: list[T]
    next_cursor: str | None = field(default=None)


def list_integrations(
    session: Session,
    query: IntegrationQuery,
    *,
    after: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
    only: Sequence[InstrumentedAttribute[Any]] = (),
) -> Page[Integration]:
    """One page of matching integrations, newest first, after the row `after` names.

    `only`: load just these columns, and not the environment (a serialiser that reads
    a few fields of each row loads a page in half the time); any other attribute raises.
    """
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidValue(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    stmt = _filtered(select(Integration), query)
    if only:
        stmt = stmt.options(load_only(*only, raiseload=True), raiseload(Integration.environment))
    if after is not None:
        created, key = decode_cursor(after)
        # A row-value comparison, not `a < x OR (a = x AND b < y)`: PostgreSQL turns only
        # the former into an index condition, and scans every row above the cursor for the
        # latter (28 ms instead of 0.1 ms half-way down 100,000 integrations).
        stmt = stmt.where(tuple_(Integration.created_at, Integration.id) < tuple_(created, key))
    stmt = stmt.order_by(Integration.created_at.desc(), Integration.id.desc()).limit(limit + 1)
    rows: list[Integration] = list(session.scalars(stmt))
    if len(rows) <= limit:
        return Page(rows)
    last = rows[limit - 1]
    return Page(rows[:limit], encode_cursor(last.created_at, last.id))


def _filtered(stmt: Select[Any], query: IntegrationQuery) -> Select[Any]:
    if query.providers:
        stmt = stmt.where(Integration.provider.in_([p.value for p in query.providers]))
    wanted = query.wanted_statuses()
    if wanted is not None:
        stmt = stmt.where(Integration.status.in_(sorted(s.value for s in wanted)))
    if query.workspace_id is not None:
        stmt = stmt.where(Integration.environment_id == query.workspace_id)
    if query.organization_id is not None:
        stmt = stmt.where(Integration.organization_id == query.organization_id)
    return stmt


def encode_cursor(created_at: datetime, integration_id: uuid.UUID) -> str:
    """The opaque cursor naming one row of a list: base64url of its sort key."""
    return _pack([ensure_utc(created_at).isoformat(), str(integration_id)])


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The sort key a cursor names; InvalidValue for one this module did not make."""
    try:
        created, key = _unpack(cursor)
        return ensure_utc(datetime.fromisoformat(created)), uuid.UUID(key)
    except (ValueError, TypeError):
        raise InvalidValue(CURSOR_REFUSED) from None


def _pack(key: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def _unpack(cursor: str) -> Any:
    """The JSON a cursor holds; InvalidValue for text no cursor of ours could be."""
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidValue(CURSOR_REFUSED)
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidValue(CURSOR_REFUSED) from None


def synced_records(
    session: Session,
    integration_id: uuid.UUID,
    stream: str,
    *,
    after: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> Page[SyncedRecord]:
    """One page of a stream's records by external id (`uq_synced_records_key` serves it)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidValue(f"page size must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    stmt = select(SyncedRecord).where(
        SyncedRecord.integration_id == integration_id, SyncedRecord.kind == stream
    )
    if after is not None:
        key = _unpack(after)
        if not (isinstance(key, list) and len(key) == 1 and isinstance(key[0], str)):
            raise InvalidValue(CURSOR_REFUSED)
        stmt = stmt.where(SyncedRecord.external_id > key[0])
    rows = list(session.scalars(stmt.order_by(SyncedRecord.external_id).limit(limit + 1)))
    if len(rows) <= limit:
        return Page(rows)
    return Page(rows[:limit], _pack([rows[limit - 1].external_id]))


def api_view_row(
    connection: Connection, integration_id: uuid.UUID, *, workspace_id: str | None
) -> Row[Any] | None:
    """One integration's API-view columns (in the workspace, if given), or None."""
    if workspace_id is None:
        return connection.execute(_API_VIEW_BY_ID, {"id": integration_id}).first()
    params = {"id": integration_id, "workspace": workspace_id}
    return connection.execute(_API_VIEW_BY_ID_IN_WORKSPACE, params).first()


# Built once: a statement made per call costs more to build and to match to its cached
# compilation (about 0.3 ms of CPU) than the database takes to answer it.
_API_VIEW_BY_ID: Final = select(*API_VIEW_COLUMNS).where(Integration.id == bindparam("id"))
_API_VIEW_BY_ID_IN_WORKSPACE: Final = _API_VIEW_BY_ID.where(
    Integration.environment_id == bindparam("workspace")
)


def status_history(
    session: Session, integration_id: uuid.UUID, *, limit: int
) -> Sequence[StatusChange]:
    """The integration's audit trail, newest first."""
    return session.scalars(
        select(StatusChange)
        .where(StatusChange.integration_id == integration_id)
        .order_by(StatusChange.at.desc(), StatusChange.id.desc())
        .limit(limit)
    ).all()


def sync_runs(session: Session, integration_id: uuid.UUID, *, limit: int) -> Sequence[SyncRun]:
    """The integration's sync attempts, newest first."""
    return session.scalars(
        select(SyncRun)
        .where(SyncRun.integration_id == integration_id)
        .order_by(SyncRun.started_at.desc(), SyncRun.attempt.desc())
        .limit(limit)
    ).all()


def last_finished_run(session: Session, integration_id: uuid.UUID) -> SyncRun | None:
    """The newest sync attempt that ended with an outcome (retried attempts have none)."""
    return session.scalars(
        select(SyncRun)
        .where(SyncRun.integration_id == integration_id, SyncRun.outcome.is_not(None))
        .order_by(SyncRun.finished_at.desc())
        .limit(1)
    ).first()


def environments(session: Session, *, organization_id: str | None = None) -> Sequence[Environment]:
    """Every environment (workspace), or an organization's, by id."""
    stmt = select(Environment).order_by(Environment.id)
    if organization_id is not None:
        stmt = stmt.where(Environment.organization_id == organization_id)
    return session.scalars(stmt).all()
