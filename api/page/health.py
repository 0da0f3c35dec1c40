"""What the detail view's health section shows beside the status (SPEC §11)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.auth import operator_of
from models.serializers import IntegrationDto


def health_context(request: Request, integration: IntegrationDto) -> dict[str, Any]:
    """The explanation, the lateness thresholds and the provider's open incident, if any."""
    operator = operator_of(request)
    rule = operator.lateness_rule
    explanation = operator.explain(integration["id"])
    return {
        "explanation": explanation,
        "late_after": f"{rule.late_after:g}",
        "overdue_after": f"{rule.overdue_after:g}",
        # the provider's open incident, however old, as the explanation already read it
        "incident": explanation["incident"],
    }
