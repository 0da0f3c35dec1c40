"""Status changes as stored: audit and outbox rows, time rules through the sweeps, sync runs.

Every test runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from models.changes import STATUS_CHANGED_EVENT, Change, apply_trigger
from models.clock import ManualClock
from models.db import lock_integration
from models.errors import DuplicateIntegration, InvalidValue, TransitionNotAllowed
from models.integrations import (
    NewIntegration,
    configure_filters,
    create_integration,
    deactivate,
    delete,
    reactivate,
    record_api_request,
    resolve_qa,
    set_credentials,
)
from models.records import store_page
from models.schema import Integration, OutboxEvent, StatusChange, SyncCursor, SyncedRecord, SyncRun
from models.status import Status, SyncOutcome, Trigger
from models.sync_runs import (
    REAPED_ERROR,
    RunStart,
    Skipped,
    SyncResult,
    finish_run,
    reap_abandoned,
    start_run,
)
from models.time_rules import (
    AUTH_ESCALATION_REASON,
    DEV_INACTIVITY_REASON,
    deactivate_idle_development,
    escalate_auth_failures,
)
from tests.conftest import IntegrationFactory

LEASE = timedelta(minutes=30)
OPERATOR = "operator-7"

Sessions = sessionmaker[Session]


@dataclass(frozen=True)
class Syncs:
    """Starts and finishes sync runs at the clock's current time, each in its own transaction."""

    sessions: Sessions
    clock: ManualClock

    def start(self, integration_id: uuid.UUID) -> uuid.UUID:
        with self.sessions() as session, session.begin():
            started = start_run(
                session, integration_id, task_id=uuid.uuid4().hex, now=self.clock.now(), lease=LEASE
            )
        assert isinstance(started, RunStart), started
        return started.run_id

    def finish(self, run_id: uuid.UUID, outcome: SyncOutcome, **report: Any) -> Change | None:
        with self.sessions() as session, session.begin():
            return finish_run(session, run_id, SyncResult(outcome, **report), now=self.clock.now())

    def run(self, integration_id: uuid.UUID, outcome: SyncOutcome) -> uuid.UUID:
        run_id = self.start(integration_id)
        self.finish(run_id, outcome)
        return run_id


@pytest.fixture
def syncs(sessions: Sessions, clock: ManualClock) -> Syncs:
    return Syncs(sessions, clock)


def load(sessions: Sessions, integration_id: uuid.UUID) -> Integration:
    with sessions() as session:
        return session.get_one(Integration, integration_id)


def load_run(sessions: Sessions, run_id: uuid.UUID) -> SyncRun:
    with sessions() as session:
        return session.get_one(SyncRun, run_id)


def history(sessions: Sessions, integration_id: uuid.UUID) -> list[StatusChange]:
    with sessions() as session:
        return list(
            session.scalars(
                select(StatusChange)
                .where(StatusChange.integration_id == integration_id)
                .order_by(StatusChange.id)
            )
        )


def outbox(sessions: Sessions, integration_id: uuid.UUID) -> list[OutboxEvent]:
    """An integration's events, oldest first (tests that read the order move the clock)."""
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.integration_id == integration_id)
                .order_by(OutboxEvent.created_at)
            )
        )


def path(sessions: Sessions, integration_id: uuid.UUID) -> list[tuple[str | None, str, str]]:
    return [(c.from_status, c.to_status, c.trigger) for c in history(sessions, integration_id)]


# The audit trail and the outbox.


def test_creation_writes_one_audit_row_and_one_outbox_event(
    sessions: Sessions, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    assert path(sessions, integration.id) == [(None, "active", "created")]
    [event] = outbox(sessions, integration.id)
    assert event.kind == STATUS_CHANGED_EVENT
    assert event.payload["fromStatus"] is None
    assert event.payload["toStatus"] == "active"


def test_every_status_change_writes_one_audit_row_and_one_outbox_event(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given
    integration = make_integration()
    clock.advance(timedelta(hours=1))
    # when
    with sessions() as session, session.begin():
        change = deactivate(session, integration.id, now=clock.now(), actor=OPERATOR)
    # then
    assert (change.from_status, change.to_status) == (Status.ACTIVE, Status.INACTIVE)
    *_, row = history(sessions, integration.id)
    assert (row.from_status, row.to_status, row.trigger) == ("active", "inactive", "deactivate")
    assert (row.actor, row.at) == (OPERATOR, clock.now())
    assert len(history(sessions, integration.id)) == 2
    events = outbox(sessions, integration.id)
    assert len(events) == 2
    payload = events[-1].payload
    assert payload["integrationId"] == str(integration.id)
    assert (payload["fromStatus"], payload["toStatus"]) == ("active", "inactive")
    assert (payload["trigger"], payload["actor"]) == ("deactivate", OPERATOR)
    stored = load(sessions, integration.id)
    assert stored.status_changed_at == clock.now()


def test_status_change_audit_and_outbox_commit_together_or_not_at_all(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given
    integration = make_integration()
    clock.advance(timedelta(hours=1))
    # when the transaction fails after the change was applied and flushed
    with pytest.raises(IntegrityError), sessions() as session, session.begin():
        locked = lock_integration(session, integration.id)
        change = apply_trigger(session, locked, Trigger.DEACTIVATE, now=clock.now(), actor="u1")
        assert change is not None
        session.flush()
        session.add(  # a run of an integration that does not exist: a foreign-key violation
            SyncRun(integration_id=uuid.uuid4(), started_at=clock.now())
        )
        session.flush()
    # then neither the status, nor the audit row, nor the outbox event was written
    stored = load(sessions, integration.id)
    assert stored.status == "active"
    assert stored.updated_at == integration.updated_at
    assert path(sessions, integration.id) == [(None, "active", "created")]
    assert len(outbox(sessions, integration.id)) == 1


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("active", "resolve_qa"),
        ("active", "reactivate"),
        ("inactive", "deactivate"),
        ("setup", "resolve_qa"),
        ("deleted", "set_credentials"),
        ("deleted", "configure_filters"),
        ("deleted", "delete"),
    ],
)
def test_trigger_that_does_not_apply_raises_and_changes_nothing(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    status: str,
    action: str,
) -> None:
    # given
    integration = make_integration(status=status)
    before = load(sessions, integration.id)
    clock.advance(timedelta(hours=1))
    # when the error is caught and the transaction commits anyway
    with sessions() as session, session.begin(), pytest.raises(TransitionNotAllowed) as raised:
        operator_action(session, action, integration.id, now=clock.now())
    # then the message names the integration, its status and the trigger, and nothing changed
    message = str(raised.value)
    assert str(integration.id) in message
    assert status in message
    assert raised.value.trigger in message
    after = load(sessions, integration.id)
    assert (after.status, after.updated_at) == (status, before.updated_at)
    assert after.credentials_encrypted == before.credentials_encrypted
    assert after.filters == before.filters
    assert after.qa_passed_at is None
    assert len(history(sessions, integration.id)) == 1
    assert len(outbox(sessions, integration.id)) == 1


def operator_action(session: Session, action: str, integration_id: uuid.UUID, **kw: Any) -> Any:
    if action == "set_credentials":
        return set_credentials(session, integration_id, "new-sealed", **kw)
    if action == "configure_filters":
        return configure_filters(session, integration_id, {"objects": ["orders"]}, **kw)
    functions = {
        "resolve_qa": resolve_qa,
        "deactivate": deactivate,
        "reactivate": reactivate,
        "delete": delete,
    }
    return functions[action](session, integration_id, actor=OPERATOR, **kw)


# Sync runs and their results.


def test_finish_run_is_idempotent_on_redelivery(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
) -> None:
    # given a run finished once
    integration = make_integration()
    run_id = syncs.start(integration.id)
    first = syncs.finish(run_id, SyncOutcome.SUCCEEDED)
    clock.advance(timedelta(minutes=5))
    # when the same result is delivered again, even with another outcome
    again = syncs.finish(run_id, SyncOutcome.AUTH_FAILED, error="401")
    # then the second delivery changes nothing
    assert first is not None
    assert again is None
    run = load_run(sessions, run_id)
    assert (run.outcome, run.error, run.applied) == ("succeeded", None, True)
    assert run.finished_at == clock.now() - timedelta(minutes=5)
    assert load(sessions, integration.id).status == "active"
    assert len(history(sessions, integration.id)) == 1


@pytest.mark.parametrize("action", ["deactivate", "delete"])
def test_late_result_is_recorded_but_never_changes_status(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
    action: str,
) -> None:
    # given a sync running while the integration is paused or deleted
    final = {"deactivate": "inactive", "delete": "deleted"}[action]
    integration = make_integration()
    run_id = syncs.start(integration.id)
    clock.advance(timedelta(minutes=1))
    with sessions() as session, session.begin():
        operator_action(session, action, integration.id, now=clock.now())
    audit_rows = len(history(sessions, integration.id))
    # when its result arrives
    clock.advance(timedelta(minutes=1))
    change = syncs.finish(run_id, SyncOutcome.SUCCEEDED)
    # then the run is recorded, not applied, and the status stays
    assert change is None
    run = load_run(sessions, run_id)
    assert run.finished_at == clock.now()
    assert (run.outcome, run.applied, run.status_after) == ("succeeded", False, final)
    stored = load(sessions, integration.id)
    assert (stored.status, stored.next_sync_at) == (final, None)
    assert len(history(sessions, integration.id)) == audit_rows


@pytest.mark.parametrize(
    "pause", ["credentials_expire_then_rekeyed", "deactivated_then_reactivated"]
)
def test_result_of_a_run_that_outlived_a_pause_is_late_even_after_resumption(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
    pause: str,
) -> None:
    # given a run started while syncing, its lease still held by a live worker
    integration = make_integration()
    if pause == "credentials_expire_then_rekeyed":
        syncs.run(integration.id, SyncOutcome.AUTH_FAILED)
        clock.advance(timedelta(hours=72) - timedelta(minutes=1))
    run_id = syncs.start(integration.id)
    # when the integration is paused while the run works, then resumed
    clock.advance(timedelta(minutes=1))
    with sessions() as session, session.begin():
        if pause == "credentials_expire_then_rekeyed":
            assert escalate_auth_failures(session, now=clock.now())
        else:
            deactivate(session, integration.id, now=clock.now(), actor=OPERATOR)
    clock.advance(timedelta(minutes=1))
    with sessions() as session, session.begin():
        if pause == "credentials_expire_then_rekeyed":
            set_credentials(session, integration.id, "fixed-sealed", now=clock.now(), actor="u1")
        else:
            reactivate(session, integration.id, now=clock.now(), actor=OPERATOR)
    assert load(sessions, integration.id).status == "active"
    # and the old run's result (made with the old credentials, or across the pause) arrives
    clock.advance(timedelta(minutes=1))
    syncs.finish(run_id, SyncOutcome.AUTH_FAILED)
    # then it is recorded as late and the resumed integration stays active
    assert load_run(sessions, run_id).applied is False
    assert load(sessions, integration.id).status == "active"


def test_no_sync_starts_for_a_paused_integration(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    with sessions() as session, session.begin():
        deactivate(session, integration.id, now=clock.now(), actor=OPERATOR)
    with sessions() as session, session.begin():
        skipped = start_run(session, integration.id, task_id="t-1", now=clock.now(), lease=LEASE)
    assert isinstance(skipped, Skipped)
    assert "inactive" in skipped.reason


@pytest.mark.parametrize("outcome", [SyncOutcome.FAILED, SyncOutcome.SUCCEEDED_WITH_WARNINGS])
def test_first_sync_that_fails_or_warns_goes_to_quality_assurance(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
    outcome: SyncOutcome,
) -> None:
    integration = make_integration()
    clock.advance(timedelta(minutes=5))
    run_id = syncs.run(integration.id, outcome)
    stored = load(sessions, integration.id)
    assert stored.status == "quality_assurance"
    assert stored.next_sync_at is None  # no syncs until an operator resolves it
    assert stored.first_sync_finished_at is not None
    assert load_run(sessions, run_id).first_sync
    *_, row = history(sessions, integration.id)
    assert (row.to_status, row.trigger, row.sync_run_id) == (
        "quality_assurance",
        f"sync_{outcome.value}",
        run_id,
    )
    assert outbox(sessions, integration.id)[-1].payload["toStatus"] == "quality_assurance"


def test_first_sync_that_succeeds_stays_active(
    sessions: Sessions, make_integration: IntegrationFactory, syncs: Syncs
) -> None:
    integration = make_integration()
    syncs.run(integration.id, SyncOutcome.SUCCEEDED)
    stored = load(sessions, integration.id)
    assert stored.status == "active"
    assert stored.first_sync_finished_at is not None
    assert len(history(sessions, integration.id)) == 1


def test_later_sync_that_fails_does_not_go_to_quality_assurance(
    sessions: Sessions, make_integration: IntegrationFactory, syncs: Syncs
) -> None:
    integration = make_integration()
    syncs.run(integration.id, SyncOutcome.SUCCEEDED)
    second = syncs.run(integration.id, SyncOutcome.FAILED)
    assert load(sessions, integration.id).status == "sync_failing"
    assert not load_run(sessions, second).first_sync


def test_first_sync_that_fails_on_auth_does_not_count_as_the_first_sync(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory, syncs: Syncs
) -> None:
    # given a first attempt that failed on authentication
    integration = make_integration()
    syncs.run(integration.id, SyncOutcome.AUTH_FAILED)
    stored = load(sessions, integration.id)
    assert (stored.status, stored.first_sync_finished_at) == ("auth_failing", None)
    # when the credentials are fixed and the next sync fails
    clock.advance(timedelta(hours=1))
    with sessions() as session, session.begin():
        set_credentials(session, integration.id, "new-sealed", now=clock.now(), actor=OPERATOR)
    clock.advance(timedelta(minutes=1))
    second = syncs.run(integration.id, SyncOutcome.FAILED)
    # then that one was the first sync, and goes to QA
    assert load_run(sessions, second).first_sync
    assert load(sessions, integration.id).status == "quality_assurance"


def test_resolve_qa_activates_and_queues_a_sync_at_once(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory, syncs: Syncs
) -> None:
    integration = make_integration()
    syncs.run(integration.id, SyncOutcome.FAILED)
    clock.advance(timedelta(hours=3))
    with sessions() as session, session.begin():
        change = resolve_qa(session, integration.id, now=clock.now(), actor=OPERATOR)
    assert change.sync_now
    stored = load(sessions, integration.id)
    assert (stored.status, stored.next_sync_at, stored.qa_passed_at) == (
        "active",
        clock.now(),
        clock.now(),
    )
    assert history(sessions, integration.id)[-1].actor == OPERATOR


# The time rules, through the sweeps and through finish_run.

# Just before and exactly at the three-day auth rule, with the status expected after.
AUTH_BOUNDARIES = [
    (timedelta(hours=71, minutes=59, seconds=59), "auth_failing"),
    (timedelta(hours=72), "credentials_invalid"),
]


@pytest.mark.parametrize("boundary", AUTH_BOUNDARIES, ids=["71h59m59s", "72h"])
def test_auth_failing_becomes_invalid_after_72h_in_the_sweep(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
    boundary: tuple[timedelta, str],
) -> None:
    elapsed, expected = boundary
    # given an integration whose syncs stopped after an auth failure
    integration = make_integration()
    syncs.run(integration.id, SyncOutcome.AUTH_FAILED)
    failing_since = clock.now()
    assert load(sessions, integration.id).auth_failing_since == failing_since
    # when the sweep runs
    clock.advance(elapsed)
    with sessions() as session, session.begin():
        changes = escalate_auth_failures(session, now=clock.now())
    # then
    stored = load(sessions, integration.id)
    assert stored.status == expected
    if expected == "credentials_invalid":
        assert [c.integration_id for c in changes] == [integration.id]
        assert (stored.auth_failing_since, stored.next_sync_at) == (None, None)
        row = history(sessions, integration.id)[-1]
        assert (row.trigger, row.reason) == ("expire_credentials", AUTH_ESCALATION_REASON)
    else:
        assert changes == []
        assert stored.auth_failing_since == failing_since


@pytest.mark.parametrize("boundary", AUTH_BOUNDARIES, ids=["71h59m59s", "72h"])
def test_auth_failed_result_after_72h_escalates_at_once(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
    boundary: tuple[timedelta, str],
) -> None:
    elapsed, expected = boundary
    # given
    integration = make_integration()
    syncs.run(integration.id, SyncOutcome.AUTH_FAILED)
    # when another auth failure arrives
    clock.advance(elapsed)
    run_id = syncs.run(integration.id, SyncOutcome.AUTH_FAILED)
    # then the three-day rule runs with the result, without waiting for the sweep
    assert load(sessions, integration.id).status == expected
    assert load_run(sessions, run_id).status_after == expected


def test_success_within_72h_ends_the_auth_failing_window(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory, syncs: Syncs
) -> None:
    integration = make_integration()
    syncs.run(integration.id, SyncOutcome.AUTH_FAILED)
    clock.advance(timedelta(hours=48))
    syncs.run(integration.id, SyncOutcome.SUCCEEDED)
    clock.advance(timedelta(hours=24))
    syncs.run(integration.id, SyncOutcome.AUTH_FAILED)
    with sessions() as session, session.begin():
        assert escalate_auth_failures(session, now=clock.now()) == []
    stored = load(sessions, integration.id)
    assert (stored.status, stored.auth_failing_since) == ("auth_failing", clock.now())


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(timedelta(days=13, hours=23), "active"), (timedelta(days=14), "inactive")],
    ids=["13d23h", "14d"],
)
def test_idle_development_integration_goes_inactive_after_14_days_in_the_sweep(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    elapsed: timedelta,
    expected: str,
) -> None:
    # given a development integration and a production one, never called
    development = make_integration(kind="development")
    production = make_integration(kind="production")
    # when the sweep runs
    clock.advance(elapsed)
    with sessions() as session, session.begin():
        changes = deactivate_idle_development(session, now=clock.now())
    # then only the development one can go inactive
    assert load(sessions, development.id).status == expected
    assert load(sessions, production.id).status == "active"
    if expected == "inactive":
        assert [c.integration_id for c in changes] == [development.id]
        row = history(sessions, development.id)[-1]
        assert (row.trigger, row.reason, row.actor) == (
            "deactivate_idle",
            DEV_INACTIVITY_REASON,
            "system",
        )
        assert load(sessions, development.id).next_sync_at is None


def test_production_integration_never_goes_inactive_by_the_dev_rule(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    production = make_integration(kind="production")
    clock.advance(timedelta(days=100))
    with sessions() as session, session.begin():
        assert deactivate_idle_development(session, now=clock.now()) == []
    assert load(sessions, production.id).status == "active"


def test_api_request_restarts_the_two_week_dev_clock(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given a development integration called ten days after creation
    development = make_integration(kind="development")
    clock.advance(timedelta(days=10))
    requested_at = clock.now()
    with sessions() as session, session.begin():
        record_api_request(session, development.id, now=requested_at)
    # when the sweep runs 14 days after creation, then 14 days after the request
    clock.advance(timedelta(days=4))
    with sessions() as session, session.begin():
        assert deactivate_idle_development(session, now=clock.now()) == []
    clock.set(requested_at + timedelta(days=14))
    with sessions() as session, session.begin():
        deactivate_idle_development(session, now=clock.now())
    # then
    assert load(sessions, development.id).status == "inactive"


def test_sync_result_applies_the_dev_rule(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
) -> None:
    development = make_integration(kind="development")
    run_id = syncs.start(development.id)
    clock.advance(timedelta(days=14))
    syncs.finish(run_id, SyncOutcome.SUCCEEDED)
    assert load(sessions, development.id).status == "inactive"
    assert history(sessions, development.id)[-1].reason == DEV_INACTIVITY_REASON


# Operator actions.


def test_delete_wipes_credentials_and_is_terminal(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given
    integration = make_integration(primary=True)
    clock.advance(timedelta(hours=1))
    # when
    with sessions() as session, session.begin():
        delete(session, integration.id, now=clock.now(), actor=OPERATOR)
    # then
    stored = load(sessions, integration.id)
    assert stored.status == "deleted"
    assert (stored.deleted_at, stored.deleted_by) == (clock.now(), OPERATOR)
    assert stored.credentials_encrypted is None
    assert stored.next_sync_at is None
    assert stored.deleted
    # and every later trigger raises
    for action in ("resolve_qa", "deactivate", "reactivate", "delete", "set_credentials"):
        with pytest.raises(TransitionNotAllowed), sessions() as session, session.begin():
            operator_action(session, action, integration.id, now=clock.now())
    with pytest.raises(TransitionNotAllowed), sessions() as session, session.begin():
        configure_filters(session, integration.id, {"objects": ["x"]}, now=clock.now())
    # and no rule or sync touches it
    clock.advance(timedelta(days=100))
    with sessions() as session, session.begin():
        assert escalate_auth_failures(session, now=clock.now()) == []
        assert deactivate_idle_development(session, now=clock.now()) == []
        assert isinstance(
            start_run(session, integration.id, task_id=None, now=clock.now(), lease=LEASE), Skipped
        )
    assert load(sessions, integration.id).status == "deleted"
    assert len(history(sessions, integration.id)) == 2


def test_deleted_identifier_can_be_reused(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration(identifier="shop")
    with sessions() as session, session.begin():
        delete(session, integration.id, now=clock.now(), actor=OPERATOR)
    assert make_integration(identifier="shop").status == "active"


@pytest.mark.parametrize(("filters", "expected"), [({}, "setup"), (None, "active")])
def test_reactivate_goes_to_active_or_to_setup_without_filters(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    filters: dict[str, Any] | None,
    expected: str,
) -> None:
    # given an inactive integration, with or without filters
    integration = make_integration(filters=filters)
    with sessions() as session, session.begin():
        deactivate(session, integration.id, now=clock.now(), actor=OPERATOR)
    assert load(sessions, integration.id).next_sync_at is None
    # when
    clock.advance(timedelta(days=2))
    with sessions() as session, session.begin():
        change = reactivate(session, integration.id, now=clock.now(), actor=OPERATOR)
    # then
    stored = load(sessions, integration.id)
    assert stored.status == expected
    assert change.sync_now is (expected == "active")
    assert stored.next_sync_at == (clock.now() if expected == "active" else None)


def test_configure_filters_on_setup_activates_and_queues_the_first_sync(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given
    integration = make_integration(filters={})
    stored = load(sessions, integration.id)
    assert (stored.status, stored.next_sync_at) == ("setup", None)
    # when
    clock.advance(timedelta(hours=2))
    with sessions() as session, session.begin():
        change = configure_filters(
            session, integration.id, {"objects": ["customers"]}, now=clock.now(), actor=OPERATOR
        )
    # then
    assert change.sync_now
    stored = load(sessions, integration.id)
    assert (stored.status, stored.next_sync_at) == ("active", clock.now())
    assert stored.filters == {"objects": ["customers"]}
    assert path(sessions, integration.id)[-1] == ("setup", "active", "configure_filters")


def test_empty_filters_are_refused(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration(filters={})
    with pytest.raises(InvalidValue), sessions() as session, session.begin():
        configure_filters(session, integration.id, {}, now=clock.now())
    assert load(sessions, integration.id).status == "setup"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("auth_failing", "active"),
        ("credentials_invalid", "active"),
        ("sync_failing", "sync_failing"),
    ],
)
def test_updated_credentials_reactivate_a_broken_integration_and_are_replaced_otherwise(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    status: str,
    expected: str,
) -> None:
    since = clock.now() if status == "auth_failing" else None
    integration = make_integration(status=status, auth_failing_since=since)
    clock.advance(timedelta(hours=1))
    with sessions() as session, session.begin():
        set_credentials(session, integration.id, "fresh-sealed", now=clock.now(), actor=OPERATOR)
    stored = load(sessions, integration.id)
    assert stored.status == expected
    assert stored.credentials_encrypted == "fresh-sealed"
    if status != expected:  # back to active: a sync is queued at once
        assert (stored.auth_failing_since, stored.next_sync_at) == (None, clock.now())


def test_record_api_request_never_changes_status_nor_moves_backwards(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given
    integration = make_integration(kind="development", filters={})
    later = clock.now() + timedelta(days=3)
    earlier = clock.now() + timedelta(days=1)
    # when a request is recorded, then an older one arrives late
    with sessions() as session, session.begin():
        assert record_api_request(session, integration.id, now=later)
    with sessions() as session, session.begin():
        assert not record_api_request(session, integration.id, now=earlier)
    # then
    stored = load(sessions, integration.id)
    assert stored.last_api_request_at == later
    assert (stored.status, stored.updated_at) == ("setup", integration.updated_at)
    assert len(history(sessions, integration.id)) == 1
    with sessions() as session, session.begin():
        assert not record_api_request(session, uuid.uuid4(), now=later)


# Records and runs.


def test_store_page_upserts_and_advances_the_cursor(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given
    integration = make_integration()
    with sessions() as session, session.begin():
        started = start_run(session, integration.id, task_id=None, now=clock.now(), lease=LEASE)
    assert isinstance(started, RunStart)
    page = [("cus_1", {"email": "a@example.com"}), ("cus_2", {"email": "b@example.com"})]
    # when the same page is stored twice (a re-run), with one record changed
    for attempt, cursor in enumerate(({"after": "cus_2"}, {"after": "cus_3"})):
        clock.advance(timedelta(minutes=1))
        if attempt:
            page = [("cus_2", {"email": "b2@example.com"}), ("cus_3", {"email": "c@example.com"})]
        with sessions() as session, session.begin():
            store_page(
                session,
                integration_id=integration.id,
                run_id=started.run_id,
                stream="customers",
                records=page,
                cursor=cursor,
                now=clock.now(),
            )
    # then every record is stored once, with its latest data, and the cursor moved on
    with sessions() as session:
        records = {
            r.external_id: r.data
            for r in session.scalars(
                select(SyncedRecord).where(SyncedRecord.integration_id == integration.id)
            )
        }
        cursor_row = session.get_one(SyncCursor, (integration.id, "customers"))
    assert records == {
        "cus_1": {"email": "a@example.com"},
        "cus_2": {"email": "b2@example.com"},
        "cus_3": {"email": "c@example.com"},
    }
    assert cursor_row.cursor == {"after": "cus_3"}
    assert load_run(sessions, started.run_id).records_received == 4
    with sessions() as session, session.begin():
        restarted = start_run(session, integration.id, task_id=None, now=clock.now(), lease=LEASE)
    assert isinstance(restarted, Skipped)  # the first run still holds the lease


def test_run_with_records_marks_data_received(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
) -> None:
    integration = make_integration()
    run_id = syncs.start(integration.id)
    with sessions() as session, session.begin():
        store_page(
            session,
            integration_id=integration.id,
            run_id=run_id,
            stream="customers",
            records=[("cus_1", {})],
            cursor=None,
            now=clock.now(),
        )
    clock.advance(timedelta(minutes=3))
    syncs.finish(run_id, SyncOutcome.SUCCEEDED)
    assert load(sessions, integration.id).data_last_received_at == clock.now()


def test_start_run_honours_the_lease_and_the_delivery(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    with sessions() as session, session.begin():
        first = start_run(session, integration.id, task_id="t-1", now=clock.now(), lease=LEASE)
        busy = start_run(session, integration.id, task_id="t-2", now=clock.now(), lease=LEASE)
    assert isinstance(first, RunStart)
    assert isinstance(busy, Skipped)
    clock.advance(LEASE)
    with sessions() as session, session.begin():
        redelivered = start_run(
            session, integration.id, task_id="t-1", now=clock.now(), lease=LEASE
        )
        fresh = start_run(session, integration.id, task_id="t-3", now=clock.now(), lease=LEASE)
    assert isinstance(redelivered, Skipped)
    assert isinstance(fresh, RunStart)


def test_reap_abandoned_finishes_lapsed_runs_and_makes_the_integration_due(
    sessions: Sessions,
    clock: ManualClock,
    make_integration: IntegrationFactory,
    syncs: Syncs,
) -> None:
    # given a run whose worker died, and the scheduler having moved next_sync_at on
    integration = make_integration()
    run_id = syncs.start(integration.id)
    with sessions() as session, session.begin():
        lock_integration(session, integration.id).next_sync_at = clock.now() + timedelta(hours=6)
    # when the lease has not lapsed yet, nothing is reaped
    clock.advance(LEASE - timedelta(seconds=1))
    with sessions() as session, session.begin():
        assert reap_abandoned(session, now=clock.now()) == []
    # when it has
    clock.advance(timedelta(seconds=1))
    with sessions() as session, session.begin():
        reaped = reap_abandoned(session, now=clock.now())
    # then the run is closed and the integration is due at once
    assert reaped == [integration.id]
    run = load_run(sessions, run_id)
    assert (run.finished_at, run.error, run.applied) == (clock.now(), REAPED_ERROR, False)
    stored = load(sessions, integration.id)
    assert (stored.status, stored.next_sync_at) == ("active", clock.now())
    with sessions() as session, session.begin():
        assert reap_abandoned(session, now=clock.now()) == []


# Creation.


def test_identifier_is_unique_within_its_environment(
    sessions: Sessions, make_integration: IntegrationFactory
) -> None:
    make_integration(identifier="shop-eu")
    with pytest.raises(DuplicateIntegration, match="shop-eu"):
        make_integration(identifier="shop-eu")
    other_environment = make_integration(identifier="shop-eu", kind="development")
    assert other_environment.identifier == "shop-eu"


def test_one_primary_integration_per_provider_per_environment(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    make_integration(primary=True)
    with pytest.raises(DuplicateIntegration, match="primary stripe"):
        new_integration(sessions, clock, identifier="second", provider="stripe", primary=True)
    assert new_integration(sessions, clock, identifier="third", provider="paddle", primary=True)


def test_unknown_provider_raises_invalid_value_naming_it_and_the_valid_ones(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    make_integration()  # creates the environment
    with pytest.raises(InvalidValue) as raised:
        new_integration(sessions, clock, identifier="x", provider="stripey")
    message = str(raised.value)
    assert "'stripey'" in message
    for provider in ("stripe", "revenuecat", "app_store_connect", "superwall", "woocommerce"):
        assert provider in message


def new_integration(sessions: Sessions, clock: ManualClock, **spec: Any) -> uuid.UUID:
    """Create an integration in the production environment the factory made."""
    with sessions() as session, session.begin():
        change = create_integration(
            session,
            NewIntegration(environment_id="env-production", name="n", **spec),
            now=clock.now(),
        )
    return change.integration_id


def test_each_audit_row_has_exactly_one_matching_outbox_event(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory, syncs: Syncs
) -> None:
    # given a history through results, an operator, a sweep and the user
    integration = make_integration()
    steps: list[Any] = [
        lambda: syncs.run(integration.id, SyncOutcome.SUCCEEDED),  # stays active: no row
        lambda: syncs.run(integration.id, SyncOutcome.FAILED),
        lambda: syncs.run(integration.id, SyncOutcome.AUTH_FAILED),
        lambda: syncs.run(integration.id, SyncOutcome.AUTH_FAILED),  # stays: no row
        lambda: sweep(sessions, escalate_auth_failures, clock),
        lambda: act(sessions, set_credentials, integration.id, "new-sealed", clock),
        lambda: act(sessions, deactivate, integration.id, None, clock),
        lambda: act(sessions, reactivate, integration.id, None, clock),
        lambda: act(sessions, delete, integration.id, None, clock),
    ]
    for step in steps:
        clock.advance(timedelta(hours=36))
        step()
    # then audit rows and events are one to one, in the same order, with the same content
    with sessions() as session:
        audit_count = session.scalar(select(func.count()).select_from(StatusChange))
        event_count = session.scalar(select(func.count()).select_from(OutboxEvent))
    assert audit_count == event_count == 8
    rows = [
        (c.from_status, c.to_status, c.trigger, c.at) for c in history(sessions, integration.id)
    ]
    events = [
        (e.payload["fromStatus"], e.payload["toStatus"], e.payload["trigger"], e.created_at)
        for e in outbox(sessions, integration.id)
    ]
    assert rows == events
    assert [row[1] for row in rows] == [
        "active",
        "sync_failing",
        "auth_failing",
        "credentials_invalid",
        "active",
        "inactive",
        "active",
        "deleted",
    ]


def sweep(sessions: Sessions, rule: Any, clock: ManualClock) -> None:
    with sessions() as session, session.begin():
        rule(session, now=clock.now())


def act(
    sessions: Sessions, action: Any, key: uuid.UUID, sealed: str | None, clock: ManualClock
) -> None:
    with sessions() as session, session.begin():
        if sealed is not None:
            action(session, key, sealed, now=clock.now(), actor=OPERATOR)
        else:
            action(session, key, now=clock.now(), actor=OPERATOR)
