"""Lateness (SPEC §11): a flag from time, beside the status, announced once per change."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.errors import InvalidValue
from models.health import Lateness, LatenessRule, late_at, lateness_of, sweep_lateness
from models.notices import LATE_EVENT, ON_TIME_EVENT
from models.schema import Integration, OutboxEvent
from models.status import Provider, Status
from scheduler.providers import DEFAULT_POLICIES
from tests.conftest import IntegrationFactory

RULE = LatenessRule()
INTERVAL = DEFAULT_POLICIES[Provider.STRIPE].interval  # 15 minutes
INTERVALS = {provider: policy.interval for provider, policy in DEFAULT_POLICIES.items()}


def _flag(integration: Integration, clock: ManualClock) -> Lateness:
    return lateness_of(integration, INTERVAL, now=clock.now(), rule=RULE)


def test_exactly_twice_the_interval_is_still_on_time(
    make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(last_success_at=clock.now())

    clock.advance(INTERVAL * 2)
    assert _flag(integration, clock) is Lateness.ON_TIME
    clock.advance(timedelta(microseconds=1))
    assert _flag(integration, clock) is Lateness.LATE


def test_overdue_past_five_intervals_and_not_at_exactly_five(
    make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(last_success_at=clock.now())

    clock.advance(INTERVAL * 5)
    assert _flag(integration, clock) is Lateness.LATE
    clock.advance(timedelta(seconds=1))
    assert _flag(integration, clock) is Lateness.OVERDUE


def test_lateness_is_a_flag_whatever_the_status_says(
    make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    # given an integration whose last results were good, but long ago
    integration = make_integration(last_success_at=clock.now())
    clock.advance(INTERVAL * 3)

    # then it is late, and still `active`
    assert integration.status == Status.ACTIVE
    assert _flag(integration, clock) is Lateness.LATE


@pytest.mark.parametrize("status", [Status.SETUP, Status.INACTIVE, Status.DELETED])
def test_an_integration_nobody_expects_data_from_is_never_late(
    make_integration: IntegrationFactory, clock: ManualClock, status: Status
) -> None:
    integration = make_integration(status=status.value, last_success_at=clock.now())
    clock.advance(INTERVAL * 100)

    assert _flag(integration, clock) is Lateness.ON_TIME


def test_a_never_synced_integration_counts_from_creation_and_a_reactivation_restarts(
    make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration()
    assert late_at(integration, INTERVAL, rule=RULE) == clock.now() + INTERVAL * 2

    clock.advance(INTERVAL * 3)
    assert _flag(integration, clock) is Lateness.LATE
    integration.reactivated_at = clock.now()
    assert _flag(integration, clock) is Lateness.ON_TIME


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(InvalidValue, match="late"):
        LatenessRule(late_after=5, overdue_after=2)


def _events(sessions: sessionmaker[Session], kind: str) -> list[OutboxEvent]:
    with sessions() as session:
        return list(session.scalars(select(OutboxEvent).where(OutboxEvent.kind == kind)))


def _sweep(sessions: sessionmaker[Session], clock: ManualClock, **kwargs: object) -> object:
    with sessions() as session, session.begin():
        return sweep_lateness(
            session,
            now=clock.now(),
            rule=RULE,
            intervals=INTERVALS,
            **kwargs,  # type: ignore[arg-type]
        )


def test_the_sweep_announces_late_once_and_on_time_when_it_recovers(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(last_success_at=clock.now())

    clock.advance(INTERVAL * 2)
    _sweep(sessions, clock)
    assert _events(sessions, LATE_EVENT) == []  # exactly 2x: on time

    clock.advance(timedelta(seconds=1))
    _sweep(sessions, clock)
    clock.advance(INTERVAL * 4)  # now overdue: recorded, not announced again
    _sweep(sessions, clock)
    late = _events(sessions, LATE_EVENT)
    assert len(late) == 1
    assert late[0].payload["integrationId"] == str(integration.id)
    with sessions() as session:
        assert session.get_one(Integration, integration.id).lateness == Lateness.OVERDUE

    with sessions() as session, session.begin():
        session.get_one(Integration, integration.id).last_success_at = clock.now()
    _sweep(sessions, clock)
    _sweep(sessions, clock)
    assert len(_events(sessions, ON_TIME_EVENT)) == 1


def test_the_sweep_counts_lateness_per_provider(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    make_integration(last_success_at=clock.now())
    make_integration(last_success_at=clock.now() - INTERVAL * 3)
    make_integration(provider="shopify", last_success_at=clock.now() - INTERVAL * 6)

    report = _sweep(sessions, clock)

    assert report.counts == {  # type: ignore[attr-defined]
        (Provider.STRIPE, Lateness.ON_TIME): 1,
        (Provider.STRIPE, Lateness.LATE): 1,
        (Provider.SHOPIFY, Lateness.OVERDUE): 1,
    }


def test_a_provider_under_an_incident_is_flagged_but_not_announced(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(last_success_at=clock.now() - INTERVAL * 3)

    report = _sweep(sessions, clock, covered={Provider.STRIPE})

    assert report.counts[(Provider.STRIPE, Lateness.LATE)] == 1  # type: ignore[attr-defined]
    assert _events(sessions, LATE_EVENT) == []
    # once the incident no longer covers it, it is announced
    _sweep(sessions, clock)
    assert [e.integration_id for e in _events(sessions, LATE_EVENT)] == [integration.id]
