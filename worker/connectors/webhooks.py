"""Webhook ingestion: verify a provider's delivery, parse its event, store it.

    records = accept_webhook(Provider.SUPERWALL, headers, body, secret=secret, now=now)
    stored = ingest_webhook(sessions, integration_id, Provider.SUPERWALL, headers, body,
                            secret=secret, now=now)

`accept_webhook` is pure (no I/O): it verifies and parses, or raises `WebhookRejected`
(whatever the headers hold). An empty signing secret (`""`, or Svix's bare `whsec_`) is a
`ConfigurationError`: it would accept a signature anyone can make.
`ingest_webhook` then upserts the records into the integration's "events" stream, keyed by
event id (a redelivery is stored once), and sets `Integration.data_last_received_at`, in
one transaction. A rejected delivery stores nothing and changes nothing.

The providers' documented schemes:

- Superwall (https://superwall.com/docs/integrations/webhooks-verify) delivers through
  Svix: `svix-id`, `svix-timestamp` (Unix seconds) and `svix-signature` (space-separated
  `v1,<base64 HMAC-SHA256>`, several during a secret rotation) over
  f"{id}.{timestamp}.{raw body}", keyed by the base64 after `whsec_` in the endpoint's
  signing secret; the unbranded `webhook-*` names are accepted too. A timestamp further than
  TOLERANCE from `now` is refused as a replay. The payload is `{"object": "event", "type",
  "projectId", "applicationId", "timestamp", "data": {"id", ...}}`; the event id is
  `data.id` (or a top-level `id`, for a V2 payload without one).
- RevenueCat (https://www.revenuecat.com/docs/integrations/webhooks) sends the
  `Authorization` header value set in its dashboard with every POST. It signs nothing, so
  there is no authenticated timestamp to hold a replay window to; a replayed event is the
  same event id, stored once. The payload is `{"api_version", "event": {"id", "type",
  "event_timestamp_ms", ...}}`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ensure_utc
from models.db import lock_integration
from models.errors import IntegrationNotFound
from models.records import store_page
from models.status import Provider
from worker.connectors.base import Record
from worker.connectors.errors import ConfigurationError, WebhookRejected

log = structlog.get_logger(__name__)

STREAM = "events"
TOLERANCE = timedelta(minutes=5)  # the window Svix's own verification libraries allow
SVIX_SECRET_PREFIX = "whsec_"  # noqa: S105 - the documented prefix of Svix secrets, not one
# Svix ids are ~30 characters and a signature header holds a few 44-character entries; longer
# headers are refused before any work. Unix seconds have 10 digits until 2286.
MAX_ID_CHARS = 256
MAX_SIGNATURES_CHARS = 4096
MAX_TIMESTAMP_DIGITS = 12


def accept_webhook(
    provider: Provider, headers: Mapping[str, str], body: bytes, *, secret: str, now: datetime
) -> tuple[Record, ...]:
    """The delivery's records, once its signature (and timestamp) check out."""
    scheme = SCHEMES.get(provider)
    if scheme is None:
        raise WebhookRejected(f"{provider} webhooks: not supported")
    verify, parse = scheme
    if not isinstance(secret, str) or not secret:
        raise ConfigurationError(f"{provider} webhooks: the signing secret is empty")
    # Only text headers: a framework's list or bytes value is not a header these schemes send.
    texts = {k.lower(): v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}
    verify(texts, body, secret, now)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, hostile nesting
        raise WebhookRejected(f"{provider} webhooks: body is not valid JSON") from None
    return (parse(payload),)


def ingest_webhook(
    sessions: sessionmaker[Session],
    integration_id: uuid.UUID | str,
    provider: Provider,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now: datetime,
) -> int:
    """Verify, parse and store one delivery for an integration; the number of records stored."""
    records = accept_webhook(provider, headers, body, secret=secret, now=now)
    with sessions() as session, session.begin():
        integration = lock_integration(session, integration_id)
        if integration.deleted:
            raise IntegrationNotFound(integration_id)
        if integration.provider != provider:
            raise WebhookRejected(
                f"{provider} webhooks: integration {integration_id} is a {integration.provider} one"
            )
        stored = store_page(
            session,
            integration_id=integration.id,
            run_id=None,
            stream=STREAM,
            records=records,
            cursor=None,
            now=now,
        )
        integration.data_last_received_at = now
    log.info(
        "webhook.stored", integration_id=str(integration_id), provider=str(provider), records=stored
    )
    return stored


def _verify_svix(headers: Mapping[str, str], body: bytes, secret: str, now: datetime) -> None:
    """Svix's v1 scheme: HMAC-SHA256 of id, timestamp and body, within TOLERANCE of now."""
    where = "superwall webhooks:"
    message_id = headers.get("svix-id") or headers.get("webhook-id")
    stamp = headers.get("svix-timestamp") or headers.get("webhook-timestamp")
    signatures = headers.get("svix-signature") or headers.get("webhook-signature")
    if not (message_id and stamp and signatures):
        raise WebhookRejected(f"{where} svix-id, svix-timestamp and svix-signature are required")
    if len(message_id) > MAX_ID_CHARS or len(signatures) > MAX_SIGNATURES_CHARS:
        raise WebhookRejected(f"{where} svix-id or svix-signature is too long")
    key = _svix_key(secret)
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_TIMESTAMP_DIGITS):
        raise WebhookRejected(f"{where} svix-timestamp is not a Unix time")
    sent = datetime.fromtimestamp(int(stamp), tz=UTC)
    if abs(ensure_utc(now) - sent) > TOLERANCE:
        minutes = int(TOLERANCE.total_seconds() // 60)
        raise WebhookRejected(f"{where} timestamp is more than {minutes} minutes off (a replay?)")
    signed = f"{message_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for entry in signatures.split():
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature.encode(), expected):
            return
    raise WebhookRejected(f"{where} signature does not match")


def _svix_key(secret: str) -> bytes:
    """The HMAC key in a `whsec_<base64>` secret; ConfigurationError if malformed or empty."""
    try:
        key = base64.b64decode(secret.removeprefix(SVIX_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(
            "superwall webhooks: the signing secret is not whsec_<base64>"
        ) from None
    if not key:
        raise ConfigurationError("superwall webhooks: the signing secret is empty")
    return key


def _verify_revenuecat(headers: Mapping[str, str], body: bytes, secret: str, now: datetime) -> None:
    """The configured `Authorization` header value, compared in constant time."""
    sent = headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), secret.encode()):
        raise WebhookRejected("revenuecat webhooks: authorization header does not match")


def _parse_superwall(payload: Any) -> Record:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or not isinstance(payload.get("type"), str):
        raise WebhookRejected("superwall webhooks: body is not an event (no type/data object)")
    event_id = data.get("id") or payload.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookRejected("superwall webhooks: event has no id (data.id)")
    return event_id, payload


def _parse_revenuecat(payload: Any) -> Record:
    event = payload.get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise WebhookRejected("revenuecat webhooks: body is not an event (no event.type)")
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookRejected("revenuecat webhooks: event has no id (event.id)")
    return event_id, {**event, "api_version": payload.get("api_version")}


Verifier = Callable[[Mapping[str, str], bytes, str, datetime], None]
SCHEMES: dict[Provider, tuple[Verifier, Callable[[Any], Record]]] = {
    Provider.SUPERWALL: (_verify_svix, _parse_superwall),
    Provider.REVENUECAT: (_verify_revenuecat, _parse_revenuecat),
}
