"""`/v1/integrations`: seed 003's Integrations API, as a host application codes against it.

A workspace key reads and acts on its workspace's integrations only; an operator key on
all. Every route goes through the operator service (`worker.operator`), which finds the
integration in the key's scope, runs the action under its row lock, commits, and only
then publishes the sync the action asks for. Actions answer `IntegrationActionResult`.
Credentials are write-only: validated, sealed, and never in any answer.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Header, Path, Query

from api.auth import Caller, Scoped
from api.schemas import (
    CredentialsUpdate,
    FiltersUpdate,
    IntegrationActionResult,
    IntegrationAdded,
    IntegrationPage,
    IntegrationProvider,
    IntegrationStatus,
    NewIntegration,
    SyncedRecordPage,
    WorkspaceIntegration,
)
from models.changes import SYSTEM_ACTOR
from models.errors import InvalidValue
from models.inputs import checked_actor
from models.queries import DEFAULT_PAGE_SIZE, MAX_CURSOR_CHARS, MAX_PAGE_SIZE, IntegrationQuery
from models.serializers import ActionResultDict, IntegrationApiView, IntegrationStates
from models.status import ApiStatus, Provider, Status

router = APIRouter(prefix="/v1/integrations", tags=["integrations"])

# The audit trail's own actor: a caller may not pass itself off as the system.
RESERVED_ACTORS: Final = frozenset({SYSTEM_ACTOR})
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page")]
After = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, description="The previous page's `nextCursor`"),
]


async def actor_of(
    caller: Caller,
    x_actor: Annotated[
        str | None,
        Header(description="Who acts (a user id), for the audit trail and `deletedBy`"),
    ] = None,
) -> str:
    """The `X-Actor` header, or the key itself (`api-key:<id>`) when there is none."""
    if x_actor is None:
        return f"api-key:{caller.key_id}"
    actor = checked_actor(x_actor)
    if actor in RESERVED_ACTORS:
        raise InvalidValue(f"X-Actor {actor!r} is reserved for the system")
    return actor


ActorName = Annotated[str, Depends(actor_of)]


@router.get(
    "",
    response_model_exclude_unset=True,
    summary="List integrations (WorkspaceIntegration), newest first",
)
def list_integrations(
    operator: Scoped,
    *,
    provider: Annotated[list[IntegrationProvider] | None, Query()] = None,
    status: Annotated[list[Status] | None, Query(description="Any of the nine statuses")] = None,
    api_status: Annotated[list[IntegrationStatus] | None, Query(alias="apiStatus")] = None,
    after: After = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> IntegrationPage:
    query = IntegrationQuery(
        providers=tuple(Provider(p.value) for p in provider or ()),
        statuses=tuple(status or ()),
        api_statuses=tuple(ApiStatus(s.value) for s in api_status or ()),
    )
    page = operator.list_integrations(query, after=after, limit=limit)
    return IntegrationPage.model_validate({"items": page.items, "nextCursor": page.next_cursor})


@router.post(
    "",
    status_code=201,
    summary="Add an integration (IntegrationActionResult and its id)",
)
def add_integration(body: NewIntegration, operator: Scoped, actor: ActorName) -> IntegrationAdded:
    workspace = body.workspaceId or operator.workspace_id
    if workspace is None:
        raise InvalidValue("workspaceId is required with an operator key")
    created = operator.create(
        environment_id=workspace,
        name=body.name,
        identifier=body.identifier,
        provider=body.provider.value,
        credentials=body.credentials,
        filters=body.filters,
        configurations=body.configurations,
        primary=body.primary,
        actor=actor,
    )
    return IntegrationAdded(
        ok=created.result.ok, message=created.result.message, id=str(created.integration_id)
    )


@router.get(
    "/{integration_id}",
    response_model=WorkspaceIntegration,
    response_model_exclude_unset=True,
    summary="Get one integration (WorkspaceIntegration)",
)
def get_integration(integration_id: str, operator: Scoped) -> IntegrationApiView:
    return operator.get(integration_id)


@router.get("/{integration_id}/states", summary="How syncing stands (seed 002's states)")
def get_states(integration_id: str, operator: Scoped) -> IntegrationStates:
    return operator.states(integration_id)


@router.put(
    "/{integration_id}/credentials",
    response_model=IntegrationActionResult,
    response_model_exclude_none=True,
    summary="Replace the credentials (write-only)",
)
def set_credentials(
    integration_id: str, body: CredentialsUpdate, operator: Scoped, actor: ActorName
) -> ActionResultDict:
    return operator.set_credentials(integration_id, body.credentials, actor=actor).to_dict()


@router.put(
    "/{integration_id}/filters",
    response_model=IntegrationActionResult,
    response_model_exclude_none=True,
    summary="Configure the filters (checked against the provider's streams)",
)
def configure_filters(
    integration_id: str, body: FiltersUpdate, operator: Scoped, actor: ActorName
) -> ActionResultDict:
    return operator.configure_filters(integration_id, body.filters, actor=actor).to_dict()


@router.post(
    "/{integration_id}/sync",
    response_model=IntegrationActionResult,
    response_model_exclude_none=True,
    status_code=202,
    summary="Sync now",
)
def sync_now(integration_id: str, operator: Scoped) -> ActionResultDict:
    return operator.sync_now(integration_id).to_dict()


@router.post(
    "/{integration_id}/deactivate",
    response_model=IntegrationActionResult,
    response_model_exclude_none=True,
    summary="Deactivate: no more syncs until reactivated",
)
def deactivate(integration_id: str, operator: Scoped, actor: ActorName) -> ActionResultDict:
    return operator.deactivate(integration_id, actor=actor).to_dict()


@router.post(
    "/{integration_id}/reactivate",
    response_model=IntegrationActionResult,
    response_model_exclude_none=True,
    summary="Reactivate an inactive integration, with a sync at once",
)
def reactivate(integration_id: str, operator: Scoped, actor: ActorName) -> ActionResultDict:
    return operator.reactivate(integration_id, actor=actor).to_dict()


@router.delete(
    "/{integration_id}",
    response_model=IntegrationActionResult,
    response_model_exclude_none=True,
    summary="Delete (soft and final; `deletedBy` is the caller)",
)
def delete_integration(integration_id: str, operator: Scoped, actor: ActorName) -> ActionResultDict:
    return operator.delete(integration_id, actor=actor).to_dict()


@router.get(
    "/{integration_id}/records/{stream}",
    summary="A page of one stream's synced records (counts as an API request)",
)
def list_records(
    integration_id: str,
    *,
    stream: Annotated[str, Path(max_length=64, description="e.g. customers, events")],
    operator: Scoped,
    after: After = None,
    limit: PageSize = DEFAULT_PAGE_SIZE,
) -> SyncedRecordPage:
    page = operator.records(integration_id, stream, after=after, limit=limit)
    return SyncedRecordPage.model_validate({"items": page.items, "nextCursor": page.next_cursor})
