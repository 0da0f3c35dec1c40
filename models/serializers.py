"""The serialised forms of integrations, sync runs, status changes and action results.

Two views of an integration (SPEC §4, "API and UI views"):

- `integration_dto`, the full form the integrations page shows (seed 001's
  IntegrationResponseDto): all nine statuses, every field except secrets;
- `integration_api_view`, the API form (seed 003's WorkspaceIntegration): only how
  syncing stands, as `connected` / `not_connected` / `inactive`.

Both carry the same four sync-view fields, each from one mapping:

    apiStatus    API_STATUS in models/status.py (the one status -> ApiStatus table)
    setupStatus  setup_status(): incomplete | first_sync_pending | completed
    qaStatus     qa_status():    pending | passed | null
    lateness     models.health.lateness_of(): on_time | late | overdue (SPEC §11)

Keys are camelCase; times are ISO 8601 in UTC with an explicit `+00:00` offset, as
`datetime.isoformat` writes them and the outbox events carry them:
`2026-03-02T09:00:00+00:00`, with fractional seconds when the time has any. Credentials
never appear: the DTO says only whether some are present, and the API view leaves
seed 003's `credentialsEncrypted` out altogether.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, NotRequired

from sqlalchemy import Row

# typing_extensions, not typing: pydantic (the API) reads these, and needs its TypedDict
# on Python < 3.12.
from typing_extensions import TypedDict

from models.changes import Change
from models.clock import ensure_utc
from models.health import Lateness
from models.schema import Environment, Integration, StatusChange, SyncedRecord, SyncRun
from models.status import API_STATUS, Status


class SetupStatus(StrEnum):
    """How far an integration's setup has come (the API's `setupStatus` detail)."""

    INCOMPLETE = "incomplete"
    FIRST_SYNC_PENDING = "first_sync_pending"
    COMPLETED = "completed"


class QaStatus(StrEnum):
    """Where an integration stands in quality assurance (the API's `qaStatus` detail)."""

    PENDING = "pending"
    PASSED = "passed"


# An integration as the API view reads it: the ORM row, or a Core row of API_VIEW_COLUMNS
# (a single read skips the ORM's per-object work).
IntegrationFields = Integration | Row[Any]


def setup_status(integration: IntegrationFields) -> SetupStatus:
    """The one mapping to `setupStatus`.

    `incomplete` while in `setup` or, in any status, while no filters are configured
    (an integration deactivated or deleted before setup finished never completed it);
    `first_sync_pending` until a first sync has finished (`first_sync_finished_at`; a
    first attempt that failed on authentication does not count, as in
    `models.sync_runs`); `completed` after.
    """
    if integration.status == Status.SETUP or not integration.filters:
        return SetupStatus.INCOMPLETE
    if integration.first_sync_finished_at is None:
        return SetupStatus.FIRST_SYNC_PENDING
    return SetupStatus.COMPLETED


def qa_status(integration: IntegrationFields) -> QaStatus | None:
    """The one mapping to `qaStatus`.

    `pending` while in `quality_assurance`, `passed` once an operator resolved it
    (`qa_passed_at`), None otherwise. The row keeps no mark of a QA left without
    resolution (deactivated or deleted from `quality_assurance`), so that reads None
    too; the audit trail has the full story.
    """
    if integration.status == Status.QUALITY_ASSURANCE:
        return QaStatus.PENDING
    if integration.qa_passed_at is not None:
        return QaStatus.PASSED
    return None


class CredentialsPresence(TypedDict):
    """All the DTO says about credentials."""

    present: bool


class IntegrationApiView(TypedDict):
    """Seed 003's WorkspaceIntegration plus the two sync-view details."""

    id: str
    workspaceId: str
    provider: str
    status: str
    dataLastReceivedAt: str | None
    createdAt: str
    updatedAt: str
    setupStatus: str
    qaStatus: str | None
    lateness: str


class IntegrationDto(TypedDict):
    """Seed 001's IntegrationResponseDto with our fields and the sync-view fields."""

    id: str
    environmentId: str
    organizationId: str
    name: str
    identifier: str
    providerId: str
    status: str
    apiStatus: str
    setupStatus: str
    qaStatus: str | None
    lateness: str
    active: bool
    deleted: bool
    deletedAt: str | None
    deletedBy: str | None
    primary: bool
    conditions: list[Any]
    configurations: dict[str, Any]
    filters: dict[str, Any] | None
    credentials: CredentialsPresence
    dataLastReceivedAt: str | None
    lastApiRequestAt: str | None
    statusChangedAt: str
    authFailingSince: str | None
    nextSyncAt: str | None
    createdAt: str
    updatedAt: str


# The columns `integration_api_view` reads: a list loads only these (models.queries).
API_VIEW_COLUMNS: Final = (
    Integration.id,
    Integration.environment_id,
    Integration.provider,
    Integration.status,
    Integration.filters,
    Integration.first_sync_finished_at,
    Integration.qa_passed_at,
    Integration.data_last_received_at,
    Integration.created_at,
    Integration.updated_at,
    # For `lateness` (models.health): since when fresh, and the integration's own interval.
    Integration.last_success_at,
    Integration.reactivated_at,
    Integration.sync_interval_seconds,
)


def integration_api_view(
    integration: IntegrationFields, *, lateness: Lateness
) -> IntegrationApiView:
    """The API form of an integration (seed 003's WorkspaceIntegration).

    `lateness` is the health flag beside the status (`models.health.lateness_of`, which
    needs the integration's interval and the clock: the caller has both).

    `workspaceId` is the environment's id: a seed 003 workspace owns integrations and
    scopes their identifiers, which is what our Environment does (seed 001's
    `environmentId`); the organization is the account above both.
    """
    return {
        "id": str(integration.id),
        "workspaceId": integration.environment_id,
        "provider": integration.provider,
        "status": API_STATUS[Status(integration.status)].value,
        "dataLastReceivedAt": _iso_or_none(integration.data_last_received_at),
        "createdAt": _iso(integration.created_at),
        "updatedAt": _iso(integration.updated_at),
        "setupStatus": setup_status(integration).value,
        "qaStatus": _value_or_none(qa_status(integration)),
        "lateness": lateness.value,
    }


def integration_dto(integration: Integration, *, lateness: Lateness) -> IntegrationDto:
    """The full form of an integration for the UI and operators; never the credentials."""
    return {
        "id": str(integration.id),
        "environmentId": integration.environment_id,
        "organizationId": integration.organization_id,
        "name": integration.name,
        "identifier": integration.identifier,
        "providerId": integration.provider,
        "status": integration.status,
        "apiStatus": integration.api_status.value,
        "setupStatus": setup_status(integration).value,
        "qaStatus": _value_or_none(qa_status(integration)),
        "lateness": lateness.value,
        "active": integration.active,
        "deleted": integration.deleted,
        "deletedAt": _iso_or_none(integration.deleted_at),
        "deletedBy": integration.deleted_by,
        "primary": integration.primary,
        "conditions": list(integration.conditions or []),
        "configurations": dict(integration.configurations or {}),
        "filters": dict(integration.filters) if integration.filters is not None else None,
        "credentials": {"present": integration.credentials_encrypted is not None},
        "dataLastReceivedAt": _iso_or_none(integration.data_last_received_at),
        "lastApiRequestAt": _iso_or_none(integration.last_api_request_at),
        "statusChangedAt": _iso(integration.status_changed_at),
        "authFailingSince": _iso_or_none(integration.auth_failing_since),
        "nextSyncAt": _iso_or_none(integration.next_sync_at),
        "createdAt": _iso(integration.created_at),
        "updatedAt": _iso(integration.updated_at),
    }


class SyncRunDto(TypedDict):
    """One sync attempt, as the operator's "logs of the sync" show it."""

    id: str
    integrationId: str
    taskId: str | None
    attempt: int
    running: bool
    startedAt: str
    finishedAt: str | None
    leaseExpiresAt: str | None
    outcome: str | None
    recordsReceived: int
    warnings: list[Any]
    error: str | None
    firstSync: bool
    applied: bool
    statusAfter: str | None


def sync_run_dto(run: SyncRun) -> SyncRunDto:
    """The serialised form of a sync run."""
    return {
        "id": str(run.id),
        "integrationId": str(run.integration_id),
        "taskId": run.task_id,
        "attempt": run.attempt,
        "running": run.running,
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso_or_none(run.finished_at),
        "leaseExpiresAt": _iso_or_none(run.lease_expires_at),
        "outcome": run.outcome,
        "recordsReceived": run.records_received,
        "warnings": list(run.warnings or []),
        "error": run.error,
        "firstSync": run.first_sync,
        "applied": run.applied,
        "statusAfter": run.status_after,
    }


class StatusChangeDto(TypedDict):
    """One row of the audit trail."""

    id: int
    integrationId: str
    fromStatus: str | None
    toStatus: str
    trigger: str
    reason: str | None
    actor: str
    at: str
    syncRunId: str | None


def status_change_dto(change: StatusChange) -> StatusChangeDto:
    """The serialised form of an audit-trail row."""
    return {
        "id": change.id,
        "integrationId": str(change.integration_id),
        "fromStatus": change.from_status,
        "toStatus": change.to_status,
        "trigger": change.trigger,
        "reason": change.reason,
        "actor": change.actor,
        "at": _iso(change.at),
        "syncRunId": str(change.sync_run_id) if change.sync_run_id is not None else None,
    }


class ActionResultDict(TypedDict):
    """Seed 003's IntegrationActionResult: `message` is left out when there is none."""

    ok: bool
    message: NotRequired[str]


@dataclass(frozen=True)
class ActionResult:
    """What an operator action answers (seed 003's IntegrationActionResult)."""

    ok: bool
    message: str | None = None

    def to_dict(self) -> ActionResultDict:
        result: ActionResultDict = {"ok": self.ok}
        if self.message is not None:
            result["message"] = self.message
        return result


def describe_change(change: Change) -> str:
    """What an action did to an integration, in words (the operator adds what became of
    the sync the change asks for)."""
    subject = f"integration {change.integration_id}"
    if change.from_status is None:
        return f"{subject} created in {change.to_status}"
    if change.changed:
        return f"{subject} moved from {change.from_status} to {change.to_status}"
    return f"{subject} stays {change.to_status}"


class IntegrationStates(TypedDict):
    """Seed 002's integration states: how syncing stands, and the last sync's outcome."""

    id: str
    status: str
    setupStatus: str
    qaStatus: str | None
    lastSyncOutcome: str | None
    lastSyncAt: str | None
    dataLastReceivedAt: str | None


def integration_states(integration: Integration, last_run: SyncRun | None) -> IntegrationStates:
    """The states view: the API status, setup and QA details, the last finished sync."""
    return {
        "id": str(integration.id),
        "status": integration.api_status.value,
        "setupStatus": setup_status(integration).value,
        "qaStatus": _value_or_none(qa_status(integration)),
        "lastSyncOutcome": last_run.outcome if last_run else None,
        "lastSyncAt": _iso_or_none(last_run.finished_at) if last_run else None,
        "dataLastReceivedAt": _iso_or_none(integration.data_last_received_at),
    }


class SyncedRecordDto(TypedDict):
    """One object a sync or a webhook brought in, as the API serves it."""

    stream: str
    externalId: str
    data: dict[str, Any]
    firstSeenAt: str
    updatedAt: str


def synced_record_dto(record: SyncedRecord) -> SyncedRecordDto:
    return {
        "stream": record.kind,
        "externalId": record.external_id,
        "data": dict(record.data),
        "firstSeenAt": _iso(record.first_seen_at),
        "updatedAt": _iso(record.updated_at),
    }


class EnvironmentDto(TypedDict):
    """An environment (seed 001's environmentId; seed 003's workspace)."""

    id: str
    organizationId: str
    name: str
    kind: str


def environment_dto(environment: Environment) -> EnvironmentDto:
    return {
        "id": environment.id,
        "organizationId": environment.organization_id,
        "name": environment.name,
        "kind": environment.kind,
    }


def _iso(moment: datetime) -> str:
    return ensure_utc(moment).isoformat()


def _iso_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else _iso(moment)


def _value_or_none(value: StrEnum | None) -> str | None:
    return None if value is None else value.value
