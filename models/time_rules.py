"""The two time rules: the three-day auth escalation and the two-week development rule.

They run in two places (SPEC §4): on one integration whenever a sync result
arrives, and in periodic sweeps, so an integration whose syncs stopped still
escalates on time. Both take `now` from the caller's clock.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.changes import Change, apply_trigger
from models.db import lock_integration
from models.lifecycle import AUTH_ESCALATION_AFTER, DEV_INACTIVITY_AFTER, LIFECYCLE
from models.schema import Environment, Integration
from models.status import EnvironmentKind, Status, Trigger

# Reasons written to the audit trail.
AUTH_ESCALATION_REASON: Final = "every sync failed on authentication for 72 hours"
DEV_INACTIVITY_REASON: Final = "dev_inactivity"


def apply_time_rules(session: Session, integration: Integration, *, now: datetime) -> Change | None:
    """Run both rules on one locked integration; the change made, if any."""
    if integration.status_enum is Status.AUTH_FAILING:
        change = apply_trigger(
            session, integration, Trigger.EXPIRE_CREDENTIALS, now=now, reason=AUTH_ESCALATION_REASON
        )
        if change is not None:
            return change
    if integration.status_enum in LIFECYCLE.sources(Trigger.DEACTIVATE_IDLE):
        return apply_trigger(
            session, integration, Trigger.DEACTIVATE_IDLE, now=now, reason=DEV_INACTIVITY_REASON
        )
    return None


def escalate_auth_failures(session: Session, *, now: datetime, limit: int = 500) -> list[Change]:
    """Sweep: move integrations auth-failing for 72 hours to `credentials_invalid`."""
    candidates = select(Integration.id).where(
        Integration.status == Status.AUTH_FAILING.value,
        Integration.auth_failing_since <= now - AUTH_ESCALATION_AFTER,
    )
    return _sweep(
        session,
        candidates,
        Trigger.EXPIRE_CREDENTIALS,
        AUTH_ESCALATION_REASON,
        now=now,
        limit=limit,
    )


def deactivate_idle_development(
    session: Session, *, now: datetime, limit: int = 500
) -> list[Change]:
    """Sweep: pause development integrations with no API request for 14 days."""
    cutoff = now - DEV_INACTIVITY_AFTER
    live = [s.value for s in LIFECYCLE.sources(Trigger.DEACTIVATE_IDLE)]
    candidates = (
        select(Integration.id)
        .join(Environment, Environment.id == Integration.environment_id)
        .where(
            Environment.kind == EnvironmentKind.DEVELOPMENT.value,
            Integration.status.in_(live),
            # Every sign of life is older than the window (Subject.last_activity, in SQL).
            Integration.created_at <= cutoff,
            or_(
                Integration.last_api_request_at.is_(None), Integration.last_api_request_at <= cutoff
            ),
            or_(Integration.reactivated_at.is_(None), Integration.reactivated_at <= cutoff),
        )
    )
    return _sweep(
        session, candidates, Trigger.DEACTIVATE_IDLE, DEV_INACTIVITY_REASON, now=now, limit=limit
    )


def _sweep(
    session: Session,
    candidates: object,
    trigger: Trigger,
    reason: str,
    *,
    now: datetime,
    limit: int,
) -> list[Change]:
    # SKIP LOCKED: a row a worker is applying a result to right now is left for the next
    # sweep (the worker applies the rules itself), so sweeps never wait on busy rows.
    ids: list[uuid.UUID] = list(
        session.scalars(
            candidates.order_by(Integration.id)  # type: ignore[attr-defined]
            .limit(limit)
            .with_for_update(skip_locked=True, of=Integration)
        )
    )
    changes = []
    for integration_id in ids:
        integration = lock_integration(session, integration_id)
        change = apply_trigger(session, integration, trigger, now=now, reason=reason)
        if change is not None:
            changes.append(change)
    return changes
