"""Opening and closing provider incidents, and what an open one does to the schedule.

`evaluate` runs in a beat sweep per provider (SPEC §11; the rule and its sample are in
`models.incidents`). It opens an incident with one event, holds the provider's auth
clocks still while it lasts, closes it with one event, and brings the provider's
integrations back to their normal schedule. `backoff_factor` is what the dispatch tick
stretches the provider's interval by meanwhile.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from models.incidents import (
    FailureKind,
    IncidentRule,
    Sample,
    incident_dto,
    open_incident,
    sample,
)
from models.notices import INCIDENT_CLOSED_EVENT, INCIDENT_OPENED_EVENT, add_event
from models.schema import Integration, ProviderIncident
from models.status import SYNCING_VALUES, Provider, Status

# An open incident closes once fewer than this fraction of `share` still fail its way:
# below the opening threshold, so a provider hovering at it does not flap.
CLOSE_FRACTION: Final = 0.5


@dataclass(frozen=True)
class IncidentChange:
    """An incident opened or closed by one evaluation."""

    provider: Provider
    opened: bool
    incident_id: int


def backoff_factor(session: Session, provider: Provider) -> float:
    """How much the provider's sync interval is stretched: the open incident's backoff, or 1."""
    incident = open_incident(session, provider)
    return incident.backoff if incident is not None else 1.0


def covered_providers(
    session: Session, *, now: datetime, grace: Mapping[Provider, timedelta]
) -> set[Provider]:
    """Providers whose lateness an incident explains: one is open, or closed within `grace`.

    The grace (the provider's late threshold) lets the integrations the backoff pushed out
    catch up after the incident before any is announced late on its own.
    """
    covered: set[Provider] = set()
    # Open, or closed within the longest grace: however many incidents came since.
    since = now - max(grace.values(), default=timedelta(0))
    relevant = select(ProviderIncident).where(
        or_(ProviderIncident.closed_at.is_(None), ProviderIncident.closed_at >= since)
    )
    for incident in session.scalars(relevant):
        provider = Provider(incident.provider)
        closed = incident.closed_at
        if closed is None or now - closed <= grace.get(provider, timedelta(0)):
            covered.add(provider)
    return covered


def evaluate(
    session: Session,
    provider: Provider,
    *,
    now: datetime,
    rule: IncidentRule,
    interval: timedelta,
) -> IncidentChange | None:
    """Open or close the provider's incident from its latest attempts; the change, if any."""
    incident = open_incident(session, provider)
    seen = sample(session, provider, now=now, rule=rule, widen=incident is not None)
    if incident is None:
        kind, failing = seen.top()
        if kind is None or seen.seen < rule.min_integrations or failing < rule.share * seen.seen:
            return None
        incident = _open(session, provider, kind.value, seen, now=now, rule=rule, interval=interval)
        return IncidentChange(provider, True, incident.id)
    _record(incident, seen, now=now)
    hold_auth_clocks(session, incident, now=now)
    still = seen.failing.get(FailureKind(incident.kind), 0)
    if seen.seen == 0 or still >= rule.share * CLOSE_FRACTION * seen.seen:
        return None
    _close(session, incident, now=now, interval=interval)
    return IncidentChange(provider, False, incident.id)


def _open(
    session: Session,
    provider: Provider,
    kind: str,
    seen: Sample,
    *,
    now: datetime,
    rule: IncidentRule,
    interval: timedelta,
) -> ProviderIncident:
    failing = seen.top()[1]
    incident = ProviderIncident(
        provider=provider.value,
        kind=kind,
        opened_at=now,
        window_s=int(rule.window.total_seconds()),
        window_start=seen.window_start,
        integrations_seen=seen.seen,
        integrations_failing=failing,
        peak_failing=failing,
        last_seen=seen.seen,
        last_failing=failing,
        evaluated_at=now,
        backoff=rule.backoff,
        clock_held_until=now,
    )
    session.add(incident)
    session.flush()
    stretch_schedule(session, provider, now=now, span=interval * rule.backoff)
    add_event(session, INCIDENT_OPENED_EVENT, _payload(incident), now=now)
    return incident


def _record(incident: ProviderIncident, seen: Sample, *, now: datetime) -> None:
    failing = seen.failing.get(FailureKind(incident.kind), 0)
    incident.last_seen = seen.seen
    incident.last_failing = failing
    incident.peak_failing = max(incident.peak_failing, failing)
    incident.evaluated_at = now


def hold_auth_clocks(session: Session, incident: ProviderIncident, *, now: datetime) -> int:
    """Move the provider's running auth clocks forward by the incident time since last held.

    An integration auth-failing since before the incident counts its time before and after
    the incident, never the time inside it: the 72-hour rule reads `auth_failing_since`.
    """
    held = incident.clock_held_until
    if now <= held:
        return 0
    failing = session.scalars(
        select(Integration)
        .where(
            Integration.provider == incident.provider,
            Integration.status == Status.AUTH_FAILING.value,
            Integration.auth_failing_since.is_not(None),
        )
        .with_for_update(skip_locked=True)
    ).all()
    for integration in failing:
        since = integration.auth_failing_since or now
        integration.auth_failing_since = since + (now - max(held, since))
    incident.clock_held_until = now
    return len(failing)


def _close(
    session: Session, incident: ProviderIncident, *, now: datetime, interval: timedelta
) -> None:
    incident.closed_at = now
    reschedule_after_incident(session, Provider(incident.provider), now=now, interval=interval)
    add_event(session, INCIDENT_CLOSED_EVENT, _payload(incident), now=now)


def stretch_schedule(
    session: Session, provider: Provider, *, now: datetime, span: timedelta
) -> int:
    """On opening: spread the provider's next syncs over the backed-off interval.

    Syncs already claimed at the normal interval would otherwise all still run (a whole
    interval of requests to a provider that is down); spread evenly, they become the
    incident's probes. A sync already scheduled later than its spot keeps its time.
    """
    stretched = 0
    for integration in _syncing(session, provider):
        spot = now + span * _fraction(integration)
        if integration.next_sync_at is None or integration.next_sync_at < spot:
            integration.next_sync_at = spot
            stretched += 1
    return stretched


def reschedule_after_incident(
    session: Session, provider: Provider, *, now: datetime, interval: timedelta
) -> int:
    """On closing: bring syncs pushed out by the backoff back within one interval, spread.

    Spread by a hash of the id, so the recovered provider is not hit by every sync at once.
    """
    pulled = 0
    for integration in _syncing(session, provider, later_than=now + interval):
        integration.next_sync_at = now + interval * _fraction(integration)
        pulled += 1
    return pulled


def _syncing(
    session: Session, provider: Provider, *, later_than: datetime | None = None
) -> Sequence[Integration]:
    query = select(Integration).where(
        Integration.provider == provider.value, Integration.status.in_(SYNCING_VALUES)
    )
    if later_than is not None:
        query = query.where(Integration.next_sync_at > later_than)
    return session.scalars(query.with_for_update(skip_locked=True)).all()


def _fraction(integration: Integration) -> float:
    """A stable spot in [0, 1) for the integration, from its id."""
    return zlib.crc32(integration.id.bytes) / 2**32


def _payload(incident: ProviderIncident) -> dict[str, object]:
    return dict(incident_dto(incident))
