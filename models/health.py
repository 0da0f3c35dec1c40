"""Lateness: whether an integration's data is fresh, from time rather than results (SPEC §11).

The nine statuses say what the last results were; lateness says what they do not. An
integration whose last successful sync is older than `late_after` times its sync interval
is `late`, older than `overdue_after` times `overdue`, whatever its status says. It is a
flag beside the status, never a tenth status:

    on_time   last success within 2x the interval (at exactly 2x: still on time)
    late      older than 2x
    overdue   older than 5x

Only integrations expected to have fresh data are judged: the syncing statuses, and the
two that paused syncing on a problem (`quality_assurance`, `credentials_invalid`). One
in `setup`, `inactive` or `deleted` is never late: nobody expects data from it.

A sweep announces each change once, through the outbox: `integration.late` when one
becomes late (or overdue) and `integration.on_time` when it recovers. An integration of a
provider under an incident (`models.incidents`) is flagged but not announced: the
incident is the one event for all of them.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import Row, or_, select
from sqlalchemy.orm import Session

from models.errors import InvalidValue
from models.notices import LATE_EVENT, ON_TIME_EVENT, integration_event
from models.schema import Integration
from models.status import SYNCING_STATUSES, Provider, Status


class Lateness(StrEnum):
    """The health flag beside the status."""

    ON_TIME = "on_time"
    LATE = "late"
    OVERDUE = "overdue"


# Statuses whose integrations are expected to have fresh data.
WATCHED_STATUSES: Final = SYNCING_STATUSES | {Status.QUALITY_ASSURANCE, Status.CREDENTIALS_INVALID}


@dataclass(frozen=True)
class LatenessRule:
    """How many sync intervals without a success make an integration late, and overdue."""

    late_after: float = 2.0
    overdue_after: float = 5.0

    def __post_init__(self) -> None:
        if not 1 <= self.late_after < self.overdue_after:
            raise InvalidValue(
                f"lateness thresholds must satisfy 1 <= late ({self.late_after}) "
                f"< overdue ({self.overdue_after}) intervals"
            )


# An integration as lateness reads it: the ORM row, or a Core row with the columns used
# below (`models.serializers.API_VIEW_COLUMNS` has them).
Fields = Integration | Row[Any]


def interval_of(integration: Fields, intervals: Mapping[Provider, timedelta]) -> timedelta:
    """The integration's sync interval: its own override, else its provider's."""
    own = integration.sync_interval_seconds
    return timedelta(seconds=own) if own else intervals[Provider(integration.provider)]


def fresh_since(integration: Fields) -> datetime:
    """Since when its data counts as fresh: the last success, or a later reactivation.

    An integration that never succeeded counts from its creation; one reactivated after
    a pause counts from the reactivation (the pause was someone's choice, not staleness).
    """
    moments = [m for m in (integration.last_success_at, integration.reactivated_at) if m]
    return max(moments, default=integration.created_at)


def lateness_of(
    integration: Fields, interval: timedelta, *, now: datetime, rule: LatenessRule
) -> Lateness:
    """The integration's lateness at `now`."""
    if Status(integration.status) not in WATCHED_STATUSES:
        return Lateness.ON_TIME
    age = now - fresh_since(integration)
    if age > interval * rule.overdue_after:
        return Lateness.OVERDUE
    if age > interval * rule.late_after:
        return Lateness.LATE
    return Lateness.ON_TIME


def late_at(integration: Fields, interval: timedelta, *, rule: LatenessRule) -> datetime:
    """The moment after which the integration is late unless a sync succeeds first."""
    return fresh_since(integration) + interval * rule.late_after


@dataclass(frozen=True)
class LatenessReport:
    """What one sweep saw (integrations per provider and lateness) and announced."""

    counts: Mapping[tuple[Provider, Lateness], int] = field(default_factory=dict)
    announced_late: int = 0
    announced_on_time: int = 0


def sweep_lateness(
    session: Session,
    *,
    now: datetime,
    rule: LatenessRule,
    intervals: Mapping[Provider, timedelta],
    covered: Collection[Provider] = (),
) -> LatenessReport:
    """Judge every watched integration and announce each change of its lateness once.

    `covered` names providers under an incident: their integrations' lateness is counted
    but neither announced nor recorded, so it is announced after the incident if it lasts.
    """
    watched = [s.value for s in WATCHED_STATUSES]
    rows = session.scalars(
        select(Integration).where(
            Integration.deleted_at.is_(None),
            or_(Integration.status.in_(watched), Integration.lateness != Lateness.ON_TIME.value),
        )
    ).all()
    counts: Counter[tuple[Provider, Lateness]] = Counter()
    to_announce: list[tuple[uuid.UUID, Lateness]] = []
    for integration in rows:
        flag = lateness_of(integration, interval_of(integration, intervals), now=now, rule=rule)
        if integration.status_enum in WATCHED_STATUSES:
            counts[(integration.provider_enum, flag)] += 1
        announced = Lateness(integration.lateness)
        if (flag is Lateness.ON_TIME) != (announced is Lateness.ON_TIME):
            if integration.provider_enum not in covered or flag is Lateness.ON_TIME:
                to_announce.append((integration.id, flag))
        elif flag is not announced:
            integration.lateness = flag.value  # late <-> overdue: recorded, not announced again
    late = sum(_announce(session, i, flag, now=now) for i, flag in to_announce)
    return LatenessReport(dict(counts), late, len(to_announce) - late)


def _announce(session: Session, integration_id: uuid.UUID, flag: Lateness, *, now: datetime) -> int:
    """Record and announce one integration's new lateness; 1 if it became late."""
    integration = session.get(Integration, integration_id, with_for_update=True)
    if integration is None:
        return 0
    integration.lateness = flag.value
    if flag is Lateness.ON_TIME:
        integration_event(session, integration, ON_TIME_EVENT, now=now, lateness=flag.value)
        return 0
    since = fresh_since(integration).isoformat()
    integration_event(
        session, integration, LATE_EVENT, now=now, lateness=flag.value, freshSince=since
    )
    return 1
