"""Provider incidents: many integrations of one provider failing the same way at once.

That is the provider's outage, not each customer's problem (SPEC §11). Over a sliding
window, each integration's latest finished attempt is taken; when at least
`min_integrations` attempted and at least `share` of them failed the same way (auth,
timeout, transient), an incident opens:

- one `provider.incident_opened` event instead of one per integration;
- the provider's dispatch stretches its interval by `backoff` (`scheduler.dispatch`);
- failures of the incident's kind are recorded but not applied to the lifecycle
  (`models.sync_runs.finish_run`), so none sends a first sync to QA or starts an auth
  clock, and the auth clocks already running are held still while it lasts;
- it closes by itself once fewer than half of `share` fail that way
  (`provider.incident_closed`), and the provider's integrations are brought back to
  their normal schedule, spread over one interval.

While an incident is open and its backed-off provider finishes fewer than
`min_integrations` attempts in the window, the sample widens to the latest attempts of
the `min_integrations` integrations that ran most recently, so an incident over a small
fleet still closes.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from models.errors import InvalidValue
from models.schema import Integration, ProviderIncident, SyncRun
from models.status import SYNCING_VALUES, Provider, SyncOutcome

# How many recent attempts per wanted integration the widened sample reads at most.
WIDEN_READ_FACTOR: Final = 20
# The error prefix of a task's own budget wait (`worker.connectors.http`): not a failure.
BUDGET_WAIT: Final = "the request budget is spent"


class FailureKind(StrEnum):
    """How an attempt failed, as far as incidents care."""

    AUTH = "auth"
    TIMEOUT = "timeout"
    TRANSIENT = "transient"


def failure_kind(outcome: SyncOutcome | None, error: str | None) -> FailureKind | None:
    """Classify a finished attempt; None for a success or a failure of the data itself.

    `outcome` None is an attempt closed for a retry (`close_for_retry`): transient.
    """
    if outcome is SyncOutcome.AUTH_FAILED:
        return FailureKind.AUTH
    if outcome not in (None, SyncOutcome.FAILED) or not error or BUDGET_WAIT in error:
        return None
    text = error.lower()
    if not (outcome is None or text.startswith(("gave up after retries", "transient"))):
        return None
    if "timeout" in text or " 408 " in f" {text} ":
        return FailureKind.TIMEOUT
    return FailureKind.TRANSIENT


@dataclass(frozen=True)
class IncidentRule:
    """When a provider's failures are an incident, and how dispatch backs off during one."""

    window: timedelta = timedelta(hours=1)
    share: float = 0.5
    min_integrations: int = 10
    backoff: float = 6.0

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1 or self.min_integrations < 2 or self.backoff < 1:
            raise InvalidValue(
                "incident rule needs 0 < share <= 1, min_integrations >= 2, backoff >= 1"
            )


@dataclass(frozen=True)
class Sample:
    """The latest attempt of each integration in the window, counted by failure kind."""

    window_start: datetime
    seen: int
    failing: Mapping[FailureKind, int]

    def top(self) -> tuple[FailureKind | None, int]:
        if not self.failing:
            return None, 0
        kind, count = max(self.failing.items(), key=lambda item: (item[1], item[0].value))
        return kind, count


def open_incident(session: Session, provider: Provider | str) -> ProviderIncident | None:
    """The provider's open incident, if any."""
    return session.scalars(
        select(ProviderIncident).where(
            ProviderIncident.provider == str(provider), ProviderIncident.closed_at.is_(None)
        )
    ).first()


def open_incidents(session: Session) -> list[ProviderIncident]:
    return list(
        session.scalars(
            select(ProviderIncident)
            .where(ProviderIncident.closed_at.is_(None))
            .order_by(ProviderIncident.provider)
        )
    )


def recent_incidents(session: Session, *, limit: int = 20) -> list[ProviderIncident]:
    """Incidents newest first, open and closed."""
    return list(
        session.scalars(
            select(ProviderIncident).order_by(ProviderIncident.opened_at.desc()).limit(limit)
        )
    )


def covers(session: Session, provider: Provider | str, kind: FailureKind | None) -> bool:
    """Whether an open incident of the provider explains a failure of this kind."""
    if kind is None:
        return False
    incident = open_incident(session, provider)
    return incident is not None and incident.kind == kind.value


def sample(
    session: Session, provider: Provider, *, now: datetime, rule: IncidentRule, widen: bool
) -> Sample:
    """The provider's latest attempt per integration within the window (widened if asked)."""
    start = now - rule.window
    runs = _runs(session, provider).where(SyncRun.finished_at > start, SyncRun.finished_at <= now)
    rows = [(row[0], row[1]) for row in session.execute(runs)]
    latest = _latest_per_integration(rows, limit=None)
    if widen and len(latest) < rule.min_integrations:
        read = rule.min_integrations * WIDEN_READ_FACTOR
        recent = _runs(session, provider).where(SyncRun.finished_at <= now).limit(read)
        rows = [(row[0], row[1]) for row in session.execute(recent)]
        latest = _latest_per_integration(rows, rule.min_integrations)
    counts = Counter(FailureKind(kind) for kind in latest.values() if kind is not None)
    return Sample(start, len(latest), dict(counts))


def _runs(session: Session, provider: Provider) -> Select[uuid.UUID, str | None]:
    return (
        select(SyncRun.integration_id, SyncRun.failure_kind)
        .join(Integration, Integration.id == SyncRun.integration_id)
        .where(
            Integration.provider == provider.value,
            # Only integrations still syncing: one paused since (its key expired, say) keeps
            # its last failure forever, which says nothing about the provider now.
            Integration.status.in_(SYNCING_VALUES),
            SyncRun.finished_at.is_not(None),
        )
        .order_by(SyncRun.finished_at.desc())
    )


def _latest_per_integration(
    rows: Sequence[tuple[uuid.UUID, str | None]], limit: int | None
) -> dict[uuid.UUID, str | None]:
    """Rows come newest first: keep each integration's first, up to `limit` integrations."""
    latest: dict[uuid.UUID, str | None] = {}
    for integration_id, kind in rows:
        if integration_id not in latest:
            if limit is not None and len(latest) >= limit:
                break
            latest[integration_id] = kind
    return latest


class IncidentDto(TypedDict):
    """An incident as the API, the CLI, the page and its events show it."""

    incidentId: int
    provider: str
    kind: str
    open: bool
    openedAt: str
    closedAt: str | None
    windowSeconds: int
    windowStart: str
    integrationsSeen: int
    integrationsFailing: int
    peakFailing: int
    lastSeen: int
    lastFailing: int
    backoff: float


def incident_dto(incident: ProviderIncident) -> IncidentDto:
    return {
        "incidentId": incident.id,
        "provider": incident.provider,
        "kind": incident.kind,
        "open": incident.open,
        "openedAt": incident.opened_at.isoformat(),
        "closedAt": incident.closed_at.isoformat() if incident.closed_at else None,
        "windowSeconds": incident.window_s,
        "windowStart": incident.window_start.isoformat(),
        "integrationsSeen": incident.integrations_seen,
        "integrationsFailing": incident.integrations_failing,
        "peakFailing": incident.peak_failing,
        "lastSeen": incident.last_seen,
        "lastFailing": incident.last_failing,
        "backoff": incident.backoff,
    }
