"""Signing in to the page with an operator key, and out again.

The key is checked like an API request's (`models.api_keys.verify_key`: digest compared
in constant time); a workspace key is refused, since the page shows every workspace. The
session then remembers the key's id only. The sign-in form carries a CSRF token too, so
another site cannot sign a browser in under its own key.
"""

from __future__ import annotations

from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth import runtime_of
from api.page.guard import Acting, checked_form, local_path, wall_of
from api.page.render import path_for, render
from api.page.session import session_of
from models.api_keys import verify_key

log = structlog.get_logger(__name__)
router = APIRouter()

# Our keys are 61 characters (`swk_` + 12 + `_` + 43); anything much longer is not one.
MAX_KEY_CHARS: Final = 200
MAX_NEXT_CHARS: Final = 2000
BAD_KEY: Final = "that key is not valid or was revoked"
WORKSPACE_KEY: Final = (
    "that is a workspace key; the integrations page shows every workspace and needs an "
    "operator key (`syncworker api-keys create --operator`)"
)


@router.get("/sign-in", response_class=HTMLResponse, name="sign_in")
def sign_in_form(
    request: Request, next: Annotated[str | None, Query(max_length=MAX_NEXT_CHARS)] = None
) -> Response:
    """The form; someone signed in already goes straight on."""
    back_to = local_path(request, next)
    if session_of(request).key_id is not None:
        return RedirectResponse(back_to or path_for(request, "integrations"), 303)
    return render(request, "sign_in.html", next=back_to or "", problem=None)


@router.post("/sign-in", name="sign_in_post")
async def sign_in(
    request: Request,
    key: Annotated[str, Form(max_length=MAX_KEY_CHARS)] = "",
    next: Annotated[str, Form(max_length=MAX_NEXT_CHARS)] = "",
) -> Response:
    """Check the key; an operator's starts a session and goes on to where it was headed."""
    await checked_form(request)
    with runtime_of(request).sessions() as db:
        principal = verify_key(db, key.strip())
    back_to = local_path(request, next)
    if principal is None or not principal.is_operator:
        problem, code = (BAD_KEY, 401) if principal is None else (WORKSPACE_KEY, 403)
        log.info("page.sign_in_refused", reason="bad_key" if code == 401 else "workspace_key")
        return render(request, "sign_in.html", code, next=back_to or "", problem=problem)
    session_of(request).sign_in(principal.key_id, wall_of(request)())
    log.info("page.signed_in", key_id=principal.key_id)
    return RedirectResponse(back_to or path_for(request, "integrations"), 303)


@router.post("/sign-out", name="sign_out")
def sign_out(request: Request, visitor: Acting) -> RedirectResponse:
    visitor.session.sign_out(wall_of(request)())
    visitor.session.flash("ok", "signed out")
    log.info("page.signed_out", key_id=visitor.key_id)
    return RedirectResponse(path_for(request, "sign_in"), 303)
