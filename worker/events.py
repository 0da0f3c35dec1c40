"""Delivering the outbox: every status-change event reaches the log and each webhook once.

`models.changes` writes an `OutboxEvent` in the transaction of each status change;
this module works through the undelivered ones. Delivery is at least once, and
never lost:

- a claim locks due rows with FOR UPDATE SKIP LOCKED (on SQLite the BEGIN IMMEDIATE
  of `models.db` serialises claimers instead), pushes their `next_attempt_at` a lease
  ahead and commits, so no row lock is held while a receiver answers and two
  deliverers never take the same event; a deliverer that dies leaves its events to
  come due again when the lease runs out;
- each event then goes to every sink that has not accepted it yet, and the sinks
  that did are stored on the row (`delivered_to`): a receiver that answered 2xx is
  never sent the same event again, even when another one keeps failing;
- an event some sink refused is retried with exponential backoff and jitter, for as
  long as it takes; it is delivered only when every configured sink has accepted it.

The log sink is always first: each event is one structured log line, at WARNING for
the statuses a team must act on. Webhook sinks live in `worker.webhooks`.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.notices import LATE_EVENT, NOTIFY_EVENTS
from models.schema import OutboxEvent
from models.status import Status
from worker.backoff import Backoff
from worker.errors import DeliveryFailed
from worker.logs import redact_value

log = structlog.get_logger(__name__)

# Events claimed per transaction; each is sent and recorded before the next batch.
BATCH_SIZE: Final = 20
# A claimed event is not offered to another deliverer for this long. Above the task's hard
# time limit (300 s), so an event is only claimed again once its deliverer is dead or killed.
CLAIM_LEASE: Final = timedelta(minutes=10)
# One delivery run stops after this many batches; the next beat run takes over the rest.
MAX_BATCHES: Final = 50
# The first retry comes 15-30 s after a failure, doubling each time (equal jitter): a
# receiver's blip passes quickly, a receiver down for a day is tried every 3-6 hours, not
# hammered.
BACKOFF_BASE: Final = timedelta(seconds=30)
BACKOFF_CAP: Final = timedelta(hours=6)
EVENT_BACKOFF: Final = Backoff(BACKOFF_BASE.total_seconds(), BACKOFF_CAP.total_seconds(), floor=0.5)
# The statuses a team is notified of: the customer must act (credentials) or engineering must (QA).
NOTIFY_STATUSES: Final = frozenset({Status.QUALITY_ASSURANCE, Status.CREDENTIALS_INVALID})
# Statuses that look healthy: lateness is the only sign that one of these is not.
SILENT_STATUSES: Final = frozenset({Status.ACTIVE, Status.SYNC_WARNINGS})
LOG_SINK_NAME: Final = "log"
# last_error keeps the start of the story; the full one is in the worker's log.
MAX_ERROR_CHARS: Final = 1000


@dataclass(frozen=True)
class Event:
    """One outbox event as sinks see it: the payload already passed through redaction."""

    id: uuid.UUID
    kind: str
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def from_row(cls, row: OutboxEvent) -> Event:
        # Reasons come from sync errors, which may quote what a provider sent back.
        return cls(row.id, row.kind, row.created_at, redact_value(dict(row.payload)))


class Sink(Protocol):
    """A destination of events; `name` is what the outbox records once it accepted one."""

    @property
    def name(self) -> str: ...

    def send(self, event: Event) -> None:
        """Hand the event over, or raise DeliveryFailed."""


class LogSink:
    """Writes each event as one structured log line; QA and invalid credentials at WARNING.

    The line's keys are snake_case like every other log line (`to_status`), while the
    webhook body keeps the wire's camelCase (`toStatus`).
    """

    name: Final = LOG_SINK_NAME

    def send(self, event: Event) -> None:
        emit = log.warning if notifies(event.kind, event.data) else log.info
        fields = {snake_case(key): value for key, value in event.data.items()}
        emit(event.kind, event_id=str(event.id), **fields)


def notifies(kind: str, data: Mapping[str, Any]) -> bool:
    """Whether an event is one a team is told about (the log sink writes it at WARNING).

    Status changes to QA or `credentials_invalid`, provider incidents, recovered
    credentials, and lateness only where the status does not already tell the story:
    a late integration that looks `active` is the silent failure lateness exists for,
    while one failing on auth was announced by its status change already.
    """
    if kind == LATE_EVENT:
        return data.get("status") in SILENT_STATUSES
    return kind in NOTIFY_EVENTS or data.get("toStatus") in NOTIFY_STATUSES


_WORD_START: Final = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def snake_case(key: str) -> str:
    """`integrationId` -> `integration_id`: a wire key as a log key."""
    return _WORD_START.sub("_", key).lower()


@dataclass(frozen=True)
class Claimed:
    """An event this deliverer holds until its lease ends, and the sinks already done."""

    event: Event
    delivered_to: frozenset[str]


@dataclass(frozen=True)
class DeliveryReport:
    """What one delivery pass did: events claimed, fully delivered, and left to retry."""

    claimed: int = 0
    delivered: int = 0
    retrying: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.claimed + other.claimed,
            self.delivered + other.delivered,
            self.retrying + other.retrying,
        )


def backoff(attempts: int, *, rand: Callable[[], float] = random.random) -> timedelta:
    """How long to wait after the `attempts`-th failed pass: exponential, with equal jitter."""
    return timedelta(seconds=EVENT_BACKOFF.delay(attempts - 1, rand=rand))


def claim_due(
    session: Session, *, now: datetime, limit: int = BATCH_SIZE, lease: timedelta = CLAIM_LEASE
) -> list[Claimed]:
    """Lock up to `limit` due, undelivered events and hold them for `lease`."""
    rows = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.delivered_at.is_(None), OutboxEvent.next_attempt_at <= now)
        .order_by(OutboxEvent.next_attempt_at)
        .limit(limit)
        # SKIP LOCKED: concurrent deliverers each take different rows instead of queueing.
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        row.next_attempt_at = now + lease
    return [Claimed(Event.from_row(row), frozenset(row.delivered_to)) for row in rows]


def record_attempt(
    session: Session,
    event_id: uuid.UUID,
    *,
    accepted: Collection[str],
    required: Collection[str],
    errors: Sequence[str],
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> bool:
    """Store which sinks accepted the event; True when every required sink now has it.

    The sinks already on the row are kept (another deliverer may have added some after a
    lease ran out), so a sink, once recorded, is never sent the event again.
    """
    row = session.get(OutboxEvent, event_id, with_for_update=True)
    if row is None or row.delivered_at is not None:
        return True
    row.delivered_to = sorted(set(row.delivered_to) | set(accepted))
    row.attempts += 1
    if set(required) <= set(row.delivered_to):
        row.delivered_at = now
        row.last_error = None
        return True
    row.next_attempt_at = now + backoff(row.attempts, rand=rand)
    row.last_error = redact_value("; ".join(errors))[:MAX_ERROR_CHARS] or "not delivered"
    return False


def deliver_pending(
    sessions: sessionmaker[Session],
    sinks: Iterable[Sink],
    *,
    now: datetime,
    limit: int = BATCH_SIZE,
    lease: timedelta = CLAIM_LEASE,
) -> DeliveryReport:
    """Claim one batch of due events and offer each to the log and every sink that lacks it."""
    everywhere: list[Sink] = [LogSink(), *(s for s in sinks if s.name != LOG_SINK_NAME)]
    required = [sink.name for sink in everywhere]
    with sessions() as session, session.begin():
        claimed = claim_due(session, now=now, limit=limit, lease=lease)
    delivered = 0
    for item in claimed:
        accepted, errors = _offer(item, everywhere)
        with sessions() as session, session.begin():
            done = record_attempt(
                session, item.event.id, accepted=accepted, required=required, errors=errors, now=now
            )
        delivered += done
        if not done:
            log.warning("events.delivery_failed", event_id=str(item.event.id), errors=errors)
    return DeliveryReport(len(claimed), delivered, len(claimed) - delivered)


def deliver_due(
    sessions: sessionmaker[Session],
    sinks: Sequence[Sink],
    *,
    now: Callable[[], datetime],
    limit: int = BATCH_SIZE,
    max_batches: int = MAX_BATCHES,
) -> DeliveryReport:
    """Deliver batch after batch until nothing is due (or `max_batches` ran)."""
    total = DeliveryReport()
    for _ in range(max_batches):
        report = deliver_pending(sessions, sinks, now=now(), limit=limit)
        total += report
        if report.claimed < limit:
            break
    return total


def _offer(item: Claimed, sinks: Sequence[Sink]) -> tuple[list[str], list[str]]:
    """Send one event to each sink not yet done; the names that accepted it, and the errors."""
    accepted: list[str] = []
    errors: list[str] = []
    for sink in sinks:
        if sink.name in item.delivered_to:
            continue
        try:
            sink.send(item.event)
        except DeliveryFailed as exc:
            errors.append(str(exc))
        else:
            accepted.append(sink.name)
    return accepted, errors
