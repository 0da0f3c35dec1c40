"""Operator-only routes: resolve QA, the full DTO, history, runs, the status overview.

An operator key passes; a workspace key is 403 here (these routes are about running the
service, not a workspace's data), and no key is 401. Both checks run before the route.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query

from api.auth import Scoped, operator_only
from api.integrations import ActorName
from api.schemas import IntegrationActionResult
from models.serializers import ActionResultDict, IntegrationDto, StatusChangeDto, SyncRunDto
from worker.operator import HISTORY_LIMIT, RUNS_LIMIT

router = APIRouter(prefix="/v1", tags=["operators"], dependencies=[Depends(operator_only)])
# The most history rows or runs one request reads: a screenful of story, not a dump.
MAX_ROWS: Final = 500
Rows = Annotated[int, Query(ge=1, le=MAX_ROWS)]


@router.post(
    "/integrations/{integration_id}/resolve-qa",
    response_model=IntegrationActionResult,
    response_model_exclude_none=True,
    summary="Resolve quality assurance: active again, with a sync at once",
)
def resolve_qa(integration_id: str, operator: Scoped, actor: ActorName) -> ActionResultDict:
    return operator.resolve_qa(integration_id, actor=actor).to_dict()


@router.get("/integrations/{integration_id}/full", summary="The full DTO (seed 001)")
def full_dto(integration_id: str, operator: Scoped) -> IntegrationDto:
    return operator.get(integration_id, "dto")


@router.get("/integrations/{integration_id}/history", summary="Status changes, newest first")
def history(
    integration_id: str, operator: Scoped, limit: Rows = HISTORY_LIMIT
) -> list[StatusChangeDto]:
    return operator.history(integration_id, limit=limit)


@router.get(
    "/integrations/{integration_id}/runs",
    summary="Sync runs with their errors and warnings, newest first",
)
def runs(integration_id: str, operator: Scoped, limit: Rows = RUNS_LIMIT) -> list[SyncRunDto]:
    return operator.runs(integration_id, limit=limit)


@router.get(
    "/overview",
    summary="Counts per status and provider, queue depths, stuck syncs, last ticks and sweeps",
)
def status_overview(operator: Scoped) -> dict[str, Any]:
    return operator.overview()
