"""The integrations page as an application of its own, mounted under the API at `/ui`.

A sub-application so that the page keeps its own ways beside the JSON API's: errors are
HTML pages rather than `{ok: false}` bodies, a visitor who is not signed in is sent to
sign in, the session cookie and the security headers apply to the page only.

Without a session secret (a deployment with its own broker that did not set
`SYNCWORKER_API_SESSION_SECRET`) the page is not served: every request under `/ui` answers
503 with the one-line reason, while the API goes on working.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import status_of, validation_message
from api.page import actions, signin, views
from api.page.guard import SignInRequired
from api.page.render import environment, path_for, render
from api.page.session import SessionMiddleware, Wall
from models.errors import InvalidValue, SyncWorkerError
from worker.operator import Operator
from worker.runtime import Runtime

log = structlog.get_logger(__name__)

PATH: Final = "/ui"
STATIC: Final = Path(__file__).parent / "static"
# No script, no frame, no foreign origin: the page works offline and cannot be framed
# (its buttons act) or made to post elsewhere.
HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def mount(api: FastAPI, runtime: Runtime, operator: Operator, *, wall: Wall = time.time) -> None:
    """Serve the page at `/ui` of `api`, and send `/` there."""
    api.mount(PATH, create_page(runtime, operator, wall=wall), name="page")

    @api.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(PATH + "/", 307)


def create_page(runtime: Runtime, operator: Operator, *, wall: Wall = time.time) -> ASGIApp:
    """The page over one runtime and its operator service; `wall` times sessions."""
    try:
        secret = runtime.settings.session_secret()
    except InvalidValue as problem:
        log.warning("page.disabled", reason=str(problem))
        return PlainTextResponse(f"the integrations page is off: {problem}\n", 503)
    page = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    page.state.runtime = runtime
    page.state.operator = operator
    page.state.templates = environment()
    page.state.wall = wall
    page.include_router(signin.router)
    page.include_router(views.router)
    page.include_router(actions.router)
    page.mount("/static", StaticFiles(directory=STATIC), name="static")
    _install_errors(page)
    page.add_middleware(SessionMiddleware, secret=secret, wall=wall)
    return SecurityHeaders(page)


def _install_errors(page: FastAPI) -> None:
    @page.exception_handler(SignInRequired)
    async def sign_in(request: Request, signal: SignInRequired) -> Response:
        query = {"next": signal.back_to} if signal.back_to else None
        return RedirectResponse(path_for(request, "sign_in", query), 303)

    @page.exception_handler(SyncWorkerError)
    async def refused(request: Request, error: SyncWorkerError) -> HTMLResponse:
        return _error(request, status_of(error), str(error))

    @page.exception_handler(HTTPException)
    async def http(request: Request, error: HTTPException) -> HTMLResponse:
        return _error(request, error.status_code, str(error.detail))

    @page.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> HTMLResponse:
        return _error(request, 422, validation_message(error))

    @page.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> HTMLResponse:
        log.error("page.unexpected_error", path=request.url.path, error_type=type(error).__name__)
        return _error(request, 500, "internal error: the server log has the details")


def _error(request: Request, code: int, message: str) -> HTMLResponse:
    return render(request, "error.html", code, code=code, message=message)


class SecurityHeaders:
    """Adds `HEADERS` to every response of the page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
