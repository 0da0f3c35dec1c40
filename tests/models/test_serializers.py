"""Serialised forms (SPEC §4 "API and UI views", "Serialised form"; seeds 001 and 003)."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.changes import Change
from models.clock import ManualClock
from models.health import Lateness
from models.integrations import configure_filters, deactivate, delete, resolve_qa
from models.schema import Integration, StatusChange, SyncRun
from models.serializers import (
    ActionResult,
    describe_change,
    integration_api_view,
    integration_dto,
    status_change_dto,
    sync_run_dto,
)
from models.status import Status, SyncOutcome, Trigger
from models.sync_runs import RunStart, SyncResult, finish_run, start_run
from tests.conftest import START, IntegrationFactory

Sessions = sessionmaker[Session]

# SPEC §4's API table, written out here so the test checks the code against the spec:
# status -> (API status, seed 001 `active`, seed 001 `deleted`).
SPEC_VIEWS = {
    Status.SETUP: ("not_connected", False, False),
    Status.ACTIVE: ("connected", True, False),
    Status.SYNC_WARNINGS: ("connected", True, False),
    Status.SYNC_FAILING: ("connected", True, False),
    Status.QUALITY_ASSURANCE: ("connected", False, False),
    Status.AUTH_FAILING: ("connected", True, False),
    Status.CREDENTIALS_INVALID: ("not_connected", False, False),
    Status.INACTIVE: ("inactive", False, False),
    Status.DELETED: ("inactive", False, True),
}

DTO_KEYS = {
    "id", "environmentId", "organizationId", "name", "identifier", "providerId", "status",
    "apiStatus", "setupStatus", "qaStatus", "lateness", "active", "deleted", "deletedAt",
    "deletedBy", "primary", "conditions", "configurations", "filters", "credentials",
    "dataLastReceivedAt",
    "lastApiRequestAt", "statusChangedAt", "authFailingSince", "nextSyncAt", "createdAt",
    "updatedAt",
}  # fmt: skip
API_VIEW_KEYS = {
    "id", "workspaceId", "provider", "status", "dataLastReceivedAt", "createdAt", "updatedAt",
    "setupStatus", "qaStatus", "lateness",
}  # fmt: skip

CAMEL_CASE = re.compile(r"^[a-z]+(?:[A-Z][a-z0-9]*)*$")
# Seed 003's credentialsEncrypted shape, recognisable wherever it might leak.
SEALED = "LEAKME-c2VhbGVkLWl2K2NpcGhlcnRleHQtZG8tbm90LWxlYWs="
LEASE = timedelta(minutes=5)


def load(sessions: Sessions, integration_id: uuid.UUID) -> Integration:
    with sessions() as session:
        return session.get_one(Integration, integration_id)


def sync_once(
    sessions: Sessions, clock: ManualClock, integration_id: uuid.UUID, outcome: SyncOutcome
) -> uuid.UUID:
    """Run one sync attempt through the real start/finish path; returns the run id."""
    with sessions() as session, session.begin():
        start = start_run(session, integration_id, task_id=None, now=clock.now(), lease=LEASE)
    assert isinstance(start, RunStart)
    clock.advance(timedelta(minutes=1))
    with sessions() as session, session.begin():
        finish_run(session, start.run_id, SyncResult(outcome, error="boom"), now=clock.now())
    return start.run_id


def views(integration: Integration) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    return integration_dto(integration, lateness=Lateness.ON_TIME), integration_api_view(
        integration, lateness=Lateness.ON_TIME
    )


def assert_iso_utc(value: object) -> None:
    assert isinstance(value, str)
    assert value.endswith("+00:00")
    assert datetime.fromisoformat(value).utcoffset() == timedelta(0)


# --- the API view of all nine statuses -------------------------------------------------


def test_spec_table_covers_all_nine_statuses() -> None:
    assert set(SPEC_VIEWS) == set(Status)


@pytest.mark.parametrize("status", list(Status))
def test_each_status_maps_to_the_api_view_of_the_spec(
    make_integration: IntegrationFactory, status: Status
) -> None:
    # given
    api_status, active, deleted = SPEC_VIEWS[status]
    integration = make_integration(status=status.value)
    # when
    dto, api = views(integration)
    # then
    assert api["status"] == dto["apiStatus"] == api_status
    assert dto["status"] == status.value
    assert (dto["active"], dto["deleted"]) == (active, deleted)


# --- setupStatus and qaStatus -----------------------------------------------------------


def test_setup_status_is_incomplete_while_in_setup(make_integration: IntegrationFactory) -> None:
    integration = make_integration(filters={})
    for view in views(integration):
        assert (view["setupStatus"], view["qaStatus"]) == ("incomplete", None)
    assert integration_api_view(integration, lateness=Lateness.ON_TIME)["status"] == "not_connected"


def test_setup_status_stays_incomplete_when_deactivated_before_filters_were_set(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration(filters={})
    with sessions() as session, session.begin():
        deactivate(session, integration.id, now=clock.now(), actor="user-1")
    assert (
        integration_api_view(load(sessions, integration.id), lateness=Lateness.ON_TIME)[
            "setupStatus"
        ]
        == "incomplete"
    )


def test_setup_status_is_first_sync_pending_once_filters_are_set(
    make_integration: IntegrationFactory,
) -> None:
    integration = make_integration(filters={"objects": ["customers"]})
    for view in views(integration):
        assert (view["setupStatus"], view["qaStatus"]) == ("first_sync_pending", None)


def test_first_sync_failing_on_auth_leaves_first_sync_pending(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    sync_once(sessions, clock, integration.id, SyncOutcome.AUTH_FAILED)
    dto, api = views(load(sessions, integration.id))
    assert dto["status"] == "auth_failing"
    assert api["setupStatus"] == dto["setupStatus"] == "first_sync_pending"


def test_setup_completes_after_a_clean_first_sync_and_qa_stays_null(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    sync_once(sessions, clock, integration.id, SyncOutcome.SUCCEEDED)
    for view in views(load(sessions, integration.id)):
        assert (view["setupStatus"], view["qaStatus"]) == ("completed", None)


def test_qa_status_is_pending_in_quality_assurance_then_passed_once_resolved(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given a first sync that failed: the integration waits for QA
    integration = make_integration()
    sync_once(sessions, clock, integration.id, SyncOutcome.FAILED)
    dto, api = views(load(sessions, integration.id))
    assert (dto["status"], api["status"]) == ("quality_assurance", "connected")
    assert api["qaStatus"] == dto["qaStatus"] == "pending"
    assert api["setupStatus"] == "completed"
    # when an operator resolves it
    with sessions() as session, session.begin():
        resolve_qa(session, integration.id, now=clock.now(), actor="operator-7")
    # then
    dto, api = views(load(sessions, integration.id))
    assert dto["status"] == "active"
    assert api["qaStatus"] == dto["qaStatus"] == "passed"


# --- shape: keys, times, no credentials -------------------------------------------------


def test_views_have_the_seed_keys_in_camel_case_and_iso_8601_utc_times(
    make_integration: IntegrationFactory,
) -> None:
    integration = make_integration(
        data_last_received_at=START + timedelta(hours=1),
        last_api_request_at=START + timedelta(hours=2),
        auth_failing_since=datetime(2026, 3, 2, 12, 30, 15, 250, tzinfo=UTC),
    )
    dto, api = views(integration)
    assert set(dto) == DTO_KEYS
    assert set(api) == API_VIEW_KEYS
    for view in (dto, api):
        assert all(CAMEL_CASE.match(key) for key in view)
        times = {key: view[key] for key in view if key.endswith(("At", "Since"))}
        assert {key for key, value in times.items() if value is None} <= {"deletedAt"}
        for value in times.values():
            if value is not None:
                assert_iso_utc(value)
    assert dto["createdAt"] == api["createdAt"] == "2026-03-02T09:00:00+00:00"
    assert dto["authFailingSince"] == "2026-03-02T12:30:15.000250+00:00"
    assert api["dataLastReceivedAt"] == "2026-03-02T10:00:00+00:00"
    assert api["workspaceId"] == dto["environmentId"] == integration.environment_id
    assert api["provider"] == dto["providerId"] == "stripe"


def test_views_never_contain_the_ciphertext_only_whether_credentials_are_present(
    make_integration: IntegrationFactory,
) -> None:
    integration = make_integration(credentials_sealed=SEALED)
    dto, api = views(integration)
    for view in (dto, api):
        text = json.dumps(view)
        assert SEALED not in text
        assert "credentialsEncrypted" not in text
    assert dto["credentials"] == {"present": True}
    assert "credentials" not in api


def test_dto_says_no_credentials_when_there_are_none(make_integration: IntegrationFactory) -> None:
    assert integration_dto(make_integration(credentials_sealed=None), lateness=Lateness.ON_TIME)[
        "credentials"
    ] == {"present": False}


def test_deleted_integration_shows_deleted_by_whom_and_when(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given
    integration = make_integration(credentials_sealed=SEALED)
    clock.advance(timedelta(days=1))
    # when
    with sessions() as session, session.begin():
        delete(session, integration.id, now=clock.now(), actor="user-42")
    # then
    dto, api = views(load(sessions, integration.id))
    assert (dto["status"], dto["deleted"], dto["active"]) == ("deleted", True, False)
    assert dto["deletedAt"] == "2026-03-03T09:00:00+00:00"
    assert dto["deletedBy"] == "user-42"
    assert dto["credentials"] == {"present": False}
    assert api["status"] == "inactive"
    assert SEALED not in json.dumps(dto) + json.dumps(api)


# --- sync runs and the audit trail ------------------------------------------------------


def test_sync_run_and_status_change_serialise_in_camel_case(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    # given a failed first sync, which sends the integration to QA
    integration = make_integration()
    run_id = sync_once(sessions, clock, integration.id, SyncOutcome.FAILED)
    # when
    with sessions() as session:
        run = sync_run_dto(session.get_one(SyncRun, run_id))
        change = status_change_dto(
            session.scalars(select(StatusChange).where(StatusChange.sync_run_id == run_id)).one()
        )
    # then
    assert all(CAMEL_CASE.match(key) for key in [*run, *change])
    assert (run["outcome"], run["firstSync"], run["running"]) == ("failed", True, False)
    assert (run["applied"], run["statusAfter"], run["error"]) == (True, "quality_assurance", "boom")
    assert run["finishedAt"] == "2026-03-02T09:01:00+00:00"
    assert run["integrationId"] == change["integrationId"] == str(integration.id)
    assert (change["fromStatus"], change["toStatus"]) == ("active", "quality_assurance")
    assert (change["trigger"], change["actor"], change["syncRunId"]) == (
        "sync_failed",
        "system",
        str(run_id),
    )
    json.dumps([run, change])


# --- operator action results ------------------------------------------------------------


def test_action_result_is_ok_and_message_and_leaves_out_a_missing_message() -> None:
    assert ActionResult(ok=True, message="done").to_dict() == {"ok": True, "message": "done"}
    assert ActionResult(ok=False).to_dict() == {"ok": False}
    with pytest.raises(dataclasses.FrozenInstanceError):
        ActionResult(ok=True).ok = False  # type: ignore[misc]


def test_change_description_says_the_integration_moved(
    sessions: Sessions, clock: ManualClock, make_integration: IntegrationFactory
) -> None:
    integration = make_integration(filters={})
    with sessions() as session, session.begin():
        change = configure_filters(session, integration.id, {"objects": ["x"]}, now=clock.now())
    assert describe_change(change) == f"integration {integration.id} moved from setup to active"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (Change(uuid.UUID(int=1), Trigger.CONFIGURE_FILTERS, Status.ACTIVE, Status.ACTIVE),
         "stays active"),
        (Change(uuid.UUID(int=1), Trigger.UPDATE_CREDENTIALS, Status.ACTIVE, Status.ACTIVE, True),
         "stays active"),
        (Change(uuid.UUID(int=1), Trigger.CREATED, None, Status.SETUP), "created in setup"),
        (Change(uuid.UUID(int=1), Trigger.DEACTIVATE, Status.SYNC_FAILING, Status.INACTIVE),
         "moved from sync_failing to inactive"),
    ],
)  # fmt: skip
def test_change_description_names_the_integration_and_its_statuses(
    change: Change, message: str
) -> None:
    assert describe_change(change) == f"integration {uuid.UUID(int=1)} {message}"
