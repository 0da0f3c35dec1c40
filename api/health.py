"""`/v1/incidents`: provider incidents (SPEC §11), for operator keys.

An incident concerns a provider, across every workspace, so only an operator key
reads them; a workspace sees an incident covering its integration in `explain`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.auth import OperatorKey
from api.page.guard import operator_of
from models.incidents import IncidentDto
from worker.operator import INCIDENTS_LIMIT

router = APIRouter(prefix="/v1", tags=["health"])


@router.get("/incidents", summary="Provider incidents, newest first (open and closed)")
def list_incidents(
    request: Request,
    _: OperatorKey,
    limit: Annotated[int, Query(ge=1, le=100)] = INCIDENTS_LIMIT,
) -> list[IncidentDto]:
    return operator_of(request).incidents(limit=limit)
