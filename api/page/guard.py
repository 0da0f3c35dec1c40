"""Who may use the page: a signed-in operator key, and forms that carry the session's token.

`SignedIn` re-checks on every request that the session's key is still a live operator
key, so a revoked key is signed out at its next click. `Acting` adds the CSRF check every
POST needs: the form's `csrf_token` must equal the session's, or the request is refused
with a 403 before anything happens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request

from api.auth import runtime_of
from api.page.session import PageSession, Wall, session_of
from models.api_keys import live_principal

CSRF_FIELD: Final = "csrf_token"
CSRF_REFUSED: Final = "the form's CSRF token is missing or stale: reload the page and try again"


class SignInRequired(Exception):
    """Raised when a page needs a signed-in operator; answered by a redirect to sign in."""

    def __init__(self, back_to: str) -> None:
        super().__init__(back_to)
        self.back_to = back_to


@dataclass(frozen=True)
class Visitor:
    """A signed-in operator: the key's id (the actor the audit trail names) and the session."""

    key_id: str
    session: PageSession

    @property
    def actor(self) -> str:
        return f"key:{self.key_id}"


def wall_of(request: Request) -> Wall:
    wall: Wall = request.app.state.wall
    return wall


def signed_in(request: Request) -> Visitor:
    """The signed-in operator; a redirect to sign in (and back) for anyone else."""
    session = session_of(request)
    back_to = request.url.path + _query(request) if request.method == "GET" else ""
    if session.key_id is None:
        raise SignInRequired(back_to)
    with runtime_of(request).sessions() as db:
        principal = live_principal(db, session.key_id)
    if principal is None or not principal.is_operator:
        session.sign_out(wall_of(request)())
        session.flash("refused", "your key was revoked: sign in with another operator key")
        raise SignInRequired(back_to)
    return Visitor(session.key_id, session)


async def checked_form(request: Request) -> None:
    """403 unless the posted form carries the session's CSRF token."""
    form = await request.form()
    if not session_of(request).csrf_matches(form.get(CSRF_FIELD)):
        raise HTTPException(403, CSRF_REFUSED)


def acting(
    visitor: Annotated[Visitor, Depends(signed_in)],
    _: Annotated[None, Depends(checked_form)],
) -> Visitor:
    """A signed-in operator posting one of the page's own forms."""
    return visitor


def local_path(request: Request, target: str | None) -> str | None:
    """`target` if it is a path inside the page (never another site: no open redirect)."""
    if not target:
        return None
    root = request.scope.get("root_path", "")
    parts = urlsplit(target)
    foreign = parts.scheme or parts.netloc or target.startswith("//") or "\\" in target
    if foreign or not target.startswith(root + "/"):
        return None
    return target


def _query(request: Request) -> str:
    return f"?{request.url.query}" if request.url.query else ""


SignedIn = Annotated[Visitor, Depends(signed_in)]
Acting = Annotated[Visitor, Depends(acting)]
