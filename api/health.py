"""Health beyond status (SPEC §11) over HTTP.

- `GET /v1/integrations/{id}/explain`: why this status, what happens next and when;
  a workspace key explains its own integrations.
- `POST /v1/integrations/{id}/resync[?stream=S&backfill=true]`: restart without data
  loss; 409 while a sync runs.
- `GET /v1/incidents`: provider incidents. An incident concerns a provider across every
  workspace, so only an operator key lists them; a workspace sees one covering its
  integration in `explain`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.auth import OperatorKey, Scoped, operator_of
from models.explain import Explanation
from models.incidents import IncidentDto
from models.serializers import ActionResultDict
from worker.operator import INCIDENTS_LIMIT

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/incidents", summary="Provider incidents, newest first (open and closed)")
def list_incidents(
    request: Request,
    _: OperatorKey,
    limit: Annotated[int, Query(ge=1, le=100)] = INCIDENTS_LIMIT,
) -> list[IncidentDto]:
    return operator_of(request).incidents(limit=limit)


@router.get(
    "/integrations/{integration_id}/explain",
    summary="Why the integration has its status, what happens next and when",
)
def explain_integration(integration_id: str, operator: Scoped) -> Explanation:
    return operator.explain(integration_id)


@router.post(
    "/integrations/{integration_id}/resync",
    summary="Restart a stream (or all) without deleting data; 409 while a sync runs",
)
def resync_integration(
    integration_id: str,
    operator: Scoped,
    stream: Annotated[str | None, Query(max_length=64)] = None,
    backfill: bool = False,
) -> ActionResultDict:
    return operator.resync(integration_id, stream=stream, backfill=backfill).to_dict()
