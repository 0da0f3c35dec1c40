"""`POST /v1/webhooks/{provider}/{integrationId}`: the providers' webhook receiver.

No API key: the provider's signature is the authentication (Superwall signs through
Svix; RevenueCat sends the Authorization header value set in its dashboard), checked
against the integration's own `webhook_secret` by `worker.connectors.webhooks`.

- The body is read as a stream and refused with 413 as soon as it passes
  `SYNCWORKER_API_WEBHOOK_MAX_BYTES` (or at once when its Content-Length says it will),
  so a flood costs at most that much memory.
- Events are stored once per event id; the answer is 2xx only after the commit, so a
  provider that sees 2xx can forget the event, and one that sees anything else retries.
- A bad signature or body is 400 and stores nothing; an integration that does not exist,
  is deleted or is another provider's is 404.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.auth import operator_of
from api.schemas import IntegrationActionResult, IntegrationProvider
from models.status import Provider
from worker.connectors.webhooks import SCHEMES

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

RECEIVERS: Final = ", ".join(sorted(p.value for p in SCHEMES))


async def bounded_body(request: Request, cap: int) -> bytes:
    """The request body, or 413 once it passes `cap` bytes (before reading the rest)."""
    too_large = HTTPException(413, f"the webhook body is larger than {cap} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise too_large
    return bytes(body)


@router.post(
    "/{provider}/{integration_id}",
    response_model=IntegrationActionResult,
    summary="Receive a provider's webhook (signed; no API key)",
)
async def receive(
    provider: IntegrationProvider, integration_id: str, request: Request
) -> IntegrationActionResult:
    kind = Provider(provider.value)
    if kind not in SCHEMES:
        raise HTTPException(404, f"no webhook receiver for {kind}; there is one for {RECEIVERS}")
    operator = operator_of(request)
    body = await bounded_body(request, request.app.state.runtime.settings.api_webhook_max_bytes)
    headers = dict(request.headers)
    stored = await run_in_threadpool(operator.receive_webhook, integration_id, kind, headers, body)
    return IntegrationActionResult(ok=True, message=f"{stored} event(s) stored")
