"""`/v1/integrations`: seed 003's Integrations API, as a host application codes against it."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import Scoped
from models.serializers import IntegrationApiView

router = APIRouter(prefix="/v1/integrations", tags=["integrations"])


@router.get("/{integration_id}", summary="Get one integration (WorkspaceIntegration)")
def get_integration(integration_id: str, operator: Scoped) -> IntegrationApiView:
    return operator.get(integration_id)
