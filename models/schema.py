"""The tables, as SQLAlchemy 2 typed declarative models (SPEC §3).

The same schema runs on SQLite (the zero-setup default) and PostgreSQL. Times are
stored as UTC and always come back timezone-aware, whatever the backend.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    Uuid,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from models.clock import ensure_utc
from models.status import (
    API_STATUS,
    SYNCING_STATUSES,
    ApiStatus,
    EnvironmentKind,
    Provider,
    Status,
)

# Stable constraint names, so migrations can name what they alter on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The syncing statuses as SQL, for the partial index of the due query.
SYNCING_SQL = "(" + ", ".join(f"'{s.value}'" for s in sorted(SYNCING_STATUSES)) + ")"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite has no time zones and hands back naive values; converting on the way
    in and out keeps comparisons and arithmetic correct on both backends.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = ensure_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else ensure_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Environment(Base):
    """A customer's environment (seed 001 `environmentId`); production or development."""

    __tablename__ = "environments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default=EnvironmentKind.PRODUCTION.value)

    @property
    def environment_kind(self) -> EnvironmentKind:
        return EnvironmentKind(self.kind)


class Integration(Base):
    """One customer's connection to one provider account (seeds 001 and 003)."""

    __tablename__ = "integrations"
    __table_args__ = (
        # The dispatch tick's due query: one provider's syncing integrations by next_sync_at.
        # Partial, so paused and deleted integrations cost the tick nothing and the index
        # hands rows over already in next_sync_at order.
        Index(
            "ix_integrations_due",
            "provider",
            "next_sync_at",
            sqlite_where=text(f"status IN {SYNCING_SQL}"),
            postgresql_where=text(f"status IN {SYNCING_SQL}"),
        ),
        # Identifiers are unique among an environment's integrations that are not deleted,
        # so a deleted identifier can be reused.
        Index(
            "uq_integrations_identifier_live",
            "environment_id",
            "identifier",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # At most one primary integration per provider per environment.
        Index(
            "uq_integrations_primary",
            "environment_id",
            "provider",
            unique=True,
            sqlite_where=text('"primary" AND deleted_at IS NULL'),
            postgresql_where=text('"primary" AND deleted_at IS NULL'),
        ),
        # The dev-inactivity sweep scans development integrations by last API request.
        Index("ix_integrations_environment_status", "environment_id", "status"),
        # Lists, newest first and paged by keyset (models.queries): all, and one workspace's.
        Index("ix_integrations_listing", "created_at", "id"),
        Index("ix_integrations_workspace_listing", "environment_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id"))
    name: Mapped[str] = mapped_column(String(200))
    identifier: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    credentials_encrypted: Mapped[str | None] = mapped_column(Text)
    configurations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    filters: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    sync_interval_seconds: Mapped[int | None] = mapped_column(Integer)
    data_last_received_at: Mapped[datetime | None]
    last_api_request_at: Mapped[datetime | None]
    # The dev-inactivity window restarts when a user reactivates the integration.
    reactivated_at: Mapped[datetime | None]
    # Counts the decisions that make a sync in flight stale: syncing paused, credentials
    # replaced. A run remembers it, so a result from before one is known to be late (recorded,
    # never applied) even after the integration was resumed or its status moved on.
    pause_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status_changed_at: Mapped[datetime]
    auth_failing_since: Mapped[datetime | None]
    first_sync_finished_at: Mapped[datetime | None]
    qa_passed_at: Mapped[datetime | None]
    next_sync_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    deleted_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # When a sync last succeeded (with or without warnings): lateness counts from here.
    last_success_at: Mapped[datetime | None]
    # The lateness last announced by an event (`models.health`), so each change is sent once.
    lateness: Mapped[str] = mapped_column(String(16), default="on_time", server_default="on_time")
    # When a recovery probe last tried a `credentials_invalid` integration's stored key.
    probed_at: Mapped[datetime | None]

    environment: Mapped[Environment] = relationship(lazy="joined", innerjoin=True)

    @property
    def status_enum(self) -> Status:
        return Status(self.status)

    @property
    def provider_enum(self) -> Provider:
        return Provider(self.provider)

    @property
    def api_status(self) -> ApiStatus:
        return API_STATUS[self.status_enum]

    @property
    def active(self) -> bool:
        """Seed 001 `active`, derived from the status: the integration is being synced."""
        return self.status_enum in SYNCING_STATUSES

    @property
    def deleted(self) -> bool:
        """Seed 001 `deleted`, derived from the status."""
        return self.status == Status.DELETED

    @property
    def has_filters(self) -> bool:
        return bool(self.filters)

    def __repr__(self) -> str:
        # Never the credentials: only whether there are any.
        return (
            f"<Integration {self.id} provider={self.provider} status={self.status} "
            f"credentials={'present' if self.credentials_encrypted else 'absent'}>"
        )


class SyncRun(Base):
    """One sync attempt of one integration: "the logs of the sync"."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_integration_started", "integration_id", "started_at"),
        Index("uq_sync_runs_delivery", "task_id", "attempt", unique=True),
        # The reaper and the status overview look only at runs still going.
        # Provider incidents read the runs that finished within a sliding window.
        Index("ix_sync_runs_finished", "finished_at"),
        Index(
            "ix_sync_runs_running",
            "lease_expires_at",
            sqlite_where=text("finished_at IS NULL"),
            postgresql_where=text("finished_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    integration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("integrations.id"))
    task_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))
    records_received: Mapped[int] = mapped_column(Integer, default=0)
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    error: Mapped[str | None] = mapped_column(Text)
    # Which delivery of the task this run belongs to: (task_id, attempt) is unique, so a
    # redelivered message finds its run and does not sync twice; a retry is a new attempt.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    pause_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_sync: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether the result moved the lifecycle; False for a late result or a reaped run.
    applied: Mapped[bool] = mapped_column(Boolean, default=False)
    status_after: Mapped[str | None] = mapped_column(String(32))
    # How a failed attempt failed, for provider incidents: auth, timeout, transient (or None).
    failure_kind: Mapped[str | None] = mapped_column(String(16))

    @property
    def running(self) -> bool:
        return self.finished_at is None


class StatusChange(Base):
    """The audit trail: one row per status change, with what caused it."""

    __tablename__ = "status_changes"
    __table_args__ = (Index("ix_status_changes_integration_at", "integration_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    integration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("integrations.id"))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    sync_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class SyncedRecord(Base):
    """One object a sync brought in, upserted by (integration, kind, external id)."""

    __tablename__ = "synced_records"
    __table_args__ = (
        Index("uq_synced_records_key", "integration_id", "kind", "external_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    integration_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("integrations.id"))
    kind: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]]
    first_seen_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SyncCursor(Base):
    """Where an integration's incremental sync of one stream left off."""

    __tablename__ = "sync_cursors"

    integration_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("integrations.id"), primary_key=True
    )
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime]


class OutboxEvent(Base):
    """A status-change event, written in the transaction of the change and delivered later.

    The outbox makes publishing as durable as the change itself: the event exists if and
    only if the change committed, and a delivery task works through undelivered rows.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index(
            "ix_outbox_events_pending",
            "next_attempt_at",
            sqlite_where=text("delivered_at IS NULL"),
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # None for a provider-wide event (a provider incident), which concerns no one integration.
    integration_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("integrations.id"))
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # The sinks that already accepted the event (the log, and each webhook by fingerprint),
    # so a retry goes only to those that have not: a receiver that answered 2xx never
    # gets the same event again.
    delivered_to: Mapped[list[Any]] = mapped_column(default=list, server_default=text("'[]'"))


class SchedulerMark(Base):
    """When a scheduled job (a provider tick, a sweep) last ran, for the status overview."""

    __tablename__ = "scheduler_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Beat liveness: runs recorded, runs that should have happened between two recorded
    # ones and did not, and the cadence (in app-clock seconds) they were expected at.
    runs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    missed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    every_s: Mapped[float | None] = mapped_column(Float)


class ProviderIncident(Base):
    """A provider failing many integrations the same way at once (SPEC §11), open or closed.

    Stored with the window and counts that opened it (`seen`, `failing`) and the latest
    evaluation's, so an operator sees how wide the outage was and when it ended.
    """

    __tablename__ = "provider_incidents"
    __table_args__ = (Index("ix_provider_incidents_open", "provider", "closed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    window_s: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    integrations_seen: Mapped[int] = mapped_column(Integer)
    integrations_failing: Mapped[int] = mapped_column(Integer)
    peak_failing: Mapped[int] = mapped_column(Integer)
    last_seen: Mapped[int] = mapped_column(Integer)
    last_failing: Mapped[int] = mapped_column(Integer)
    evaluated_at: Mapped[datetime]
    # The provider's sync interval is stretched by this factor while the incident is open.
    backoff: Mapped[float] = mapped_column(Float)
    # Up to when the auth clocks of the provider's integrations were held still for it.
    clock_held_until: Mapped[datetime]

    @property
    def open(self) -> bool:
        return self.closed_at is None


class ApiKey(Base):
    """A key to the HTTP API: an operator's (sees everything) or one workspace's.

    Only a digest of the key's secret is stored (`models.api_keys`); the key itself is
    shown once, when it is made.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the key's public part
    secret_digest: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    workspace_id: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
