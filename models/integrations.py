"""What users and operators do to integrations: create, configure, re-key, pause, delete.

Each function takes the session and the time, changes one integration under its
row lock through the lifecycle, and never commits: the caller owns the
transaction and enqueues a sync after commit when the returned `Change` asks.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from models.changes import SYSTEM_ACTOR, Change, apply_trigger, record_change
from models.db import as_uuid, lock_integration
from models.errors import DuplicateIntegration, InvalidValue, TransitionNotAllowed
from models.inputs import MAX_ID_CHARS, checked_actor, checked_json, checked_key, checked_name
from models.lifecycle import initial_status
from models.schema import Environment, Integration
from models.status import SYNCING_STATUSES, EnvironmentKind, Provider, Status, Trigger, parse_enum


@dataclass(frozen=True)
class NewIntegration:
    """What it takes to create an integration; credentials arrive already sealed."""

    environment_id: str
    name: str
    identifier: str
    provider: str
    credentials_sealed: str | None = None
    filters: Mapping[str, Any] | None = None
    configurations: Mapping[str, Any] = field(default_factory=dict)
    conditions: tuple[Any, ...] = ()
    primary: bool = False
    sync_interval_seconds: int | None = None
    integration_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        """Refuse text the columns cannot hold and documents that are not plain JSON."""
        checked_key(self.environment_id, what="environment id", max_chars=MAX_ID_CHARS)
        checked_name(self.name, what="name")
        checked_key(self.identifier, what="identifier")
        if not isinstance(self.configurations, Mapping):
            raise InvalidValue("configurations must be a JSON object")
        checked_json(dict(self.configurations), what="configurations")
        checked_json(list(self.conditions), what="conditions")
        if self.filters is not None:
            checked_json(self.filters, what="filters")


def ensure_environment(
    session: Session, env_id: str, *, organization_id: str, name: str, kind: str
) -> Environment:
    """Return the environment with `env_id`, creating it if it does not exist yet."""
    kind_enum = parse_enum(EnvironmentKind, kind, what="environment kind")
    checked_key(env_id, what="environment id", max_chars=MAX_ID_CHARS)
    environment = session.get(Environment, env_id)
    if environment is None:
        checked_key(organization_id, what="organization id", max_chars=MAX_ID_CHARS)
        checked_name(name, what="environment name")
        environment = Environment(
            id=env_id, organization_id=organization_id, name=name, kind=kind_enum.value
        )
        session.add(environment)
        session.flush()
    return environment


def create_integration(
    session: Session, spec: NewIntegration, *, now: datetime, actor: str = SYSTEM_ACTOR
) -> Change:
    """Create an integration in `setup`, or `active` with its first sync queued if filtered."""
    provider = parse_enum(Provider, spec.provider, what="provider")
    checked_actor(actor)
    environment = session.get(Environment, spec.environment_id)
    if environment is None:
        raise InvalidValue(f"unknown environment {spec.environment_id!r}")
    _check_unique(session, spec, provider)
    filters = _checked_filters(spec.filters) if spec.filters else None
    status = initial_status(filters_configured=filters is not None)
    integration = Integration(
        id=spec.integration_id or uuid.uuid4(),
        organization_id=environment.organization_id,
        environment=environment,
        name=spec.name,
        identifier=spec.identifier,
        provider=provider.value,
        status=status.value,
        credentials_encrypted=spec.credentials_sealed,
        configurations=dict(spec.configurations),
        filters=filters,
        primary=spec.primary,
        conditions=list(spec.conditions),
        sync_interval_seconds=_checked_interval(spec.sync_interval_seconds),
        status_changed_at=now,
        next_sync_at=now if status in SYNCING_STATUSES else None,
        created_at=now,
        updated_at=now,
    )
    session.add(integration)
    session.flush()  # the audit and outbox rows reference the new row
    change = Change(integration.id, Trigger.CREATED, None, status, sync_now=status is Status.ACTIVE)
    record_change(session, integration, change, now=now, actor=actor, reason=None)
    return change


def configure_filters(
    session: Session,
    integration_id: uuid.UUID | str,
    filters: Mapping[str, Any],
    *,
    now: datetime,
    actor: str = SYSTEM_ACTOR,
) -> Change:
    """Set an integration's filters; in `setup` this activates it and queues its first sync."""
    checked = _checked_filters(filters)
    integration = lock_integration(session, integration_id)
    if integration.status_enum is Status.DELETED:
        raise TransitionNotAllowed(integration.id, integration.status, Trigger.CONFIGURE_FILTERS)
    integration.filters = checked
    integration.updated_at = now
    if integration.status_enum is Status.SETUP:
        return _fire(session, integration, Trigger.CONFIGURE_FILTERS, now=now, actor=actor)
    return _unchanged(integration, Trigger.CONFIGURE_FILTERS)


def set_credentials(
    session: Session,
    integration_id: uuid.UUID | str,
    sealed: str,
    *,
    now: datetime,
    actor: str = SYSTEM_ACTOR,
) -> Change:
    """Replace the credentials; an auth-failing or invalid integration becomes active again.

    A sync in flight still uses the old credentials: its result is stale, and moving the
    epoch makes finish_run record it without applying it (an old key's 401 arriving now
    must not undo the new credentials).
    """
    integration = lock_integration(session, integration_id)
    change = _fire(session, integration, Trigger.UPDATE_CREDENTIALS, now=now, actor=actor)
    integration.credentials_encrypted = sealed
    integration.pause_epoch += 1
    return change


def resolve_qa(
    session: Session, integration_id: uuid.UUID | str, *, now: datetime, actor: str
) -> Change:
    """An operator signs off quality assurance: the integration is active and syncs at once."""
    integration = lock_integration(session, integration_id)
    change = _fire(session, integration, Trigger.RESOLVE_QA, now=now, actor=actor)
    integration.qa_passed_at = now
    return change


def deactivate(
    session: Session, integration_id: uuid.UUID | str, *, now: datetime, actor: str
) -> Change:
    """Pause an integration on a user's or operator's request."""
    integration = lock_integration(session, integration_id)
    return _fire(session, integration, Trigger.DEACTIVATE, now=now, actor=actor)


def reactivate(
    session: Session, integration_id: uuid.UUID | str, *, now: datetime, actor: str
) -> Change:
    """Bring an inactive integration back: active with a sync queued, or setup without filters.

    Reactivating restarts the two-week development window, so the next result does not
    pause the integration again before the host application had a chance to use it.
    """
    integration = lock_integration(session, integration_id)
    change = _fire(session, integration, Trigger.REACTIVATE, now=now, actor=actor)
    integration.reactivated_at = now
    return change


def delete(
    session: Session, integration_id: uuid.UUID | str, *, now: datetime, actor: str
) -> Change:
    """Soft-delete for good: credentials wiped, pending syncs dropped, nothing applies after."""
    integration = lock_integration(session, integration_id)
    change = _fire(session, integration, Trigger.DELETE, now=now, actor=actor)
    integration.deleted_at = now
    integration.deleted_by = actor
    integration.credentials_encrypted = None
    integration.primary = False
    integration.next_sync_at = None
    return change


def record_api_request(session: Session, integration_id: uuid.UUID | str, *, now: datetime) -> bool:
    """Note that the host application called this integration's API; never changes status.

    One conditional UPDATE, no row lock: cheap enough for every API request. Returns
    False when the integration does not exist or a later request is already recorded.
    """
    result = session.execute(
        update(Integration)
        .where(Integration.id == as_uuid(integration_id))
        .where(
            or_(Integration.last_api_request_at.is_(None), Integration.last_api_request_at < now)
        )
        .values(last_api_request_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def _fire(
    session: Session, integration: Integration, trigger: Trigger, *, now: datetime, actor: str
) -> Change:
    change = apply_trigger(session, integration, trigger, now=now, actor=actor)
    if change is None:  # every operator trigger has rows whose guards cover all cases
        raise TransitionNotAllowed(integration.id, integration.status, trigger)
    return change


def _unchanged(integration: Integration, trigger: Trigger) -> Change:
    status = integration.status_enum
    return Change(integration.id, trigger, status, status)


def _checked_filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(filters, Mapping) or not filters:
        raise InvalidValue(
            "filters must be a non-empty JSON object; an integration without filters stays in setup"
        )
    return dict(checked_json(dict(filters), what="filters"))


def _checked_interval(seconds: int | None) -> int | None:
    if seconds is not None and seconds < 60:
        raise InvalidValue(f"sync interval must be at least 60 seconds, got {seconds}")
    return seconds


def _check_unique(session: Session, spec: NewIntegration, provider: Provider) -> None:
    live = (Integration.environment_id == spec.environment_id) & Integration.deleted_at.is_(None)
    taken = session.scalar(
        select(Integration.id).where(live, Integration.identifier == spec.identifier).limit(1)
    )
    if taken is not None:
        raise DuplicateIntegration(
            f"identifier {spec.identifier!r} is already used in environment {spec.environment_id}"
        )
    if spec.primary and session.scalar(
        select(Integration.id)
        .where(live, Integration.provider == provider.value, Integration.primary)
        .limit(1)
    ):
        raise DuplicateIntegration(
            f"environment {spec.environment_id} already has a primary {provider.value} integration"
        )


def count_by_status_and_provider(session: Session) -> dict[tuple[str, str], int]:
    """How many integrations stand in each (status, provider) pair; absent pairs have none."""
    rows = session.execute(
        select(Integration.status, Integration.provider, func.count()).group_by(
            Integration.status, Integration.provider
        )
    )
    return {(str(status), str(provider)): int(count) for status, provider, count in rows}
