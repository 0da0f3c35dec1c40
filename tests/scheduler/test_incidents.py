"""Provider incidents (SPEC §11): opened once, backing off dispatch, holding the auth clock
and QA out of the outage, closing by themselves; every rule on the injectable clock."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.incidents import FailureKind, IncidentRule, covers, failure_kind, open_incident
from models.lifecycle import AUTH_ESCALATION_AFTER
from models.notices import INCIDENT_CLOSED_EVENT, INCIDENT_OPENED_EVENT
from models.schema import Integration, OutboxEvent, ProviderIncident, SyncRun
from models.status import Provider, Status, SyncOutcome
from models.sync_runs import SyncResult, finish_run, start_run
from models.time_rules import escalate_auth_failures
from scheduler.dispatch import claim_due
from scheduler.incidents import IncidentChange, covered_providers, evaluate
from scheduler.providers import DEFAULT_POLICIES
from tests.conftest import IntegrationFactory, incident_row

Sessions = sessionmaker[Session]
STRIPE = DEFAULT_POLICIES[Provider.STRIPE]
RULE = IncidentRule(window=timedelta(hours=1), share=0.5, min_integrations=10, backoff=6.0)
AUTH_ERROR = "GET /v1/customers: 401 Unauthorized"


def _fleet(make_integration: IntegrationFactory, count: int, **fields: object) -> list[uuid.UUID]:
    return [make_integration(**fields).id for _ in range(count)]


def _ran(
    sessions: Sessions, integration_id: uuid.UUID, at: datetime, kind: FailureKind | None
) -> None:
    """A finished attempt: failed this way, or (kind None) succeeded."""
    with sessions() as session, session.begin():
        session.add(
            SyncRun(
                integration_id=integration_id,
                started_at=at,
                finished_at=at,
                outcome=SyncOutcome.SUCCEEDED.value if kind is None else "auth_failed",
                failure_kind=kind.value if kind else None,
            )
        )


def _evaluate(sessions: Sessions, clock: ManualClock) -> IncidentChange | None:
    with sessions() as session, session.begin():
        return evaluate(
            session, Provider.STRIPE, now=clock.now(), rule=RULE, interval=STRIPE.interval
        )


def _events(sessions: Sessions, kind: str) -> list[OutboxEvent]:
    with sessions() as session:
        return list(session.scalars(select(OutboxEvent).where(OutboxEvent.kind == kind)))


def _incident(sessions: Sessions) -> ProviderIncident | None:
    with sessions() as session:
        return open_incident(session, Provider.STRIPE)


@pytest.mark.parametrize(
    ("outcome", "error", "kind"),
    [
        (SyncOutcome.AUTH_FAILED, AUTH_ERROR, FailureKind.AUTH),
        (SyncOutcome.FAILED, "gave up after retries: GET /v1/x: 503 (gave up)", "transient"),
        (SyncOutcome.FAILED, "gave up after retries: GET /v1/x: ReadTimeout", "timeout"),
        (None, "transient: GET /v1/x: 502 Bad Gateway", "transient"),
        (None, "transient: GET /v1/x: 408 Request Timeout", "timeout"),
        (None, "transient: GET /v1/x: the request budget is spent for now", None),
        (SyncOutcome.FAILED, "GET /v1/x: malformed JSON", None),
        (SyncOutcome.SUCCEEDED, None, None),
    ],
)
def test_failures_are_classified_by_how_they_failed(
    outcome: SyncOutcome | None, error: str | None, kind: str | None
) -> None:
    found = failure_kind(outcome, error)
    assert (found.value if found else None) == kind


def test_half_of_ten_failing_the_same_way_opens_one_incident_with_its_counts(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _fleet(make_integration, 10)
    for n, integration_id in enumerate(fleet):
        _ran(sessions, integration_id, clock.now(), FailureKind.AUTH if n < 5 else None)

    opened = _evaluate(sessions, clock)
    again = _evaluate(sessions, clock)

    assert opened is not None and opened.opened and again is None
    incident = _incident(sessions)
    assert incident is not None
    assert (incident.kind, incident.integrations_seen, incident.integrations_failing) == (
        "auth",
        10,
        5,
    )
    assert incident.window_s == 3600 and incident.window_start == clock.now() - RULE.window
    [event] = _events(sessions, INCIDENT_OPENED_EVENT)
    assert event.integration_id is None and event.payload["provider"] == "stripe"


def test_below_the_share_or_below_the_minimum_no_incident_opens(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _fleet(make_integration, 10)
    for n, integration_id in enumerate(fleet):
        _ran(sessions, integration_id, clock.now(), FailureKind.AUTH if n < 4 else None)
    assert _evaluate(sessions, clock) is None  # 4 of 10

    few = _fleet(make_integration, 9, provider="shopify")
    for integration_id in few:
        _ran(sessions, integration_id, clock.now(), FailureKind.TIMEOUT)
    with sessions() as session:
        seen = evaluate(
            session, Provider.SHOPIFY, now=clock.now(), rule=RULE, interval=STRIPE.interval
        )
    assert seen is None  # 9 of 9, but fewer than 10 integrations


def test_only_each_integrations_latest_attempt_inside_the_window_counts(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _fleet(make_integration, 10)
    start = clock.now()
    # failures exactly at the window's start are outside it (the window is (now - 1h, now])
    for integration_id in fleet:
        _ran(sessions, integration_id, start, FailureKind.TRANSIENT)
    clock.advance(RULE.window)
    assert _evaluate(sessions, clock) is None

    # one second earlier they are inside it
    clock.set(start + RULE.window - timedelta(seconds=1))
    assert _evaluate(sessions, clock) is not None


def test_a_later_success_of_the_same_integration_outweighs_its_earlier_failure(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _fleet(make_integration, 10)
    for integration_id in fleet:
        _ran(sessions, integration_id, clock.now(), FailureKind.AUTH)
        _ran(sessions, integration_id, clock.now() + timedelta(seconds=1), None)
    clock.advance(timedelta(seconds=2))

    assert _evaluate(sessions, clock) is None


def _open_auth_incident(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> list[uuid.UUID]:
    fleet = _fleet(make_integration, 10)
    for integration_id in fleet:
        _ran(sessions, integration_id, clock.now(), FailureKind.AUTH)
    assert _evaluate(sessions, clock) is not None
    return fleet


def _sync(sessions: Sessions, integration_id: uuid.UUID, clock: ManualClock, result: SyncResult):  # type: ignore[no-untyped-def]
    with sessions() as session, session.begin():
        started = start_run(
            session, integration_id, task_id=None, now=clock.now(), lease=timedelta(minutes=5)
        )
    with sessions() as session, session.begin():
        finish_run(session, started.run_id, result, now=clock.now())  # type: ignore[union-attr]


def test_an_auth_failure_inside_the_incident_is_recorded_but_moves_nothing(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    _open_auth_incident(sessions, make_integration, clock)
    customer = make_integration()
    first_sync = make_integration()  # never synced: a failure would send it to QA

    _sync(sessions, customer.id, clock, SyncResult(SyncOutcome.AUTH_FAILED, error=AUTH_ERROR))
    _sync(sessions, first_sync.id, clock, SyncResult(SyncOutcome.AUTH_FAILED, error=AUTH_ERROR))

    with sessions() as session:
        for integration_id in (customer.id, first_sync.id):
            integration = session.get_one(Integration, integration_id)
            assert integration.status == Status.ACTIVE
            assert integration.auth_failing_since is None
            run = session.scalars(select(SyncRun).where(SyncRun.integration_id == integration_id))
            assert [(r.applied, r.failure_kind) for r in run] == [(False, "auth")]
        assert covers(session, Provider.STRIPE, FailureKind.AUTH)
        assert not covers(session, Provider.STRIPE, FailureKind.TIMEOUT)


def test_a_failure_of_another_kind_still_counts_during_the_incident(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    _open_auth_incident(sessions, make_integration, clock)
    customer = make_integration(first_sync_finished_at=clock.now())

    _sync(sessions, customer.id, clock, SyncResult(SyncOutcome.FAILED, error="malformed JSON"))

    with sessions() as session:
        assert session.get_one(Integration, customer.id).status == Status.SYNC_FAILING


def test_the_72_hour_clock_counts_the_time_before_and_after_the_incident_never_inside(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    # given a key genuinely failing for 1 hour before a 4-day auth incident
    revoked = make_integration(status=Status.AUTH_FAILING.value, auth_failing_since=clock.now())
    clock.advance(timedelta(hours=1))
    fleet = _open_auth_incident(sessions, make_integration, clock)
    for _ in range(4 * 24):
        clock.advance(timedelta(hours=1))
        for integration_id in fleet:
            _ran(sessions, integration_id, clock.now(), FailureKind.AUTH)
        _evaluate(sessions, clock)
    with sessions() as session, session.begin():
        assert escalate_auth_failures(session, now=clock.now()) == []  # 97 hours of wall time

    # when the provider recovers, the incident closes
    clock.advance(timedelta(minutes=1))
    for integration_id in fleet:
        _ran(sessions, integration_id, clock.now(), None)
    closed = _evaluate(sessions, clock)
    assert closed is not None and not closed.opened

    # then the clock has counted 1 hour: it expires 71 hours after the recovery, not before
    clock.advance(AUTH_ESCALATION_AFTER - timedelta(hours=1) - timedelta(seconds=1))
    with sessions() as session, session.begin():
        assert escalate_auth_failures(session, now=clock.now()) == []
    clock.advance(timedelta(seconds=1))
    with sessions() as session, session.begin():
        assert [c.integration_id for c in escalate_auth_failures(session, now=clock.now())] == [
            revoked.id
        ]


def test_the_incident_closes_by_itself_once_syncs_succeed_and_restores_the_schedule(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _open_auth_incident(sessions, make_integration, clock)
    with sessions() as session, session.begin():
        for integration_id in fleet:  # the backoff pushed them far out
            session.get_one(Integration, integration_id).next_sync_at = clock.now() + timedelta(
                days=1
            )
    clock.advance(timedelta(minutes=30))
    for n, integration_id in enumerate(fleet):  # 3 of 10 still failing: below half of half
        _ran(sessions, integration_id, clock.now(), FailureKind.AUTH if n < 2 else None)

    closed = _evaluate(sessions, clock)

    assert closed is not None and not closed.opened
    assert _incident(sessions) is None
    [event] = _events(sessions, INCIDENT_CLOSED_EVENT)
    assert event.payload["closedAt"] == clock.now().isoformat()
    with sessions() as session:
        due = [session.get_one(Integration, i).next_sync_at for i in fleet]
    assert all(clock.now() <= at <= clock.now() + STRIPE.interval for at in due)  # type: ignore[operator]
    assert len(set(due)) > 1  # spread, not all at once


def test_the_incident_stays_open_while_a_quarter_or_more_still_fail(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _open_auth_incident(sessions, make_integration, clock)
    clock.advance(timedelta(minutes=30))
    for n, integration_id in enumerate(fleet):
        _ran(sessions, integration_id, clock.now(), FailureKind.AUTH if n < 3 else None)

    assert _evaluate(sessions, clock) is None
    assert _incident(sessions) is not None


def test_a_backed_off_provider_with_few_recent_attempts_is_judged_on_its_latest_ones(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _open_auth_incident(sessions, make_integration, clock)
    clock.advance(timedelta(hours=5))  # the window holds nothing but...
    for integration_id in fleet[:3]:  # ...three successes
        _ran(sessions, integration_id, clock.now(), None)

    closed = _evaluate(sessions, clock)

    # the latest attempt of the 10 that ran last: 3 successes, 7 older auth failures
    assert closed is None
    for integration_id in fleet[3:8]:
        _ran(sessions, integration_id, clock.now(), None)
    assert _evaluate(sessions, clock) is not None


def test_dispatch_stretches_the_providers_interval_while_an_incident_is_open(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    _open_auth_incident(sessions, make_integration, clock)
    due = make_integration(next_sync_at=clock.now())
    other = make_integration(provider="paddle", next_sync_at=clock.now())

    with sessions() as session, session.begin():
        claim_due(session, STRIPE, now=clock.now())
        claim_due(session, DEFAULT_POLICIES[Provider.PADDLE], now=clock.now())

    with sessions() as session:
        assert session.get_one(Integration, due.id).next_sync_at == clock.now() + (
            STRIPE.interval * 6
        )
        paddle = DEFAULT_POLICIES[Provider.PADDLE].interval
        assert session.get_one(Integration, other.id).next_sync_at == clock.now() + paddle


def test_opening_spreads_the_providers_next_syncs_over_the_backed_off_interval(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _open_auth_incident(sessions, make_integration, clock)

    with sessions() as session:
        due = [session.get_one(Integration, i).next_sync_at for i in fleet]
    span = STRIPE.interval * RULE.backoff
    assert all(clock.now() <= at < clock.now() + span for at in due)  # type: ignore[operator]
    assert max(due) - min(due) > STRIPE.interval  # type: ignore[operator]


def test_an_integration_paused_since_its_last_failure_does_not_hold_the_incident_open(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    fleet = _open_auth_incident(sessions, make_integration, clock)
    with sessions() as session, session.begin():
        for integration_id in fleet[:4]:  # their keys expired: they stopped syncing
            session.get_one(Integration, integration_id).status = "credentials_invalid"
    clock.advance(timedelta(minutes=30))
    for integration_id in fleet[4:]:
        _ran(sessions, integration_id, clock.now(), None)

    closed = _evaluate(sessions, clock)

    assert closed is not None and not closed.opened


def test_an_old_open_incident_covers_its_provider_however_many_came_since(
    sessions: Sessions, clock: ManualClock
) -> None:
    # given stripe's incident, open for days, and forty of shopify's opened and closed since
    now = clock.now()
    grace = {Provider.STRIPE: timedelta(hours=12), Provider.SHOPIFY: timedelta(hours=12)}
    with sessions() as session, session.begin():
        session.add(incident_row(now - timedelta(days=4)))
        for hours in range(40):
            opened = now - timedelta(days=3) + timedelta(hours=hours)
            session.add(
                incident_row(opened, provider="shopify", closed_at=opened + timedelta(minutes=30))
            )

    # then stripe's lateness is still explained; shopify's grace ended hours ago
    with sessions() as session:
        assert covered_providers(session, now=now, grace=grace) == {Provider.STRIPE}
