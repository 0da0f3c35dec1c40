"""Who may do what: every `/v1` request (but webhooks) carries an API key.

`Authorization: Bearer swk_...`. A workspace key gets an operator service scoped to
its workspace, so another workspace's integration is simply not found (404, never
403: a key learns nothing about what it may not see); an operator key sees all, and
only it passes `operator_only`.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.keys import VerifiedKeys
from models.api_keys import Principal, verify_key
from worker.operator import Operator
from worker.runtime import Runtime

CHALLENGE: Final = {"WWW-Authenticate": "Bearer"}
_bearer = HTTPBearer(auto_error=False, description="An API key: `syncworker api-keys create`")


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def operator_of(request: Request) -> Operator:
    """The app's operator service, unscoped (for the page's operators and the receiver)."""
    operator: Operator = request.app.state.operator
    return operator


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified key's principal; 401 without a key or with one that does not verify.

    Async, so a key the cache remembers costs no thread hop; the database is asked in
    the thread pool.
    """
    if credentials is None:
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", CHALLENGE)
    presented = credentials.credentials
    keys: VerifiedKeys = request.app.state.verified_keys
    found = keys.cached(presented)
    if found is None:
        found = await run_in_threadpool(_verify, runtime_of(request), presented)
        keys.remember(presented, found)
    if found is None:
        raise HTTPException(401, "the API key is not valid or was revoked", CHALLENGE)
    return found


def _verify(runtime: Runtime, presented: str) -> Principal | None:
    with runtime.sessions() as session:
        return verify_key(session, presented)


async def operator_for(request: Request, who: Annotated[Principal, Depends(principal)]) -> Operator:
    """The operator service as this key may use it: all, or its workspace only."""
    base = operator_of(request)
    if who.is_operator:
        return base
    # A workspace key always names its workspace (models.api_keys); "" would see nothing.
    return base.scoped(who.workspace_id or "")


async def operator_only(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """403 for a workspace key on an operator's route."""
    if not who.is_operator:
        raise HTTPException(403, "this needs an operator key")
    return who


Caller = Annotated[Principal, Depends(principal)]
Scoped = Annotated[Operator, Depends(operator_for)]
OperatorKey = Annotated[Principal, Depends(operator_only)]
