"""The Shopify connector: a shop's orders, customers and products (REST Admin API).

Documented API used (https://shopify.dev/docs/api/admin-rest, version `2024-10` pinned):

- `GET https://{shop}.myshopify.com/admin/api/2024-10/{orders,customers,products}.json`,
  `X-Shopify-Access-Token: <Admin API access token>` (`shpat_`; `shpca_`/`shppa_` for
  app-installed and legacy private-app tokens); answers `{"orders": [...]}` and so on;
- cursor pagination: `limit` (at most 250) with the filters on the first call, then the
  `page_info` of the `Link: <...>; rel="next"` header, with which only `limit` and `fields`
  may be sent (the filters travel inside `page_info`). Only `page_info` is taken from the
  link: the request goes to the shop's own host, so no answer can send the token elsewhere;
- incremental by `updated_at_min` (inclusive); orders with `status=any`, else only open
  orders are listed;
- rate limits: a leaky bucket per app and shop, reported on every answer as
  `X-Shopify-Shop-Api-Call-Limit: used/size` and leaking size/20 calls a second (40 and 2/s on
  standard plans, 80 and 4/s on Advanced). Above 80% full the next call first waits for the
  bucket to drain back (`call_limit_wait`); a 429 with `Retry-After` is waited out by the HTTP
  layer. Errors are `{"errors": <free text>}`, so messages carry the status only.

Where requests go: each integration's shop is its own host, so a sync uses a client for
`https://{shop_domain}`, closed when the sync ends. A configured `base_url` (tests, the demo's
fake) replaces that host for every shop: the fake tells shops apart by their token.

A stream's cursor, by `updated_at` (ISO 8601 with offset, compared as instants):
`updated_at_min` (the newest `updated_at` stored, the next run's lower bound) and `skip_ids`
(the ids at exactly that instant already stored); while a run is under way also `page_info`
(the next page, to resume after a crash) and `newest`/`newest_ids` (the run's future bound).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import structlog

from models.errors import InvalidCredentials
from models.status import Provider
from worker.connectors.base import (
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
from worker.connectors.errors import ConfigurationError, MalformedResponse, RequestRejected
from worker.connectors.http import HeaderAuth, HttpOptions, ProviderClient, ProviderSession
from worker.connectors.http import _decode as decode_json  # public calls give no headers

log = structlog.get_logger(__name__)

API_VERSION = "2024-10"  # a supported stable version; object shapes are pinned to it
MAX_PAGE_SIZE = 250  # Shopify's documented maximum `limit`
STREAMS = ("orders", "customers", "products")
STREAM_PARAMS: dict[str, dict[str, str]] = {"orders": {"status": "any"}}
TOKEN_PREFIXES = ("shpat_", "shpca_", "shppa_")
SHOP_DOMAIN = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
CALL_LIMIT_HEADER = "x-shopify-shop-api-call-limit"
# Keep a fifth of the bucket free for the merchant's other apps and for retries.
BUCKET_HIGH_WATER = 0.8
# Every plan's bucket leaks its size in 20 seconds (40 at 2/s, 80 at 4/s, 400 at 20/s).
BUCKET_DRAIN_SECONDS = 20.0


def call_limit_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds until the shop's bucket drains back below the high-water mark, or None."""
    used, _, size = response.headers.get(CALL_LIMIT_HEADER, "").partition("/")
    try:
        used_calls, bucket = float(used), float(size)
    except ValueError:
        return None
    excess = used_calls - bucket * BUCKET_HIGH_WATER
    if bucket <= 0 or excess <= 0:
        return None
    return excess * BUCKET_DRAIN_SECONDS / bucket


class ShopifyConnector:
    """Syncs a Shopify shop's orders, customers and products."""

    provider = Provider.SHOPIFY
    required_credentials: tuple[str, ...] = ("shop_domain", "access_token")

    def __init__(
        self,
        *,
        base_url: str | None = None,
        http: HttpOptions | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.base_url = base_url  # None: every shop's own https://{shop_domain}
        self.options = http or HttpOptions()
        self.page_size = page_size

    def client_for(self, shop_domain: str) -> ProviderClient:
        """A client for one shop (see the module docstring); the caller closes it."""
        return ProviderClient(
            self.base_url or f"https://{shop_domain}",
            options=self.options,
            rate_limit=call_limit_wait,
        )

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """`shop_domain` (`<name>.myshopify.com`) and `access_token` (`shpat_...`)."""
        reject_unknown(raw, self.required_credentials, provider=self.provider)
        shop = credential(raw, "shop_domain", provider=self.provider).strip().lower()
        if not SHOP_DOMAIN.fullmatch(shop):
            raise InvalidCredentials(
                "shopify credentials: shop_domain must look like <name>.myshopify.com"
            )
        token = credential(raw, "access_token", provider=self.provider)
        if not token.startswith(TOKEN_PREFIXES):
            raise InvalidCredentials(
                "shopify credentials: access_token must be an Admin API token (shpat_...)"
            )
        return {"shop_domain": shop, "access_token": token}

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        credentials = self.validate_credentials(ctx.credentials)
        streams = _streams(ctx.filters)
        token = credentials["access_token"]
        with self.client_for(credentials["shop_domain"]) as client:
            api = client.authorized(HeaderAuth(lambda _: {"X-Shopify-Access-Token": token}))

            def sync_stream(stream: str, tally: SyncTally) -> None:
                cursor = _StreamCursor.load(ctx.cursors.get(stream), stream, tally)
                _StreamSync(api, stream, self.page_size, cursor, sink, tally).run()
                log.info("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

            return sync_streams(streams, sync_stream)

    def close(self) -> None:
        """Nothing pooled between syncs: each sync closes its shop's client."""


def _streams(filters: Mapping[str, Any]) -> tuple[str, ...]:
    """The streams `filters["objects"]` selects (all three by default)."""
    chosen = filters.get("objects")
    if chosen is None:
        return STREAMS
    if not isinstance(chosen, list | tuple) or not chosen or set(chosen) - set(STREAMS):
        raise ConfigurationError(f"shopify filters: objects must be some of {list(STREAMS)}")
    return tuple(name for name in STREAMS if name in chosen)


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 timestamp with an offset as an aware datetime, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


@dataclass
class _StreamCursor:
    """One stream's position (see the module docstring); timestamps kept as Shopify wrote them."""

    updated_at_min: str | None = None
    skip_ids: set[str] = field(default_factory=set)
    page_info: str | None = None
    newest: str | None = None
    newest_ids: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None, stream: str, tally: SyncTally) -> _StreamCursor:
        """The stored cursor; an unreadable one restarts the stream (upserts make that safe)."""
        stored = stored or {}
        texts = ("updated_at_min", "page_info", "newest")
        lists = ("skip_ids", "newest_ids")
        bad = [k for k in texts if not isinstance(stored.get(k, ""), str)]
        bad += [k for k in lists if not isinstance(stored.get(k, []), list)]
        bad += [k for k in ("updated_at_min", "newest") if k in stored and not _instant(stored[k])]
        if bad:
            tally.warn(f"{stream}: stored cursor unreadable ({bad[0]}); synced from the start")
            return cls()
        return cls(
            stored.get("updated_at_min"),
            set(stored.get("skip_ids", [])),
            stored.get("page_info"),
            stored.get("newest"),
            set(stored.get("newest_ids", [])),
        )

    def already_stored(self, external_id: str, updated: datetime) -> bool:
        return updated == _instant(self.updated_at_min) and external_id in self.skip_ids

    def saw(self, external_id: str, updated_at: str, updated: datetime) -> None:
        newest = _instant(self.newest)
        if newest is None or updated > newest:
            self.newest, self.newest_ids = updated_at, {external_id}
        elif updated == newest:
            self.newest_ids.add(external_id)

    def finish(self) -> None:
        """The run reached the end: the newest seen becomes the next run's lower bound."""
        if self.newest is not None:
            if _instant(self.newest) == _instant(self.updated_at_min):
                self.newest_ids |= self.skip_ids
            self.updated_at_min, self.skip_ids = self.newest, self.newest_ids
        self.page_info, self.newest, self.newest_ids = None, None, set()

    def dump(self) -> dict[str, Any]:
        dumped = {
            "updated_at_min": self.updated_at_min,
            "skip_ids": sorted(self.skip_ids),
            "page_info": self.page_info,
            "newest": self.newest,
            "newest_ids": sorted(self.newest_ids),
        }
        return {key: value for key, value in dumped.items() if value not in (None, [])}


@dataclass
class _StreamSync:
    """Pages through one stream, storing each page with the cursor that follows it."""

    api: ProviderSession
    stream: str
    page_size: int
    cursor: _StreamCursor
    sink: PageSink
    tally: SyncTally
    unreadable: int = 0

    @property
    def path(self) -> str:
        return f"/admin/api/{API_VERSION}/{self.stream}.json"

    def run(self) -> None:
        first = True
        while True:
            payload, next_page = self._fetch(first)
            items = payload.get(self.stream) if isinstance(payload, dict) else None
            if not isinstance(items, list):
                raise MalformedResponse(f"GET {self.path}: missing list {self.stream!r}")
            records = self._records(items)
            if next_page:
                self.cursor.page_info = next_page
            else:
                self.cursor.finish()
            self.tally.store(self.sink, Page(self.stream, records, self.cursor.dump()))
            if not next_page:
                break
            first = False
        if self.unreadable:
            self.tally.warn(
                f"{self.stream}: skipped {self.unreadable} objects without a readable id/updated_at"
            )

    def _fetch(self, first: bool) -> tuple[Any, str | None]:
        try:
            return self._get()
        except RequestRejected:
            if not (first and self.cursor.page_info):
                raise
        # A crashed run's page_info no longer works (they are not meant to be kept): list
        # again from the lower bound; re-stored records are upserts.
        self.tally.warn(f"{self.stream}: resume point expired; listed again from the last run")
        self.cursor.page_info = None
        return self._get()

    def _get(self) -> tuple[Any, str | None]:
        params: dict[str, Any] = {"limit": self.page_size}
        if self.cursor.page_info:
            params["page_info"] = self.cursor.page_info  # the filters travel inside it
        else:
            params.update(STREAM_PARAMS.get(self.stream, {}))
            if self.cursor.updated_at_min:
                params["updated_at_min"] = self.cursor.updated_at_min
        response = self.api.send("GET", self.path, params=params)
        payload = decode_json(response, f"GET {self.path}")
        link = response.links.get("next", {}).get("url")
        if link is None:
            return payload, None
        page_info = httpx.URL(link).params.get("page_info")
        if not page_info:
            raise MalformedResponse(f"GET {self.path}: Link rel=next without page_info")
        return payload, page_info

    def _records(self, items: list[Any]) -> tuple[Record, ...]:
        """The page's new records; objects without a readable id/updated_at are counted."""
        records: list[Record] = []
        for obj in items:
            raw_id = obj.get("id") if isinstance(obj, dict) else None
            updated_at = obj.get("updated_at") if isinstance(obj, dict) else None
            updated = _instant(updated_at)
            if not isinstance(raw_id, int) or isinstance(raw_id, bool) or updated is None:
                self.unreadable += 1
                continue
            external_id = str(raw_id)
            if not self.cursor.already_stored(external_id, updated):
                self.cursor.saw(external_id, str(updated_at), updated)
                records.append((external_id, obj))
        return tuple(records)
