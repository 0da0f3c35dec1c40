"""Signed webhooks: the body, the Stripe-style signature, and the sink that POSTs them.

Each configured URL (SYNCWORKER_WEBHOOK_URLS, comma-separated) receives every event
as JSON, `{"id", "type", "createdAt", "data"}`, with these headers:

- `Webhook-Id`: the event id, the same on every resend. Delivery is at least once
  (a deliverer can die after the POST and before recording it), so receivers dedupe
  on it.
- `Syncworker-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`
  keyed with SYNCWORKER_WEBHOOK_SECRET. More than one `v1=` may appear (a rotation);
  one match is enough.

A receiver checks a delivery with the raw body, before parsing it:

    from worker.errors import SignatureError
    from worker.webhooks import SIGNATURE_HEADER, verify_signature

    try:
        verify_signature(secret, headers[SIGNATURE_HEADER], raw_body, now=datetime.now(UTC))
    except SignatureError:
        return 400

Only a 2xx answer counts as accepted; redirects are not followed, so a signed body
never goes anywhere but the configured URL. Nothing is sent unsigned: with URLs but
no secret configured, events wait in the outbox, their `last_error` saying why.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final
from urllib.parse import urlsplit

import httpx

from models.errors import InvalidValue
from worker.errors import DeliveryFailed, SignatureError
from worker.events import Event, Sink
from worker.settings import Settings

SIGNATURE_HEADER: Final = "Syncworker-Signature"
ID_HEADER: Final = "Webhook-Id"
SIGNATURE_SCHEME: Final = "v1"
USER_AGENT: Final = "syncworker-webhooks/1"
# Five minutes, as Stripe: wide enough for clock skew and a slow receiver, narrow enough
# that a captured request cannot be replayed later.
DEFAULT_TOLERANCE_S: Final = 300
# A real header is about 90 characters, a few more during a secret rotation; a longer one is
# not ours, and is refused before any work.
MAX_HEADER_CHARS: Final = 1024
# Unix seconds have 10 digits until the year 2286; more is not a time (and would overflow).
MAX_TIMESTAMP_DIGITS: Final = 12
# A v1 signature: the hex of an HMAC-SHA256.
_HEX_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
# Connecting should take a fraction of the whole budget; a receiver that cannot accept a
# connection in 3 s will not accept the body either.
CONNECT_TIMEOUT_S: Final = 3.0


def encode(event: Event) -> bytes:
    """The JSON body of one event."""
    body = {
        "id": str(event.id),
        "type": event.kind,
        "createdAt": event.created_at.isoformat(),
        "data": event.data,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def sign(secret: str, body: bytes, *, timestamp: int) -> str:
    """The `Syncworker-Signature` header value for `body` sent at `timestamp`."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={_digest(_key(secret), timestamp, body)}"


def verify_signature(
    secret: str,
    header: str | bytes | None,
    body: bytes,
    *,
    now: datetime,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> None:
    """Check a delivery's signature header against its raw body; raise SignatureError if off.

    The timestamp must be within `tolerance_s` of `now` either way, which stops replays.
    Whatever the header holds, the answer is SignatureError (fail closed); an empty secret
    is a configuration error (InvalidValue), never a key anyone could sign with.
    """
    key = _key(secret)
    if not isinstance(body, bytes | bytearray):
        raise SignatureError("the body to verify must be the raw bytes received")
    timestamp, signatures = _parse(header)
    if abs(now.timestamp() - timestamp) > tolerance_s:
        raise SignatureError(f"signature timestamp {timestamp} is outside the tolerance")
    expected = _digest(key, timestamp, bytes(body))
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise SignatureError("no signature matches the body")


def _key(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret:
        raise InvalidValue(
            "the webhook signing secret is empty: configure SYNCWORKER_WEBHOOK_SECRET "
            "(a signature made with an empty key proves nothing)"
        )
    return secret.encode()


def _digest(key: bytes, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


def _parse(header: object) -> tuple[int, list[str]]:
    """The timestamp and the well-formed v1 signatures; SignatureError for anything else."""
    if isinstance(header, bytes):
        header = header.decode("ascii", "replace")
    if not header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    if not isinstance(header, str) or len(header) > MAX_HEADER_CHARS:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is malformed")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and _is_unix_time(value):
            timestamp = int(value)
        elif key == SIGNATURE_SCHEME and _HEX_DIGEST.fullmatch(value):
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError(f"the {SIGNATURE_HEADER} header has no timestamp or no signature")
    return timestamp, signatures


def _is_unix_time(text: str) -> bool:
    """ASCII digits only (int() also takes "+1", "1_0" and other scripts' digits), bounded."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_TIMESTAMP_DIGITS


def fingerprint(url: str) -> str:
    """The sink name a URL is recorded under: a digest, since URLs often embed a token."""
    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


def origin(url: str) -> str:
    """Where a URL points, for errors and logs, without its path or query (they may be secret)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class WebhookSink:
    """POSTs signed events to one URL; anything but a 2xx answer is a DeliveryFailed."""

    def __init__(
        self,
        url: str,
        *,
        secret: str | None,
        client: httpx.Client,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.name = fingerprint(url)
        self.label = f"{origin(url)} ({self.name})"
        self._secret = secret
        self._client = client
        # The receiver compares the signature's timestamp with its own wall clock, so it is
        # the wall clock's, never the app clock's (the demo's runs fast).
        self._wall_clock = wall_clock

    def send(self, event: Event) -> None:
        if not self._secret:
            # Never unsigned, never dropped: the event waits until a secret is configured.
            raise DeliveryFailed(f"{self.label}: not sent, SYNCWORKER_WEBHOOK_SECRET is not set")
        body = encode(event)
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: str(event.id),
            SIGNATURE_HEADER: sign(self._secret, body, timestamp=int(self._wall_clock())),
        }
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{self.label}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryFailed(f"{self.label}: HTTP {response.status_code}")


def make_client(timeout_s: float) -> httpx.Client:
    """The HTTP client webhooks go out on: bounded timeouts, no redirects."""
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
    return httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT})


def webhook_sinks(settings: Settings, client: httpx.Client) -> Sequence[Sink]:
    """One sink per configured URL; none when webhooks are not configured."""
    return tuple(
        WebhookSink(url, secret=settings.webhook_secret, client=client)
        for url in settings.webhook_urls
    )
