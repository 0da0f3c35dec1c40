"""Events beyond status changes, written to the outbox in the caller's transaction.

`models.changes` writes the status-change events; the health rules (lateness,
provider incidents, recovery probes) write theirs here, through the same outbox,
so they are delivered to the log and every webhook exactly like status changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from models.schema import Integration, OutboxEvent

LATE_EVENT: Final = "integration.late"
ON_TIME_EVENT: Final = "integration.on_time"
CREDENTIALS_RECOVERED_EVENT: Final = "integration.credentials_recovered"
INCIDENT_OPENED_EVENT: Final = "provider.incident_opened"
INCIDENT_CLOSED_EVENT: Final = "provider.incident_closed"
# The events a team is told about (the log sink writes them at WARNING, like the statuses
# in `worker.events.NOTIFY_STATUSES`).
NOTIFY_EVENTS: Final = frozenset(
    {LATE_EVENT, CREDENTIALS_RECOVERED_EVENT, INCIDENT_OPENED_EVENT, INCIDENT_CLOSED_EVENT}
)


def add_event(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    now: datetime,
    integration_id: uuid.UUID | None = None,
) -> None:
    """Add one event to the outbox; it is sent once the caller's transaction commits."""
    session.add(
        OutboxEvent(
            integration_id=integration_id,
            kind=kind,
            payload={**payload, "at": now.isoformat()},
            created_at=now,
            next_attempt_at=now,
        )
    )


def integration_event(
    session: Session, integration: Integration, kind: str, *, now: datetime, **fields: Any
) -> None:
    """Add an event about one integration, naming it as status-change events do."""
    payload = {
        "integrationId": str(integration.id),
        "organizationId": integration.organization_id,
        "environmentId": integration.environment_id,
        "provider": integration.provider,
        "name": integration.name,
        "status": integration.status,
        **fields,
    }
    add_event(session, kind, payload, now=now, integration_id=integration.id)
