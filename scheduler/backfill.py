"""Report backfills: re-read the recent days of providers whose reports arrive late.

App Store Connect may restate a day's sales report over the following days, and Google
Play reports voided purchases days after the void. Once a day, the cursors of these
providers' syncing integrations are rewound by the provider's lookback window
(`ProviderPolicy.lookback`; `models.resync.rewind`), so their next sync re-reads the
window and upserts what changed. An integration syncing right now is left for the next
day: its cursor writes would race the rewind.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import lock_integration
from models.errors import SyncInProgress
from models.resync import resync
from models.schema import Integration, SyncCursor
from models.status import SYNCING_VALUES, Provider
from scheduler.providers import ProviderPolicy


@dataclass(frozen=True)
class Batch:
    """One batch's work: the integrations rewound, and where the next batch starts."""

    rewound: list[uuid.UUID]
    last: uuid.UUID | None  # None: nothing left


def backfill_reports(
    session: Session,
    policies: Mapping[Provider, ProviderPolicy],
    *,
    now: datetime,
    after: uuid.UUID | None = None,
    limit: int = 500,
) -> Batch:
    """Rewind the report cursors of one batch of integrations (by id, after `after`)."""
    lookbacks = {p.value: policy.lookback for p, policy in policies.items() if policy.lookback}
    if not lookbacks:
        return Batch([], None)
    query = select(Integration.id, Integration.provider).where(
        Integration.provider.in_(list(lookbacks)), Integration.status.in_(SYNCING_VALUES)
    )
    if after is not None:
        query = query.where(Integration.id > after)
    candidates = session.execute(query.order_by(Integration.id).limit(limit)).all()
    rewound: list[uuid.UUID] = []
    for integration_id, provider in candidates:
        streams = list(
            session.scalars(
                select(SyncCursor.stream).where(SyncCursor.integration_id == integration_id)
            )
        )
        if not streams:
            continue
        integration = lock_integration(session, integration_id)
        try:
            resync(session, integration, streams=streams, now=now, lookback=lookbacks[provider])
        except SyncInProgress:
            continue
        rewound.append(integration_id)
    last = candidates[-1][0] if len(candidates) == limit else None
    return Batch(rewound, last)
