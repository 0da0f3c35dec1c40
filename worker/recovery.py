"""Recovery probes (SPEC §11): do the stored credentials of `credentials_invalid` work again?

A customer often re-enables a key rather than sending a new one. On a slow schedule
(`SYNCWORKER_PROBE_INTERVAL`, daily by default; one request a day is within every
provider's budget), each `credentials_invalid` integration's stored credentials are
tried with one cheap authenticated request: the connector's own sync, stopped at its
first page, whose records are not stored (nothing is written but the probe's time).

- they work: one `integration.credentials_recovered` event (once per stay in
  `credentials_invalid`), and with `SYNCWORKER_RECOVER_CREDENTIALS=true` the
  integration moves back as if the credentials had been sent again (`update_credentials`:
  `active`, a sync queued); off by default, since seed 002 says syncs pause until new
  credentials arrive;
- the provider still refuses them: nothing changes;
- the provider cannot say (timeout, 5xx): nothing changes; tried again next time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

import structlog
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.changes import Change, apply_trigger
from models.credentials import Keyring
from models.db import lock_integration
from models.errors import CredentialsError
from models.notices import CREDENTIALS_RECOVERED_EVENT, integration_event
from models.schema import Integration, OutboxEvent
from models.status import Provider, Status, SyncOutcome, Trigger
from worker.connectors.base import Page, SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.runtime import Runtime

log = structlog.get_logger(__name__)

# Integrations probed per sweep run; the rest wait for the next run (hourly).
PROBES_PER_RUN: Final = 100
RECOVERED_REASON: Final = "the stored credentials work again (recovery probe)"


class ProbeResult(StrEnum):
    WORKS = "works"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class _Answered(Exception):
    """Raised by the probe's sink at the first page: the provider accepted the credentials."""


class _StopAtFirstPage:
    """The probe's sink: nothing is stored; the first page ends the probe."""

    def store(self, page: Page) -> None:
        raise _Answered


@dataclass(frozen=True)
class Probed:
    """One probe's answer, and the status change it made (a sync to queue, if `sync_now`)."""

    integration_id: uuid.UUID
    provider: Provider
    result: ProbeResult
    change: Change | None = None


def due_for_probe(session: Session, *, now: datetime, every: timedelta) -> list[uuid.UUID]:
    """`credentials_invalid` integrations not probed within `every`, the longest-waiting first."""
    return list(
        session.scalars(
            select(Integration.id)
            .where(
                Integration.status == Status.CREDENTIALS_INVALID.value,
                or_(Integration.probed_at.is_(None), Integration.probed_at <= now - every),
            )
            .order_by(Integration.probed_at.nulls_first(), Integration.id)
            .limit(PROBES_PER_RUN)
        )
    )


def run_recovery_probes(runtime: Runtime) -> list[Probed]:
    """Probe each due integration once; the results (and changes, to publish syncs for)."""
    settings = runtime.settings
    every = timedelta(seconds=settings.probe_interval_s)
    with runtime.sessions() as session:
        due = due_for_probe(session, now=runtime.clock.now(), every=every)
    return [probe_one(runtime, integration_id) for integration_id in due]


def probe_one(runtime: Runtime, integration_id: uuid.UUID) -> Probed:
    """Try one integration's stored credentials and act on the answer."""
    with runtime.sessions() as session, session.begin():
        integration = lock_integration(session, integration_id)
        provider = integration.provider_enum
        if integration.status_enum is not Status.CREDENTIALS_INVALID:
            return Probed(integration_id, provider, ProbeResult.UNKNOWN)
        # Marked before the request: a probe that dies is not retried until the next period.
        integration.probed_at = runtime.clock.now()
        context = _context(runtime.keyring, integration, runtime.clock.now())
    if context is None:
        return Probed(integration_id, provider, ProbeResult.REFUSED)
    result = _ask(runtime, provider, context)
    log.info("recovery.probed", integration_id=str(integration_id), result=result.value)
    if result is not ProbeResult.WORKS:
        return Probed(integration_id, provider, result)
    with runtime.sessions() as session, session.begin():
        move = runtime.settings.recover_credentials
        change = recovered(session, integration_id, now=runtime.clock.now(), move=move)
    return Probed(integration_id, provider, result, change)


def recovered(
    session: Session, integration_id: uuid.UUID, *, now: datetime, move: bool
) -> Change | None:
    """Announce the recovery once per stay in `credentials_invalid`; move back if asked."""
    integration = lock_integration(session, integration_id)
    if integration.status_enum is not Status.CREDENTIALS_INVALID:
        return None
    announced = session.scalar(
        select(OutboxEvent.id).where(
            OutboxEvent.integration_id == integration.id,
            OutboxEvent.kind == CREDENTIALS_RECOVERED_EVENT,
            OutboxEvent.created_at >= integration.status_changed_at,
        )
    )
    if announced is None:
        integration_event(session, integration, CREDENTIALS_RECOVERED_EVENT, now=now, moved=move)
    if not move:
        return None
    return apply_trigger(
        session, integration, Trigger.UPDATE_CREDENTIALS, now=now, reason=RECOVERED_REASON
    )


def _context(keyring: Keyring, integration: Integration, now: datetime) -> SyncContext | None:
    if integration.credentials_encrypted is None:
        return None
    try:
        credentials = keyring.open(integration.credentials_encrypted)
    except CredentialsError:
        return None
    return SyncContext(
        integration_id=str(integration.id),
        credentials=credentials,
        filters=dict(integration.filters or {}),
        configurations=dict(integration.configurations or {}),
        cursors={},
        now=now,
        data_last_received_at=integration.data_last_received_at,
    )


def _ask(runtime: Runtime, provider: Provider, context: SyncContext) -> ProbeResult:
    connector = runtime.connector(provider)
    try:
        result = run_sync(connector, context, _StopAtFirstPage())
    except _Answered:
        return ProbeResult.WORKS
    except TransientError:
        return ProbeResult.UNKNOWN
    if result.outcome is SyncOutcome.AUTH_FAILED:
        return ProbeResult.REFUSED
    if result.outcome is SyncOutcome.FAILED:
        return ProbeResult.UNKNOWN
    return ProbeResult.WORKS
