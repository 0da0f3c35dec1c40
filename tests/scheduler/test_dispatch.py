"""Claim-and-dispatch (SPEC §5): what a provider tick claims, advances and publishes.

The rules run on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL; the
races between two ticks run on each backend's own locking (FOR UPDATE SKIP
LOCKED on PostgreSQL, BEGIN IMMEDIATE on SQLite).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.db import make_sessionmaker
from models.integrations import ensure_environment
from models.schema import Base, Integration
from models.status import Provider, Status
from scheduler.dispatch import TickReport, claim_due, dispatch_tick, release
from scheduler.providers import DEFAULT_POLICIES, ProviderPolicy

STRIPE = DEFAULT_POLICIES[Provider.STRIPE]
PADDLE = DEFAULT_POLICIES[Provider.PADDLE]
ENVIRONMENT = "env-production"

Sessions = sessionmaker[Session]
DueFactory = Callable[..., list[uuid.UUID]]


class BrokerDown(Exception):
    """Raised by `RecordingPublisher` when told to refuse a batch."""


class RecordingPublisher:
    """A Publisher that keeps every batch it was handed; refuses the `fail_on`th call."""

    def __init__(self, *, fail_on: int | None = None) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.batches: list[tuple[str, list[uuid.UUID]]] = []

    def publish(self, policy: ProviderPolicy, integration_ids: Sequence[uuid.UUID]) -> None:
        self.calls += 1
        if self.calls == self.fail_on:
            raise BrokerDown(f"broker refused batch {self.calls}")
        self.batches.append((policy.queue, list(integration_ids)))

    @property
    def ids(self) -> list[uuid.UUID]:
        return [integration_id for _, batch in self.batches for integration_id in batch]

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for _, batch in self.batches]


def due_factory(sessions: Sessions, clock: ManualClock) -> DueFactory:
    """Bulk-insert `count` integrations in one statement; returns their ids in insert order."""

    def create(
        count: int,
        *,
        provider: str = "stripe",
        status: str = "active",
        next_sync_at: datetime | None = None,
        unscheduled: bool = False,
        sync_interval_seconds: int | None = None,
    ) -> list[uuid.UUID]:
        """Due now unless `next_sync_at` says otherwise; `unscheduled`: no next sync at all."""
        now = clock.now()
        due = None if unscheduled else (next_sync_at or now)
        ids = [uuid.uuid4() for _ in range(count)]
        rows: list[dict[str, Any]] = [
            {
                "id": integration_id,
                "organization_id": "org-1",
                "environment_id": ENVIRONMENT,
                "name": "Bulk",
                "identifier": f"bulk-{integration_id.hex}",
                "provider": provider,
                "status": status,
                "filters": {"objects": ["customers"]},
                "sync_interval_seconds": sync_interval_seconds,
                "next_sync_at": due,
                "status_changed_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for integration_id in ids
        ]
        with sessions() as session, session.begin():
            ensure_environment(
                session, ENVIRONMENT, organization_id="org-1", name="production", kind="production"
            )
            if rows:
                session.execute(insert(Integration), rows)
        return ids

    return create


@pytest.fixture
def make_due(sessions: Sessions, clock: ManualClock) -> DueFactory:
    return due_factory(sessions, clock)


def next_sync_of(sessions: Sessions, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, datetime | None]:
    with sessions() as session:
        rows = session.execute(
            select(Integration.id, Integration.next_sync_at).where(Integration.id.in_(ids))
        )
        return {integration_id: due for integration_id, due in rows}


def claim(sessions: Sessions, policy: ProviderPolicy, now: datetime, limit: int) -> list[uuid.UUID]:
    with sessions() as session, session.begin():
        return claim_due(session, policy, now=now, limit=limit).integration_ids


# --- claim_due ---------------------------------------------------------------------------


def test_claim_takes_only_syncing_statuses(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    # given: one due integration in each of the nine statuses
    by_status = {status: make_due(1, status=status.value)[0] for status in Status}

    # when
    claimed = claim(sessions, STRIPE, clock.now(), 100)

    # then
    syncing = {Status.ACTIVE, Status.SYNC_WARNINGS, Status.SYNC_FAILING, Status.AUTH_FAILING}
    assert set(claimed) == {by_status[status] for status in syncing}


def test_claim_takes_only_integrations_due_by_now(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    now = clock.now()
    overdue = make_due(1, next_sync_at=now - timedelta(hours=1))
    due_now = make_due(1, next_sync_at=now)
    make_due(1, next_sync_at=now + timedelta(seconds=1))
    make_due(1, unscheduled=True)

    assert set(claim(sessions, STRIPE, now, 100)) == {*overdue, *due_now}


def test_claim_takes_only_its_own_providers_integrations(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    stripe = make_due(3, provider="stripe")
    paddle = make_due(2, provider="paddle")

    assert set(claim(sessions, STRIPE, clock.now(), 100)) == set(stripe)
    assert set(claim(sessions, PADDLE, clock.now(), 100)) == set(paddle)


def test_claim_takes_the_longest_waiting_first_in_batches_of_the_limit(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    # given: five integrations that fell due a minute apart, inserted newest first
    now = clock.now()
    newest_first = [
        make_due(1, next_sync_at=now - timedelta(minutes=minutes))[0] for minutes in range(1, 6)
    ]
    oldest_first = newest_first[::-1]

    # when: three claims of two
    batches = [claim(sessions, STRIPE, now, 2) for _ in range(3)]

    # then
    assert batches == [oldest_first[0:2], oldest_first[2:4], oldest_first[4:5]]
    assert claim(sessions, STRIPE, now, 2) == []


def test_claim_reports_the_lag_of_the_longest_waiting(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    now = clock.now()
    make_due(1, next_sync_at=now - timedelta(seconds=90))
    make_due(1, next_sync_at=now - timedelta(seconds=10))

    with sessions() as session, session.begin():
        assert claim_due(session, STRIPE, now=now).max_lag_s == 90.0


def test_claim_advances_next_sync_by_the_provider_interval(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    ids = make_due(3, next_sync_at=clock.now() - timedelta(hours=2))

    claim(sessions, STRIPE, clock.now(), 100)

    expected = clock.now() + STRIPE.interval
    assert next_sync_of(sessions, ids) == dict.fromkeys(ids, expected)


def test_claim_advances_next_sync_by_the_integrations_own_interval(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    own = make_due(2, sync_interval_seconds=3600)
    default = make_due(1)
    short = make_due(1, sync_interval_seconds=120)

    claim(sessions, STRIPE, clock.now(), 100)

    now = clock.now()
    assert next_sync_of(sessions, [*own, *default, *short]) == {
        **dict.fromkeys(own, now + timedelta(hours=1)),
        **dict.fromkeys(default, now + STRIPE.interval),
        **dict.fromkeys(short, now + timedelta(minutes=2)),
    }


def test_claimed_integrations_are_not_due_again_until_their_interval_passes(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    ids = make_due(2)
    claim(sessions, STRIPE, clock.now(), 100)

    clock.advance(STRIPE.interval - timedelta(seconds=1))
    assert claim(sessions, STRIPE, clock.now(), 100) == []
    clock.advance(timedelta(seconds=1))
    assert set(claim(sessions, STRIPE, clock.now(), 100)) == set(ids)


def test_release_makes_claimed_integrations_due_at_once(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    ids = make_due(2)
    claimed = claim(sessions, STRIPE, clock.now(), 100)

    with sessions() as session, session.begin():
        release(session, claimed, now=clock.now())

    assert next_sync_of(sessions, ids) == dict.fromkeys(ids, clock.now())


def test_release_leaves_an_integration_that_stopped_syncing_alone(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    # given: claimed, then paused before the claim is handed back
    [integration_id] = make_due(1)
    claim(sessions, STRIPE, clock.now(), 100)
    with sessions() as session, session.begin():
        paused = session.get_one(Integration, integration_id)
        paused.status, paused.next_sync_at = Status.INACTIVE.value, None

    with sessions() as session, session.begin():
        release(session, [integration_id], now=clock.now())

    assert next_sync_of(sessions, [integration_id]) == {integration_id: None}


# --- dispatch_tick ------------------------------------------------------------------------


def test_tick_with_nothing_due_publishes_nothing(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    make_due(3, next_sync_at=clock.now() + timedelta(minutes=1))
    make_due(3, status="inactive")
    publisher = RecordingPublisher()

    report = dispatch_tick(sessions, publisher, STRIPE, now=clock.now)

    assert publisher.calls == 0
    assert report == TickReport(Provider.STRIPE, dispatched=0, batches=0, max_lag_s=0.0)


def test_tick_publishes_exactly_the_due_ids_on_the_providers_queue(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    due = make_due(5)
    make_due(2, provider="paddle")
    make_due(2, status="quality_assurance")
    make_due(2, next_sync_at=clock.now() + timedelta(hours=1))
    publisher = RecordingPublisher()

    report = dispatch_tick(sessions, publisher, STRIPE, now=clock.now)

    assert sorted(publisher.ids) == sorted(due)
    assert {queue for queue, _ in publisher.batches} == {"sync.stripe"}
    assert (report.dispatched, report.batches) == (5, 1)


def test_tick_claims_batch_after_batch_until_one_comes_back_short(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    due = make_due(7)
    publisher = RecordingPublisher()

    report = dispatch_tick(sessions, publisher, STRIPE, now=clock.now, batch_size=3)

    assert publisher.sizes == [3, 3, 1]
    assert sorted(publisher.ids) == sorted(due)
    assert (report.dispatched, report.batches) == (7, 3)


def test_tick_stops_at_an_empty_batch_when_the_due_fill_whole_batches(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    make_due(6)
    publisher = RecordingPublisher()

    report = dispatch_tick(sessions, publisher, STRIPE, now=clock.now, batch_size=3)

    assert publisher.sizes == [3, 3]
    assert (report.dispatched, report.batches) == (6, 2)


def test_tick_never_dispatches_more_than_max_per_tick(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    # given: ten due, a cap of five that is not a multiple of the batch size
    due = make_due(10)
    publisher = RecordingPublisher()

    report = dispatch_tick(sessions, publisher, STRIPE, now=clock.now, batch_size=3, max_per_tick=5)

    # then: the rest waits, still due, for the next tick
    assert report.dispatched == 5
    assert len(publisher.ids) == 5
    left = dispatch_tick(sessions, RecordingPublisher(), STRIPE, now=clock.now, batch_size=3)
    assert left.dispatched == 5
    assert len(set(publisher.ids) | set(due)) == 10


def test_refused_publish_hands_the_claim_back_and_propagates(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    # given: five due one minute apart; the broker takes the first batch, refuses the second
    now = clock.now()
    ids = [make_due(1, next_sync_at=now - timedelta(minutes=5 - n))[0] for n in range(5)]
    publisher = RecordingPublisher(fail_on=2)

    # when
    with pytest.raises(BrokerDown, match="broker refused batch 2"):
        dispatch_tick(sessions, publisher, STRIPE, now=clock.now, batch_size=2)

    # then: the published batch stays advanced, the refused one is due now, the rest untouched
    assert publisher.ids == ids[:2]
    assert next_sync_of(sessions, ids) == {
        ids[0]: now + STRIPE.interval,
        ids[1]: now + STRIPE.interval,
        ids[2]: now,
        ids[3]: now,
        ids[4]: now - timedelta(minutes=1),
    }
    retry = RecordingPublisher()
    dispatch_tick(sessions, retry, STRIPE, now=clock.now)
    assert sorted(retry.ids) == sorted(ids[2:])


def test_tick_reports_the_largest_lag_of_its_batches(
    sessions: Sessions, make_due: DueFactory, clock: ManualClock
) -> None:
    now = clock.now()
    make_due(2, next_sync_at=now - timedelta(minutes=3))
    make_due(3, next_sync_at=now - timedelta(seconds=5))

    report = dispatch_tick(sessions, RecordingPublisher(), STRIPE, now=clock.now, batch_size=2)

    assert report.max_lag_s == 180.0


# --- two ticks at once ----------------------------------------------------------------------


def race(
    sessions: Sessions, clock: ManualClock, *, ticks: int, batch_size: int
) -> list[set[uuid.UUID]]:
    """Run `ticks` dispatch ticks at the same moment, one thread each; what each published."""
    barrier = threading.Barrier(ticks)

    def tick() -> list[uuid.UUID]:
        publisher = RecordingPublisher()
        barrier.wait()
        dispatch_tick(sessions, publisher, STRIPE, now=clock.now, batch_size=batch_size)
        return publisher.ids

    with ThreadPoolExecutor(max_workers=ticks) as pool:
        futures = [pool.submit(tick) for _ in range(ticks)]
        published = [future.result(timeout=60) for future in futures]
    for ids in published:
        assert len(ids) == len(set(ids)), "one tick published an integration twice"
    return [set(ids) for ids in published]


def assert_each_dispatched_once(published: list[set[uuid.UUID]], due: list[uuid.UUID]) -> None:
    first, second = published
    assert first | second == set(due)
    assert first & second == set()
    assert len(first) + len(second) == len(due)


@pytest.fixture
def pg_sessions(pg_engine: Engine) -> Sessions:
    return make_sessionmaker(pg_engine)


@pytest.mark.postgres
@pytest.mark.parametrize("batch_size", [1000, 50], ids=["large-batches", "small-batches"])
def test_concurrent_ticks_on_postgres_dispatch_each_integration_once(
    pg_sessions: Sessions, clock: ManualClock, batch_size: int
) -> None:
    # given: 3,000 due integrations
    due = due_factory(pg_sessions, clock)(3000)

    # when: two ticks claim at the same moment
    published = race(pg_sessions, clock, ticks=2, batch_size=batch_size)

    # then
    assert_each_dispatched_once(published, due)


@pytest.fixture
def sqlite_sessions(sqlite_engine: Engine) -> Iterator[Sessions]:
    yield make_sessionmaker(sqlite_engine)
    with sqlite_engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


def test_concurrent_ticks_on_sqlite_never_claim_the_same_integration(
    sqlite_sessions: Sessions, clock: ManualClock
) -> None:
    due = due_factory(sqlite_sessions, clock)(600)

    published = race(sqlite_sessions, clock, ticks=2, batch_size=25)

    assert_each_dispatched_once(published, due)
