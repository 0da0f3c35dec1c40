"""What the detail view's health section shows beside the status (SPEC §11)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from api.page.guard import operator_of


def health_context(request: Request) -> dict[str, Any]:
    """The lateness thresholds, for the detail view's health section."""
    rule = operator_of(request).lateness_rule
    return {"late_after": f"{rule.late_after:g}", "overdue_after": f"{rule.overdue_after:g}"}
