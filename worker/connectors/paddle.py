"""The Paddle connector: a Paddle Billing account's transactions, subscriptions and customers.

Documented API used (https://developer.paddle.com/api-reference, `Paddle-Version: 1`):

- base `https://api.paddle.com` for live keys (`pdl_live_apikey_...`) and
  `https://sandbox-api.paddle.com` for sandbox keys (`pdl_sdbx_apikey_...`), the key as
  `Authorization: Bearer`; a configured `base_url` (tests, the demo) serves both;
- `GET /transactions` (`per_page` at most 30), `/subscriptions` and `/customers` (at most
  200; customers with `status=active,archived`, else archived ones are left out), answering
  `{"data": [...], "meta": {"pagination": {"per_page", "next", "has_more",
  "estimated_total"}}}`. The next page is `meta.pagination.next`, a full URL with `after=`:
  only its query is used, sent to the key's own host, so no answer can send the key elsewhere;
- date filters with `[LT]`/`[LTE]`/`[GT]`/`[GTE]` exist for transactions only: they are
  listed with `updated_at[GTE]` and `order_by=updated_at[ASC]`; subscriptions and customers
  can only be ordered by id (`order_by=id[ASC]`, ids sort by creation);
- errors as `{"error": {"type", "code", "detail", "documentation_url"}, "meta": ...}`: 401/403
  for a bad or revoked key, 429 (`too_many_requests`, 240 requests a minute per IP) with
  `Retry-After`, both classified by the HTTP layer; messages carry `type/code`, never `detail`.

Incremental: transactions are listed from the newest `updated_at` stored, so a run fetches
only what changed. Subscriptions and customers have no change filter and change after
creation (status, email), so every run lists them in full; upserts make that idempotent.

Cursors: transactions keep `updated_at` (the newest `updated_at` stored) and `skip_ids` (ids
stored at exactly that instant), moved by every stored page; pages come oldest first, so
that mark is also where a crashed run resumes. Subscriptions and customers keep `after` (the
last id stored) while a listing is under way, and nothing once it completes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

import httpx
import structlog

from models.errors import InvalidCredentials
from models.status import Provider
from worker.connectors.base import (
    HttpConnector,
    Page,
    PageSink,
    Record,
    SyncContext,
    SyncResult,
    SyncTally,
    credential,
    reject_unknown,
    sync_streams,
)
from worker.connectors.errors import ConfigurationError, MalformedResponse
from worker.connectors.http import (
    BearerAuth,
    HttpOptions,
    ProviderClient,
    ProviderSession,
    require,
)

log = structlog.get_logger(__name__)

API_VERSION = "1"  # the Paddle-Version these object shapes were written against
SANDBOX_URL = "https://sandbox-api.paddle.com"
LIVE_PREFIX, SANDBOX_PREFIX = "pdl_live_", "pdl_sdbx_"
STREAMS = ("transactions", "subscriptions", "customers")
# Documented maximum `per_page` of each list.
PAGE_SIZES = {"transactions": 30, "subscriptions": 200, "customers": 200}
STREAM_PARAMS: dict[str, dict[str, str]] = {
    "transactions": {"order_by": "updated_at[ASC]"},
    "subscriptions": {"order_by": "id[ASC]"},
    "customers": {"order_by": "id[ASC]", "status": "active,archived"},
}


class PaddleConnector(HttpConnector):
    """Syncs a Paddle Billing account's transactions, subscriptions and customers."""

    provider = Provider.PADDLE
    required_credentials: tuple[str, ...] = ("api_key",)
    default_base_url: ClassVar[str] = "https://api.paddle.com"

    def __init__(self, *, base_url: str | None = None, http: HttpOptions | None = None) -> None:
        super().__init__(base_url=base_url, http=http)
        # Sandbox keys only work on the sandbox host: a second pool, unless one URL serves both.
        self.sandbox_client = (
            self.client if base_url else self.make_client(SANDBOX_URL, self.client.options)
        )

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        headers = {"Paddle-Version": API_VERSION}
        return ProviderClient(base_url, options=options, headers=headers, error_detail=_detail)

    def close(self) -> None:
        super().close()
        if self.sandbox_client is not self.client:
            self.sandbox_client.close()

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """`api_key`: a live (`pdl_live_`) or sandbox (`pdl_sdbx_`) Paddle Billing API key."""
        reject_unknown(raw, self.required_credentials, provider=self.provider)
        key = credential(raw, "api_key", provider=self.provider)
        if not key.startswith((LIVE_PREFIX, SANDBOX_PREFIX)):
            raise InvalidCredentials(
                "paddle credentials: api_key must start with pdl_live_ or pdl_sdbx_"
            )
        return {"api_key": key}

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        key = self.validate_credentials(ctx.credentials)["api_key"]
        client = self.sandbox_client if key.startswith(SANDBOX_PREFIX) else self.client
        api = client.authorized(BearerAuth(key))

        def sync_stream(stream: str, tally: SyncTally) -> None:
            cursor = _StreamCursor.load(ctx.cursors.get(stream), stream, tally)
            _StreamSync(api, stream, cursor, sink, tally).run()
            log.info("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

        return sync_streams(_streams(ctx.filters), sync_stream)


def _streams(filters: Mapping[str, Any]) -> tuple[str, ...]:
    """The streams `filters["objects"]` selects (all three by default)."""
    chosen = filters.get("objects")
    if chosen is None:
        return STREAMS
    if not isinstance(chosen, list | tuple) or not chosen or set(chosen) - set(STREAMS):
        raise ConfigurationError(f"paddle filters: objects must be some of {list(STREAMS)}")
    return tuple(name for name in STREAMS if name in chosen)


def _detail(response: httpx.Response) -> str | None:
    """Paddle's error type and code; never its `detail`, which is free text."""
    try:
        error = response.json()["error"]
        parts = [error.get("type"), error.get("code")]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return "/".join(part for part in parts if isinstance(part, str)) or None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass
class _StreamCursor:
    """One stream's position (see the module docstring)."""

    updated_at: str | None = None
    skip_ids: set[str] = field(default_factory=set)
    after: str | None = None

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None, stream: str, tally: SyncTally) -> _StreamCursor:
        """The stored cursor; an unreadable one restarts the stream (upserts make that safe)."""
        stored = stored or {}
        bound, ids, after = (
            stored.get("updated_at"),
            stored.get("skip_ids", []),
            stored.get("after"),
        )
        if (
            (bound is not None and _instant(bound) is None)
            or not isinstance(ids, list)
            or not isinstance(after, str | None)
        ):
            tally.warn(f"{stream}: stored cursor unreadable; synced from the start")
            return cls()
        return cls(bound, set(ids), after)

    def params(self) -> dict[str, str]:
        if self.updated_at is not None:
            return {"updated_at[GTE]": self.updated_at}
        return {"after": self.after} if self.after is not None else {}

    def saw(self, external_id: str, updated_at: str) -> None:
        """Move the mark to a stored transaction's `updated_at` if it is the newest so far."""
        updated, bound = _instant(updated_at), _instant(self.updated_at)
        if bound is None or (updated is not None and updated > bound):
            self.updated_at, self.skip_ids = updated_at, {external_id}
        elif updated == bound:
            self.skip_ids.add(external_id)

    def dump(self) -> dict[str, Any]:
        if self.updated_at is not None:
            return {"updated_at": self.updated_at, "skip_ids": sorted(self.skip_ids)}
        return {"after": self.after} if self.after is not None else {}


@dataclass
class _StreamSync:
    """Pages through one stream, storing each page with the cursor that follows it."""

    api: ProviderSession
    stream: str
    cursor: _StreamCursor
    sink: PageSink
    tally: SyncTally
    unreadable: int = 0

    @property
    def endpoint(self) -> str:
        return f"GET /{self.stream}"

    @property
    def incremental(self) -> bool:
        return self.stream == "transactions"

    def run(self) -> None:
        params = {"per_page": str(PAGE_SIZES[self.stream]), **STREAM_PARAMS[self.stream]}
        params.update(self.cursor.params())
        while True:
            payload = self.api.get_json(f"/{self.stream}", params)
            data = require(payload, "data", list, endpoint=self.endpoint)
            meta = require(payload, "meta", dict, endpoint=self.endpoint)
            pagination = require(meta, "pagination", dict, endpoint=f"{self.endpoint} meta")
            more = require(pagination, "has_more", bool, endpoint=f"{self.endpoint} pagination")
            records = self._records(data)
            if not more and not self.incremental:
                self.cursor = _StreamCursor()  # listed in full: the next run starts over
            self.tally.store(self.sink, Page(self.stream, records, self.cursor.dump()))
            if not more:
                break
            params = self._next(pagination)
        if self.unreadable:
            needed = "id/updated_at" if self.incremental else "id"
            self.tally.warn(
                f"{self.stream}: skipped {self.unreadable} objects without a readable {needed}"
            )

    def _next(self, pagination: dict[str, Any]) -> dict[str, str]:
        """The query of `meta.pagination.next`, which must carry `after`."""
        link = require(pagination, "next", str, endpoint=f"{self.endpoint} pagination")
        params = dict(httpx.URL(link).params)
        if not params.get("after"):
            raise MalformedResponse(f"{self.endpoint}: pagination.next has no after")
        return params

    def _records(self, data: list[Any]) -> tuple[Record, ...]:
        """The page's new records, moving the cursor past them; unreadable ones are counted."""
        records: list[Record] = []
        bound, skip = _instant(self.cursor.updated_at), set(self.cursor.skip_ids)
        for obj in data:
            external_id = obj.get("id") if isinstance(obj, dict) else None
            updated_at = obj.get("updated_at") if isinstance(obj, dict) else None
            if not isinstance(external_id, str) or (
                self.incremental and _instant(updated_at) is None
            ):
                self.unreadable += 1
            elif not self.incremental:
                self.cursor.after = external_id
                records.append((external_id, obj))
            elif not (_instant(updated_at) == bound and external_id in skip):
                self.cursor.saw(external_id, str(updated_at))
                records.append((external_id, obj))
        return tuple(records)
