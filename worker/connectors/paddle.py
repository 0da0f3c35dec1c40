"""The Paddle connector: a Paddle Billing account's transactions, subscriptions and customers.

Documented API used (https://developer.paddle.com/api-reference, `Paddle-Version: 1`):

- base `https://api.paddle.com` for live keys (`pdl_live_apikey_...`) and
  `https://sandbox-api.paddle.com` for sandbox keys (`pdl_sdbx_apikey_...`; a sandbox
  key's session names that host), the key as `Authorization: Bearer`; a configured
  `base_url` (tests, the demo) serves both;
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
stored at exactly that instant), a `worker.connectors.cursors.Mark` moved by every stored
page; pages come oldest first, so that mark is also where a crashed run resumes.
Subscriptions and customers keep `after` (the last id stored) while a listing is under way,
and nothing once it completes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Self

import httpx
import structlog

from models.errors import InvalidCredentials
from models.status import Provider
from models.sync_runs import SyncResult
from worker.connectors.base import (
    HttpConnector,
    Page,
    PageSink,
    Record,
    SyncContext,
    SyncTally,
    credential,
    reject_unknown,
    select_streams,
    sync_streams,
)
from worker.connectors.cursors import INSTANT, Mark, MarkKeys, instant, restore
from worker.connectors.errors import MalformedResponse
from worker.connectors.http import BearerAuth, HttpOptions, ProviderClient, ProviderSession
from worker.connectors.responses import error_fields, require

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
MARK = MarkKeys(INSTANT, "updated_at", "skip_ids")


class PaddleConnector(HttpConnector):
    """Syncs a Paddle Billing account's transactions, subscriptions and customers."""

    provider = Provider.PADDLE
    streams: ClassVar[tuple[str, ...]] = STREAMS
    required_credentials: tuple[str, ...] = ("api_key",)
    default_base_url: ClassVar[str] = "https://api.paddle.com"

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        headers = {"Paddle-Version": API_VERSION}
        # Paddle's error type and code; never its `detail`, which is free text.
        detail = error_fields(("error", "type"), ("error", "code"))
        return ProviderClient(base_url, options=options, headers=headers, error_detail=detail)

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
        # Sandbox keys only work on the sandbox host, unless one URL serves both.
        sandbox = key.startswith(SANDBOX_PREFIX) and not self.base_url
        api = self.client.authorized(BearerAuth(key), base_url=SANDBOX_URL if sandbox else None)

        def sync_stream(stream: str, tally: SyncTally) -> None:
            cursor = _StreamCursor.restore(ctx.cursors.get(stream), stream, tally)
            _StreamSync(api, stream, cursor, sink, tally).run()
            log.debug("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

        streams = select_streams(ctx.filters, STREAMS, provider=self.provider)
        return sync_streams(streams, sync_stream)


@dataclass
class _StreamCursor:
    """One stream's position: the transactions' mark, or a listing's last id (`after`)."""

    mark: Mark[datetime]
    after: str | None = None

    @classmethod
    def restore(cls, stored: Mapping[str, Any] | None, stream: str, tally: SyncTally) -> Self:
        """The stored cursor; an unreadable one restarts the stream with a warning."""
        return restore(stream, tally, lambda: cls._load(stored or {}), lambda: cls(Mark(MARK)))

    @classmethod
    def _load(cls, stored: Mapping[str, Any]) -> Self:
        after = stored.get("after")
        if after is not None and not isinstance(after, str):
            raise TypeError("after is not an id")
        return cls(MARK.load(stored), after)

    def params(self) -> dict[str, str]:
        if self.mark.at is not None:
            return {"updated_at[GTE]": str(self.mark.at)}
        return {"after": self.after} if self.after is not None else {}

    def dump(self) -> dict[str, Any]:
        if self.mark.at is not None:
            return self.mark.dump()
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
                self.cursor = _StreamCursor(Mark(MARK))  # listed in full: the next run starts over
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
        mark = self.cursor.mark
        for obj in data:
            external_id = obj.get("id") if isinstance(obj, dict) else None
            updated_at = obj.get("updated_at") if isinstance(obj, dict) else None
            if not isinstance(external_id, str) or (self.incremental and not instant(updated_at)):
                self.unreadable += 1
            elif not self.incremental:
                self.cursor.after = external_id
                records.append((external_id, obj))
            elif not mark.holds(external_id, str(updated_at)):
                mark.add(external_id, str(updated_at))
                records.append((external_id, obj))
        return tuple(records)
