"""The page's reads: the filtered list, one integration's detail, the status overview.

Everything is read through the operator service (`request.app.state.operator`), the same
reads the CLI and the API make; the page never touches a table.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from api.auth import operator_of
from api.page.actions import ACTIONS, available
from api.page.guard import SignedIn
from api.page.health import health_context
from api.page.render import render
from models.queries import MAX_CURSOR_CHARS, IntegrationQuery
from models.status import API_STATUS, ApiStatus, Provider, Status, parse_enum
from worker.operator import HISTORY_LIMIT, RUNS_LIMIT

router = APIRouter()

# Rows per page of the list: a screenful with room to scan, well under the API's cap.
PAGE_SIZE: Final = 50
# `?refresh=N` reloads a page every N seconds (the demo's watchers); bounded both ways so
# a page never hammers the server nor claims to refresh once a month.
MIN_REFRESH_S: Final = 2
MAX_REFRESH_S: Final = 3600
Refresh = Annotated[int | None, Query(ge=MIN_REFRESH_S, le=MAX_REFRESH_S)]
# A filter's value is one member's name: a few dozen characters at most.
Filter = Annotated[str | None, Query(max_length=100)]


@router.get("/", response_class=HTMLResponse, name="integrations")
def integrations(
    request: Request,
    _: SignedIn,
    *,
    status: Filter = None,
    provider: Filter = None,
    api_status: Filter = None,
    workspace: Filter = None,
    after: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
    refresh: Refresh = None,
) -> HTMLResponse:
    """The list, newest first, filtered by status, provider, API status and workspace."""
    filters = {
        "status": status or None,
        "provider": provider or None,
        "api_status": api_status or None,
        "workspace": workspace or None,
    }
    operator = operator_of(request)
    page = operator.list_integrations(
        _query(**filters), view="dto", after=after or None, limit=PAGE_SIZE
    )
    return render(
        request,
        "integrations.html",
        integrations=page.items,
        next_cursor=page.next_cursor,
        filters=filters,
        first_page=after is None,
        refresh=refresh,
        choices={
            "status": [s.value for s in Status],
            "provider": [p.value for p in Provider],
            "api_status": [a.value for a in ApiStatus],
            "workspace": [e["id"] for e in operator.environments()],
        },
    )


def _query(
    *, status: str | None, provider: str | None, api_status: str | None, workspace: str | None
) -> IntegrationQuery:
    """The list's filters as a query; an unknown value is a 422 naming the valid ones."""
    return IntegrationQuery(
        statuses=(parse_enum(Status, status, what="status"),) if status else (),
        providers=(parse_enum(Provider, provider, what="provider"),) if provider else (),
        api_statuses=(parse_enum(ApiStatus, api_status, what="API status"),) if api_status else (),
        workspace_id=workspace,
    )


@router.get("/integrations/{integration_id}", response_class=HTMLResponse, name="integration")
def integration(
    request: Request, integration_id: str, _: SignedIn, refresh: Refresh = None
) -> HTMLResponse:
    """One integration: its fields, what its status means, its history and recent runs."""
    operator = operator_of(request)
    dto = operator.get(integration_id, "dto")
    status = Status(dto["status"])
    return render(
        request,
        "integration.html",
        integration=dto,
        status=status,
        api_status=API_STATUS[status].value,
        history=operator.history(integration_id, limit=HISTORY_LIMIT),
        runs=operator.runs(integration_id, limit=RUNS_LIMIT),
        actions=[a for a in ACTIONS if status in available(a)],
        can_delete=status is not Status.DELETED,
        refresh=refresh,
        history_limit=HISTORY_LIMIT,
        runs_limit=RUNS_LIMIT,
        **health_context(request, dto),
    )


@router.get("/overview", response_class=HTMLResponse, name="overview")
def overview(request: Request, _: SignedIn, refresh: Refresh = None) -> HTMLResponse:
    """Counts per status and provider, queue depths, running and stuck syncs, the beat."""
    found: dict[str, Any] = operator_of(request).overview()
    return render(request, "overview.html", overview=found, refresh=refresh)
