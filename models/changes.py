"""Apply a lifecycle trigger to a stored integration and record what changed.

This is the one place where a status is written: the trigger runs on the shared
machine, the new status is copied back to the row, and the audit row and the
outbox event are added to the same session, so they commit together or not at
all. Callers hold the integration's row lock (`models.db.lock_integration`) and
own the transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from models.inputs import checked_actor
from models.lifecycle import LIFECYCLE, SYNC_NOW_TRIGGERS, Subject
from models.schema import Integration, OutboxEvent, StatusChange
from models.status import SYNCING_STATUSES, Status, Trigger

SYSTEM_ACTOR: Final = "system"
STATUS_CHANGED_EVENT: Final = "integration.status_changed"


@dataclass(frozen=True)
class Change:
    """What a trigger did to one integration; `sync_now` asks the caller to enqueue a sync."""

    integration_id: uuid.UUID
    trigger: Trigger
    from_status: Status | None
    to_status: Status
    sync_now: bool = False

    @property
    def changed(self) -> bool:
        return self.from_status != self.to_status


def subject_of(integration: Integration) -> Subject:
    """Attach an integration to the lifecycle: a cheap snapshot of what the guards read."""
    return Subject(
        integration_id=integration.id,
        state=integration.status,
        has_filters=integration.has_filters,
        environment_kind=integration.environment.environment_kind,
        created_at=integration.created_at,
        last_api_request_at=integration.last_api_request_at,
        auth_failing_since=integration.auth_failing_since,
        reactivated_at=integration.reactivated_at,
    )


def apply_trigger(
    session: Session,
    integration: Integration,
    trigger: Trigger,
    *,
    now: datetime,
    actor: str = SYSTEM_ACTOR,
    reason: str | None = None,
    sync_run_id: uuid.UUID | None = None,
    **facts: Any,
) -> Change | None:
    """Fire `trigger` on a locked integration; None when its guards held it back.

    Raises TransitionNotAllowed when the trigger does not apply to the current status, and
    InvalidValue for an actor the audit trail cannot hold.
    """
    checked_actor(actor)
    subject = subject_of(integration)
    before = integration.status_enum
    if not LIFECYCLE.fire(subject, trigger, now=now, **facts):
        return None
    after = subject.status
    integration.auth_failing_since = subject.auth_failing_since
    integration.updated_at = now
    sync_now = trigger in SYNC_NOW_TRIGGERS and after in SYNCING_STATUSES
    if after not in SYNCING_STATUSES:
        integration.next_sync_at = None
        if before in SYNCING_STATUSES:
            integration.pause_epoch += 1
    elif sync_now or before not in SYNCING_STATUSES:
        integration.next_sync_at = now
    change = Change(integration.id, trigger, before, after, sync_now)
    if change.changed:
        integration.status = after.value
        integration.status_changed_at = now
        record_change(
            session, integration, change, now=now, actor=actor, reason=reason, run_id=sync_run_id
        )
    return change


def record_change(
    session: Session,
    integration: Integration,
    change: Change,
    *,
    now: datetime,
    actor: str,
    reason: str | None,
    run_id: uuid.UUID | None = None,
) -> None:
    """Add the audit row and the outbox event of a status change to the session."""
    from_status = change.from_status.value if change.from_status else None
    session.add(
        StatusChange(
            integration_id=change.integration_id,
            from_status=from_status,
            to_status=change.to_status.value,
            trigger=change.trigger.value,
            reason=reason,
            actor=actor,
            at=now,
            sync_run_id=run_id,
        )
    )
    session.add(
        OutboxEvent(
            integration_id=change.integration_id,
            kind=STATUS_CHANGED_EVENT,
            payload={
                "integrationId": str(change.integration_id),
                "organizationId": integration.organization_id,
                "environmentId": integration.environment_id,
                "provider": integration.provider,
                "name": integration.name,
                "fromStatus": from_status,
                "toStatus": change.to_status.value,
                "trigger": change.trigger.value,
                "reason": reason,
                "actor": actor,
                "at": now.isoformat(),
            },
            created_at=now,
            next_attempt_at=now,
        )
    )
