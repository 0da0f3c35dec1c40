"""The page's actions: sync now, resolve QA, deactivate, reactivate, and delete (confirmed).

Each is a POST carrying the session's CSRF token; it calls the operator service and
redirects back to the integration (post/redirect/get), where the action's answer or the
refusal's message is shown once. Delete first shows a confirmation page that asks for the
integration's identifier, since it cannot be undone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from api.auth import operator_of
from api.page.guard import Acting, SignedIn, Visitor
from api.page.render import path_for, render
from models.errors import SyncWorkerError
from models.lifecycle import LIFECYCLE
from models.serializers import ActionResult
from models.status import SYNCING_STATUSES, Status, Trigger
from worker.operator import Operator

log = structlog.get_logger(__name__)
router = APIRouter()

# A confirmation field holds an identifier: bounded like one.
MAX_CONFIRM_CHARS: Final = 300


@dataclass(frozen=True)
class Action:
    """One button of the detail page: its URL segment, label, and what it runs."""

    slug: str
    label: str
    run: Callable[[Operator, str, str], ActionResult]  # (operator, integration id, actor)
    trigger: Trigger | None  # whose sources decide where the button shows; None: sync now
    hint: str


ACTIONS: Final = (
    Action(
        "sync-now",
        "Sync now",
        lambda op, i, _: op.sync_now(i),
        None,
        "queue a sync at once instead of at the next interval",
    ),
    Action(
        "resolve-qa",
        "Resolve QA",
        lambda op, i, actor: op.resolve_qa(i, actor=actor),
        Trigger.RESOLVE_QA,
        "sign off quality assurance: active again, with a sync at once",
    ),
    Action(
        "deactivate",
        "Deactivate",
        lambda op, i, actor: op.deactivate(i, actor=actor),
        Trigger.DEACTIVATE,
        "stop syncing until reactivated",
    ),
    Action(
        "reactivate",
        "Reactivate",
        lambda op, i, actor: op.reactivate(i, actor=actor),
        Trigger.REACTIVATE,
        "sync again (setup if no filters are configured)",
    ),
)
BY_SLUG: Final = {action.slug: action for action in ACTIONS}


def available(action: Action) -> frozenset[Status]:
    """The statuses in which the button applies (the lifecycle's own table decides)."""
    if action.trigger is None:
        return frozenset(SYNCING_STATUSES)
    return LIFECYCLE.sources(action.trigger)


@router.post("/integrations/{integration_id}/delete", name="delete")
def delete(
    request: Request,
    integration_id: str,
    visitor: Acting,
    confirm: Annotated[str, Form(max_length=MAX_CONFIRM_CHARS)] = "",
) -> RedirectResponse:
    """Delete for good once the identifier was typed; otherwise back to the confirmation."""
    operator = operator_of(request)
    identifier = operator.get(integration_id, "dto")["identifier"]
    if confirm != identifier:
        visitor.session.flash(
            "refused", f"not deleted: type the identifier {identifier!r} to confirm"
        )
        return _back(request, "confirm_delete", integration_id)
    return _run(
        request,
        visitor,
        integration_id,
        "delete",
        lambda: operator.delete(integration_id, actor=visitor.actor),
    )


@router.get(
    "/integrations/{integration_id}/delete", response_class=HTMLResponse, name="confirm_delete"
)
def confirm_delete(request: Request, integration_id: str, _: SignedIn) -> HTMLResponse:
    dto = operator_of(request).get(integration_id, "dto")
    return render(request, "confirm_delete.html", integration=dto, status=Status(dto["status"]))


@router.post("/integrations/{integration_id}/{slug}", name="act")
def act(request: Request, integration_id: str, slug: str, visitor: Acting) -> RedirectResponse:
    """Run one of the buttons' actions and show its answer on the integration's page."""
    action = BY_SLUG.get(slug)
    if action is None:
        raise HTTPException(404, f"no action {slug!r}; the page offers: {', '.join(BY_SLUG)}")
    operator = operator_of(request)
    return _run(
        request,
        visitor,
        integration_id,
        slug,
        lambda: action.run(operator, integration_id, visitor.actor),
    )


def _run(
    request: Request,
    visitor: Visitor,
    integration_id: str,
    name: str,
    call: Callable[[], ActionResult],
) -> RedirectResponse:
    try:
        result = call()
    except SyncWorkerError as refusal:
        visitor.session.flash("refused", str(refusal))
        log.info(
            "page.action_refused",
            action=name,
            integration_id=integration_id,
            key_id=visitor.key_id,
            error=type(refusal).__name__,
        )
    else:
        visitor.session.flash("ok" if result.ok else "refused", result.message or name)
        log.info(
            "page.action",
            action=name,
            integration_id=integration_id,
            key_id=visitor.key_id,
            ok=result.ok,
        )
    return _back(request, "integration", integration_id)


def _back(request: Request, name: str, integration_id: str) -> RedirectResponse:
    return RedirectResponse(path_for(request, name, integration_id=integration_id), 303)
