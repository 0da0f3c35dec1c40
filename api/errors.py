"""Every error the API answers is `{ok: false, message}` with the status that fits.

Domain errors map by kind (one table, `STATUS_OF`); a request FastAPI could not
validate is a 422 naming the field, never echoing its value; anything unexpected is a
500 whose message says only that, while the log has the story. No traceback, no
credential and no request body ever reaches a response.
"""

from __future__ import annotations

from typing import Final

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.errors import (
    DuplicateIntegration,
    IntegrationNotFound,
    InvalidValue,
    SchemaOutdated,
    SyncWorkerError,
    TransitionNotAllowed,
)
from worker.errors import BrokerUnavailable, ServiceUnavailable

log = structlog.get_logger(__name__)

# Most specific first: the first kind an error is an instance of decides its status.
STATUS_OF: Final[tuple[tuple[type[SyncWorkerError], int], ...]] = (
    (IntegrationNotFound, 404),
    (TransitionNotAllowed, 409),
    (DuplicateIntegration, 409),
    (InvalidValue, 422),
    (BrokerUnavailable, 503),
    (ServiceUnavailable, 503),
    (SchemaOutdated, 503),
)
# A validation message names at most this many problems; the rest are counted.
MAX_PROBLEMS: Final = 3


def refusal(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: seed 003's IntegrationActionResult with ok false."""
    return JSONResponse({"ok": False, "message": message}, status_code=status, headers=headers)


def status_of(error: SyncWorkerError) -> int:
    return next((status for kind, status in STATUS_OF if isinstance(error, kind)), 400)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(SyncWorkerError)
    async def domain(_: Request, error: SyncWorkerError) -> JSONResponse:
        return refusal(status_of(error), str(error))

    @app.exception_handler(HTTPException)
    async def http(_: Request, error: HTTPException) -> JSONResponse:
        return refusal(error.status_code, str(error.detail), dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return refusal(422, validation_message(error))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.error("api.unexpected_error", path=request.url.path, error_type=type(error).__name__)
        return refusal(500, "internal error: the server log has the details")


def validation_message(error: RequestValidationError) -> str:
    """`body.filters: Input should be a valid dictionary; ...`: where and what, never the value."""
    problems = [
        f"{'.'.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', 'invalid')}"
        for item in error.errors()
    ]
    shown = "; ".join(problems[:MAX_PROBLEMS])
    more = len(problems) - MAX_PROBLEMS
    return f"invalid request: {shown}" + (f" (and {more} more)" if more > 0 else "")


class BodyCap:
    """ASGI middleware: a request body past `max_bytes` is a 413 in the one error shape.

    A declared Content-Length past the cap is refused before a byte is read; a body that
    streams past it fails the read with 413, so nothing holds more than the cap in memory.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is larger than {self.max_bytes} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await refusal(413, message)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            received = await receive()
            if received["type"] == "http.request":
                seen += len(received.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, message)
            return received

        await self.app(scope, counted, send)
