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

Where requests go: each integration's shop is its own host, so a sync's session sends to
`https://{shop_domain}` through the connector's one pooled client. A configured `base_url`
(tests, the demo's fake) replaces that host for every shop: the fake tells shops apart by
their token.

A stream's cursor, a `worker.connectors.cursors.WalkCursor` by `updated_at` (ISO 8601 with
offset, compared as instants):
`updated_at_min` (the newest `updated_at` stored, the next run's lower bound) and `skip_ids`
(the ids at exactly that instant already stored); while a run is under way also `page_info`
(the next page, to resume after a crash) and `newest`/`newest_ids` (the run's future bound).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

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
from worker.connectors.cursors import INSTANT, WalkCursor, WalkKeys, instant
from worker.connectors.errors import MalformedResponse
from worker.connectors.http import HeaderAuth, HttpOptions, ProviderClient, ProviderSession

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
CURSOR = WalkKeys(INSTANT, ("updated_at_min", "skip_ids"), ("newest", "newest_ids"), "page_info")


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


class ShopifyConnector(HttpConnector):
    """Syncs a Shopify shop's orders, customers and products."""

    provider = Provider.SHOPIFY
    streams: ClassVar[tuple[str, ...]] = STREAMS
    required_credentials: tuple[str, ...] = ("shop_domain", "access_token")
    max_page_size: ClassVar[int] = MAX_PAGE_SIZE

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        # No base URL: each shop is the customer's own host, reached only at public addresses.
        return ProviderClient(
            base_url, options=options, rate_limit=call_limit_wait, customer_hosts=not base_url
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
        streams = select_streams(ctx.filters, STREAMS, provider=self.provider)
        token, shop = credentials["access_token"], f"https://{credentials['shop_domain']}"
        auth = HeaderAuth(lambda _: {"X-Shopify-Access-Token": token})
        api = self.client.authorized(
            auth, base_url=self.base_url or shop, customer_host=self.base_url is None
        )

        def sync_stream(stream: str, tally: SyncTally) -> None:
            cursor = WalkCursor.restore(CURSOR, ctx.cursors.get(stream), stream, tally)
            _StreamSync(api, stream, self.page_size, cursor, sink, tally).run()
            log.debug("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

        return sync_streams(streams, sync_stream)


@dataclass
class _StreamSync:
    """Pages through one stream, storing each page with the cursor that follows it."""

    api: ProviderSession
    stream: str
    page_size: int
    cursor: WalkCursor[datetime]
    sink: PageSink
    tally: SyncTally
    unreadable: int = 0

    @property
    def path(self) -> str:
        return f"/admin/api/{API_VERSION}/{self.stream}.json"

    def run(self) -> None:
        while True:
            payload, next_page = self._fetch()
            items = payload.get(self.stream) if isinstance(payload, dict) else None
            if not isinstance(items, list):
                raise MalformedResponse(f"GET {self.path}: missing list {self.stream!r}")
            records = self._records(items)
            if next_page:
                self.cursor.page = next_page
            else:
                self.cursor.finish()
            self.tally.store(self.sink, Page(self.stream, records, self.cursor.dump()))
            if not next_page:
                break
        if self.unreadable:
            self.tally.warn(
                f"{self.stream}: skipped {self.unreadable} objects without a readable id/updated_at"
            )

    def _fetch(self) -> tuple[Any, str | None]:
        # A crashed run's page_info may no longer work: they are not meant to be kept.
        expired = f"{self.stream}: resume point expired; listed again from the last run"
        return self.cursor.fetch(self._get, self.tally, expired)

    def _get(self) -> tuple[Any, str | None]:
        params: dict[str, Any] = {"limit": self.page_size}
        if self.cursor.page:
            params["page_info"] = self.cursor.page  # the filters travel inside it
        else:
            params.update(STREAM_PARAMS.get(self.stream, {}))
            if self.cursor.mark.at is not None:
                params["updated_at_min"] = self.cursor.mark.at
        payload, _, links = self.api.get_json_with_headers(self.path, params)
        link = links.get("next", {}).get("url")
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
            if not isinstance(raw_id, int) or isinstance(raw_id, bool) or not instant(updated_at):
                self.unreadable += 1
            elif self.cursor.take(str(raw_id), str(updated_at)):
                records.append((str(raw_id), obj))
        return tuple(records)
