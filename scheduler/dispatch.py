"""Claim-and-dispatch: one provider tick claims its due integrations and publishes syncs.

A claim locks a batch of due rows with FOR UPDATE SKIP LOCKED (on SQLite the
BEGIN IMMEDIATE of `models.db` serialises claimers instead), advances their
`next_sync_at` and commits; only then are the sync tasks published, so a tick
that dies before publishing loses at most one interval, and two beats or two
overlapping ticks never claim the same integration. The partial index
`ix_integrations_due` makes the cost grow with the number due, not stored.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from models.schema import Integration
from models.status import SYNCING_VALUES, Provider
from scheduler.incidents import backoff_factor
from scheduler.providers import ProviderPolicy

# Rows claimed per transaction: large enough to amortise the round trips, small enough
# that a batch's row locks are held for milliseconds.
BATCH_SIZE: Final = 1000
# One tick never claims more than this; the rest waits for the next tick, so a backlog
# cannot make a tick run past the beat interval.
MAX_PER_TICK: Final = 50_000


class Publisher(Protocol):
    """Publishes one sync task per integration id on the provider's queue."""

    def publish(self, policy: ProviderPolicy, integration_ids: Sequence[uuid.UUID]) -> None: ...


@dataclass(frozen=True)
class TickReport:
    """What one provider tick did."""

    provider: Provider
    dispatched: int
    batches: int
    max_lag_s: float


@dataclass(frozen=True)
class Claim:
    integration_ids: list[uuid.UUID]
    max_lag_s: float


def claim_due(
    session: Session, policy: ProviderPolicy, *, now: datetime, limit: int = BATCH_SIZE
) -> Claim:
    """Lock up to `limit` due integrations of one provider and advance their next sync."""
    rows = session.execute(
        select(Integration.id, Integration.next_sync_at, Integration.sync_interval_seconds)
        .where(
            Integration.provider == policy.provider.value,
            Integration.status.in_(SYNCING_VALUES),
            Integration.next_sync_at <= now,
        )
        .order_by(Integration.next_sync_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    by_interval: dict[int | None, list[uuid.UUID]] = defaultdict(list)
    for integration_id, _, own_interval in rows:
        by_interval[own_interval].append(integration_id)
    # A provider under an incident is asked less often until it recovers (SPEC §11).
    backoff = backoff_factor(session, policy.provider) if rows else 1.0
    for own_interval, ids in by_interval.items():
        interval = interval_for(policy, own_interval) * backoff
        session.execute(
            update(Integration)
            .where(Integration.id.in_(ids))
            .values(next_sync_at=now + interval)
            .execution_options(synchronize_session=False)
        )
    lag = max(((now - due).total_seconds() for _, due, _ in rows if due), default=0.0)
    return Claim([row[0] for row in rows], lag)


def interval_for(policy: ProviderPolicy, own_interval_s: int | None) -> timedelta:
    """An integration's sync interval: its own override, else its provider's."""
    return timedelta(seconds=own_interval_s) if own_interval_s else policy.interval


def claim_one(
    session: Session, integration: Integration, policy: ProviderPolicy, *, now: datetime
) -> None:
    """Claim a locked integration for an immediate publish, as a tick would claim it."""
    integration.next_sync_at = now + interval_for(policy, integration.sync_interval_seconds)


def release(session: Session, integration_ids: Sequence[uuid.UUID], *, now: datetime) -> None:
    """Make claimed integrations due again, when their tasks could not be published."""
    session.execute(
        update(Integration)
        .where(Integration.id.in_(integration_ids), Integration.status.in_(SYNCING_VALUES))
        .values(next_sync_at=now)
        .execution_options(synchronize_session=False)
    )


def dispatch_tick(
    sessions: sessionmaker[Session],
    publisher: Publisher,
    policy: ProviderPolicy,
    *,
    now: Callable[[], datetime],
    batch_size: int = BATCH_SIZE,
    max_per_tick: int = MAX_PER_TICK,
) -> TickReport:
    """Claim and publish every due integration of one provider, batch by batch."""
    dispatched = batches = 0
    max_lag = 0.0
    while dispatched < max_per_tick:
        moment = now()
        with sessions() as session, session.begin():
            limit = min(batch_size, max_per_tick - dispatched)
            claim = claim_due(session, policy, now=moment, limit=limit)
        if not claim.integration_ids:
            break
        published = False
        try:
            publisher.publish(policy, claim.integration_ids)
            published = True
        finally:
            if not published:
                # The broker refused: hand the claim back so nothing waits a whole interval.
                with sessions() as session, session.begin():
                    release(session, claim.integration_ids, now=moment)
        dispatched += len(claim.integration_ids)
        batches += 1
        max_lag = max(max_lag, claim.max_lag_s)
        if len(claim.integration_ids) < batch_size:
            break
    return TickReport(policy.provider, dispatched, batches, max_lag)
