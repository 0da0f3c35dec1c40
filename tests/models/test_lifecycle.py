"""The lifecycle machine on its own, no database: SPEC §4's table, row by row.

`EXPECTED` restates the table independently of `models.lifecycle.TRANSITIONS`; the
allowed (status, trigger) pairs are derived from it, so a missing row, a wrong
destination or an extra row in the code each fail a test here.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest

from models.errors import TransitionNotAllowed
from models.lifecycle import LIFECYCLE, Subject, initial_status
from models.status import (
    API_STATUS,
    OUTCOME_TRIGGERS,
    SYNCING_STATUSES,
    ApiStatus,
    EnvironmentKind,
    Status,
    SyncOutcome,
    Trigger,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = Status
T = Trigger

SYNCING = [S.ACTIVE, S.SYNC_WARNINGS, S.SYNC_FAILING, S.AUTH_FAILING]
NOT_DELETED = [s for s in S if s is not S.DELETED]
LIVE = [s for s in S if s not in (S.DELETED, S.INACTIVE)]
CREDENTIALS_BROKEN = [S.AUTH_FAILING, S.CREDENTIALS_INVALID]
SYNC_RESULTS = [
    T.SYNC_SUCCEEDED,
    T.SYNC_SUCCEEDED_WITH_WARNINGS,
    T.SYNC_FAILED,
    T.SYNC_AUTH_FAILED,
]
RESULT_STATUS = {
    T.SYNC_SUCCEEDED: S.ACTIVE,
    T.SYNC_SUCCEEDED_WITH_WARNINGS: S.SYNC_WARNINGS,
    T.SYNC_FAILED: S.SYNC_FAILING,
    T.SYNC_AUTH_FAILED: S.AUTH_FAILING,
}


def make_subject(status: Status, **facts: Any) -> Subject:
    """A subject in `status` with filters, in production, created at T0."""
    fields: dict[str, Any] = {
        "integration_id": uuid.uuid4(),
        "state": status.value,
        "has_filters": True,
        "environment_kind": EnvironmentKind.PRODUCTION,
        "created_at": T0,
        "auth_failing_since": T0 if status is S.AUTH_FAILING else None,
    }
    fields.update(facts)
    return Subject(**fields)


class Row(NamedTuple):
    """One line of SPEC §4: `trigger` from `source`, given facts, lands in `dest`."""

    trigger: Trigger
    source: Status
    dest: Status
    subject: dict[str, Any] = {}  # noqa: RUF012 - NamedTuple default, never mutated
    event: dict[str, Any] = {}  # noqa: RUF012 - NamedTuple default, never mutated
    now: datetime = T0 + timedelta(hours=1)


def _expected_rows() -> list[Row]:
    rows = [Row(T.CONFIGURE_FILTERS, S.SETUP, S.ACTIVE)]
    for trigger in SYNC_RESULTS:
        for source in SYNCING:
            for first in (False, True):
                dest = RESULT_STATUS[trigger]
                qa_outcome = trigger in (T.SYNC_FAILED, T.SYNC_SUCCEEDED_WITH_WARNINGS)
                if first and qa_outcome and source is S.ACTIVE:
                    dest = S.QUALITY_ASSURANCE  # the first sync goes to QA instead
                rows.append(Row(trigger, source, dest, event={"first_sync": first}))
    rows.append(Row(T.RESOLVE_QA, S.QUALITY_ASSURANCE, S.ACTIVE))
    rows.append(
        Row(
            T.EXPIRE_CREDENTIALS,
            S.AUTH_FAILING,
            S.CREDENTIALS_INVALID,
            subject={"auth_failing_since": T0},
            now=T0 + timedelta(hours=72),
        )
    )
    for source in CREDENTIALS_BROKEN:
        rows.append(Row(T.UPDATE_CREDENTIALS, source, S.ACTIVE, {"has_filters": True}))
        rows.append(Row(T.UPDATE_CREDENTIALS, source, S.SETUP, {"has_filters": False}))
    for source in NOT_DELETED:
        if source not in CREDENTIALS_BROKEN:  # credentials replaced, status stays
            rows.append(Row(T.UPDATE_CREDENTIALS, source, source))
    for source in LIVE:
        rows.append(Row(T.DEACTIVATE, source, S.INACTIVE))
        rows.append(
            Row(
                T.DEACTIVATE_IDLE,
                source,
                S.INACTIVE,
                subject={"environment_kind": EnvironmentKind.DEVELOPMENT},
                now=T0 + timedelta(days=14),
            )
        )
    rows.append(Row(T.REACTIVATE, S.INACTIVE, S.ACTIVE, {"has_filters": True}))
    rows.append(Row(T.REACTIVATE, S.INACTIVE, S.SETUP, {"has_filters": False}))
    rows.extend(Row(T.DELETE, source, S.DELETED) for source in NOT_DELETED)
    return rows


EXPECTED = _expected_rows()
ALLOWED: dict[Trigger, set[Status]] = {trigger: set() for trigger in T}
for _row in EXPECTED:
    ALLOWED[_row.trigger].add(_row.source)
NOT_ALLOWED = [
    (status, trigger)
    for trigger in T
    if trigger is not T.CREATED  # not a machine trigger: see initial_status
    for status in S
    if status not in ALLOWED[trigger]
]


def _row_id(row: Row) -> str:
    facts = {**row.subject, **row.event}
    detail = ",".join(f"{key}={value}" for key, value in facts.items())
    return f"{row.trigger}:{row.source}->{row.dest}" + (f"[{detail}]" if detail else "")


@pytest.mark.parametrize("row", EXPECTED, ids=_row_id)
def test_every_row_of_the_spec_table_moves_to_its_destination(row: Row) -> None:
    # given
    subject = make_subject(row.source, **row.subject)
    # when
    fired = LIFECYCLE.fire(subject, row.trigger, now=row.now, **row.event)
    # then
    assert fired
    assert subject.status is row.dest


@pytest.mark.parametrize("filters_configured", [False, True])
def test_created_starts_in_setup_without_filters_else_active(filters_configured: bool) -> None:
    expected = S.ACTIVE if filters_configured else S.SETUP
    assert initial_status(filters_configured=filters_configured) is expected


@pytest.mark.parametrize("trigger", [t for t in T if t is not T.CREATED], ids=str)
def test_each_trigger_fires_from_exactly_the_statuses_of_the_spec(trigger: Trigger) -> None:
    assert LIFECYCLE.sources(trigger) == ALLOWED[trigger]


@pytest.mark.parametrize(("status", "trigger"), NOT_ALLOWED, ids=str)
def test_trigger_outside_its_sources_raises_naming_integration_status_and_trigger(
    status: Status, trigger: Trigger
) -> None:
    # given
    subject = make_subject(status, environment_kind=EnvironmentKind.DEVELOPMENT)
    before = dataclasses.replace(subject)
    # when
    with pytest.raises(TransitionNotAllowed) as raised:
        LIFECYCLE.fire(subject, trigger, now=T0 + timedelta(days=100), first_sync=True)
    # then
    message = str(raised.value)
    assert str(subject.integration_id) in message
    assert status.value in message
    assert trigger.value in message
    assert (raised.value.status, raised.value.trigger) == (status.value, trigger.value)
    assert subject == before


@pytest.mark.parametrize("outcome", list(SyncOutcome), ids=str)
@pytest.mark.parametrize("status", [s for s in S if s not in SYNCING_STATUSES], ids=str)
def test_sync_result_in_a_non_syncing_status_raises(status: Status, outcome: SyncOutcome) -> None:
    subject = make_subject(status)
    with pytest.raises(TransitionNotAllowed):
        LIFECYCLE.fire(subject, OUTCOME_TRIGGERS[outcome], now=T0, first_sync=False)
    assert subject.status is status


def test_syncing_statuses_are_the_four_of_the_spec() -> None:
    assert set(SYNCING_STATUSES) == set(SYNCING)


# auth_failing_since: set on entering auth_failing, kept while it stays, cleared on leaving.


@pytest.mark.parametrize("source", [S.ACTIVE, S.SYNC_WARNINGS, S.SYNC_FAILING], ids=str)
def test_auth_failing_since_is_set_on_entering_auth_failing(source: Status) -> None:
    subject = make_subject(source)
    now = T0 + timedelta(hours=5)
    LIFECYCLE.fire(subject, T.SYNC_AUTH_FAILED, now=now, first_sync=False)
    assert subject.status is S.AUTH_FAILING
    assert subject.auth_failing_since == now


def test_auth_failing_since_is_kept_while_auth_keeps_failing() -> None:
    subject = make_subject(S.AUTH_FAILING, auth_failing_since=T0)
    for hours in (1, 24, 71):
        LIFECYCLE.fire(subject, T.SYNC_AUTH_FAILED, now=T0 + timedelta(hours=hours))
    assert subject.status is S.AUTH_FAILING
    assert subject.auth_failing_since == T0


@pytest.mark.parametrize(
    "trigger",
    [
        T.SYNC_SUCCEEDED,
        T.SYNC_SUCCEEDED_WITH_WARNINGS,
        T.SYNC_FAILED,
        T.UPDATE_CREDENTIALS,
        T.DEACTIVATE,
        T.DELETE,
        T.EXPIRE_CREDENTIALS,
    ],
    ids=str,
)
def test_auth_failing_since_is_cleared_on_leaving_auth_failing(trigger: Trigger) -> None:
    subject = make_subject(S.AUTH_FAILING, auth_failing_since=T0)
    assert LIFECYCLE.fire(subject, trigger, now=T0 + timedelta(hours=72))
    assert subject.status is not S.AUTH_FAILING
    assert subject.auth_failing_since is None


def test_auth_failing_since_restarts_after_a_recovery() -> None:
    # given an integration that failed on auth, recovered, then fails on auth again
    subject = make_subject(S.AUTH_FAILING, auth_failing_since=T0)
    LIFECYCLE.fire(subject, T.SYNC_SUCCEEDED, now=T0 + timedelta(hours=10))
    # when
    again = T0 + timedelta(hours=11)
    LIFECYCLE.fire(subject, T.SYNC_AUTH_FAILED, now=again)
    # then the three-day window counts from the new failure
    assert subject.auth_failing_since == again
    assert not LIFECYCLE.fire(subject, T.EXPIRE_CREDENTIALS, now=T0 + timedelta(hours=72))


# The time rules at their boundaries.


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(hours=71, minutes=59, seconds=59), S.AUTH_FAILING),
        (timedelta(hours=72), S.CREDENTIALS_INVALID),
        (timedelta(days=30), S.CREDENTIALS_INVALID),
    ],
    ids=["71h59m59s", "72h", "30d"],
)
def test_auth_failing_becomes_invalid_after_72h(elapsed: timedelta, expected: Status) -> None:
    subject = make_subject(S.AUTH_FAILING, auth_failing_since=T0)
    fired = LIFECYCLE.fire(subject, T.EXPIRE_CREDENTIALS, now=T0 + elapsed)
    assert fired is (expected is S.CREDENTIALS_INVALID)
    assert subject.status is expected


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (timedelta(days=13, hours=23, minutes=59), S.ACTIVE),
        (timedelta(days=14), S.INACTIVE),
    ],
    ids=["13d23h59m", "14d"],
)
def test_idle_development_integration_goes_inactive_after_14_days(
    elapsed: timedelta, expected: Status
) -> None:
    subject = make_subject(S.ACTIVE, environment_kind=EnvironmentKind.DEVELOPMENT)
    fired = LIFECYCLE.fire(subject, T.DEACTIVATE_IDLE, now=T0 + elapsed)
    assert fired is (expected is S.INACTIVE)
    assert subject.status is expected


@pytest.mark.parametrize("status", LIVE, ids=str)
def test_production_integration_never_goes_inactive_by_the_dev_rule(status: Status) -> None:
    subject = make_subject(status, environment_kind=EnvironmentKind.PRODUCTION)
    assert not LIFECYCLE.fire(subject, T.DEACTIVATE_IDLE, now=T0 + timedelta(days=100))
    assert subject.status is status


def test_idle_is_counted_from_creation_when_there_was_no_api_request() -> None:
    subject = make_subject(
        S.ACTIVE, environment_kind=EnvironmentKind.DEVELOPMENT, last_api_request_at=None
    )
    assert not LIFECYCLE.fire(subject, T.DEACTIVATE_IDLE, now=T0 + timedelta(days=14, seconds=-1))
    assert LIFECYCLE.fire(subject, T.DEACTIVATE_IDLE, now=T0 + timedelta(days=14))


def test_idle_is_counted_from_the_last_api_request() -> None:
    # given a development integration created long ago but called five days after creation
    last_request = T0 + timedelta(days=5)
    subject = make_subject(
        S.ACTIVE, environment_kind=EnvironmentKind.DEVELOPMENT, last_api_request_at=last_request
    )
    # then 14 days from creation is not enough, 14 days from the request is
    assert not LIFECYCLE.fire(subject, T.DEACTIVATE_IDLE, now=T0 + timedelta(days=14))
    assert not LIFECYCLE.fire(
        subject, T.DEACTIVATE_IDLE, now=last_request + timedelta(days=13, hours=23, minutes=59)
    )
    assert LIFECYCLE.fire(subject, T.DEACTIVATE_IDLE, now=last_request + timedelta(days=14))
    assert subject.status is S.INACTIVE


def test_a_guard_that_holds_a_trigger_back_leaves_the_subject_unchanged() -> None:
    subject = make_subject(S.AUTH_FAILING, auth_failing_since=T0)
    before = dataclasses.replace(subject)
    assert not LIFECYCLE.fire(subject, T.EXPIRE_CREDENTIALS, now=T0 + timedelta(hours=1))
    assert subject == before


# The diagram and the vocabulary.


def test_diagram_mentions_every_status_and_trigger() -> None:
    diagram = LIFECYCLE.diagram()
    assert diagram.startswith("stateDiagram-v2\n")
    for status in S:
        assert status.value in diagram
    for trigger in T:
        assert trigger.value in diagram


def test_status_values_are_the_nine_of_the_spec() -> None:
    assert [s.value for s in S] == [
        "setup",
        "active",
        "sync_warnings",
        "sync_failing",
        "quality_assurance",
        "auth_failing",
        "credentials_invalid",
        "inactive",
        "deleted",
    ]


def test_sync_outcome_values_are_the_four_of_the_spec() -> None:
    assert [o.value for o in SyncOutcome] == [
        "succeeded",
        "succeeded_with_warnings",
        "failed",
        "auth_failed",
    ]


def test_each_sync_outcome_fires_its_own_trigger() -> None:
    assert OUTCOME_TRIGGERS == {
        SyncOutcome.SUCCEEDED: T.SYNC_SUCCEEDED,
        SyncOutcome.SUCCEEDED_WITH_WARNINGS: T.SYNC_SUCCEEDED_WITH_WARNINGS,
        SyncOutcome.FAILED: T.SYNC_FAILED,
        SyncOutcome.AUTH_FAILED: T.SYNC_AUTH_FAILED,
    }


def test_api_status_maps_every_status_as_the_spec_table_says() -> None:
    assert {status.value: api.value for status, api in API_STATUS.items()} == {
        "active": "connected",
        "sync_warnings": "connected",
        "sync_failing": "connected",
        "auth_failing": "connected",
        "quality_assurance": "connected",
        "setup": "not_connected",
        "credentials_invalid": "not_connected",
        "inactive": "inactive",
        "deleted": "inactive",
    }
    assert [a.value for a in ApiStatus] == ["connected", "not_connected", "inactive"]
