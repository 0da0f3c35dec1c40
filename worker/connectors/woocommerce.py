"""The WooCommerce connector: a store's orders, products, subscriptions and customers.

Documented API used (WooCommerce REST API v3, https://woocommerce.github.io/woocommerce-rest-api-docs/):

- `{store_url}/wp-json/wc/v3/orders`, `/products`, `/customers`, and `/subscriptions` when
  the WooCommerce Subscriptions extension is installed (a 404 there means it is not: a
  warning, the other streams sync);
- a REST API key's `consumer_key` (`ck_...`) and `consumer_secret` (`cs_...`) by HTTP Basic
  over HTTPS. The query-string alternative is only for plain-HTTP stores and is not
  supported: `store_url` must be `https://`;
- `page`/`per_page` (at most 100), answering a JSON array with `X-WP-Total` and
  `X-WP-TotalPages` headers; `orderby`/`order`; `exclude` (ids); for orders, products and
  subscriptions `modified_after` (ISO 8601, exclusive) with `dates_are_gmt=true`;
- errors `{"code", "message", "data": {"status"}}`: 401 for a bad or revoked key; a 429 (from
  the store's host or a security plugin) with `Retry-After`; messages carry `code` only.

Where requests go: each integration's store is its own host, so a sync's session sends to its
`store_url` (a WordPress in a sub-folder keeps its path) through the connector's one pooled
client. A configured `base_url` (tests, the demo's fake) replaces it for every store: the fake
tells stores apart by their key.

Orders, products and subscriptions are fetched by keyset, oldest change first: every request
asks for page 1 of `modified_after=<mark - 1 s>` (the API counts whole seconds) excluding the
ids already stored at the mark, ordered by `modified`. Their cursor: `modified` (the newest
`date_modified_gmt` stored) and `skip_ids`, a `worker.connectors.cursors.Mark` moved by every
stored page; it is where the next request, the next run and a crashed run all start, and no
object can slip between pages when others change meanwhile. Customers have no date filter or
order, so every run lists them all by page number (ids ascending); their cursor is the next
`page` while a listing is under way.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import structlog

from models.errors import InvalidCredentials
from models.status import Provider
from models.sync_runs import SyncResult
from worker.connectors.addresses import refuse_literal
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
from worker.connectors.cursors import UTC_DATE, Mark, MarkKeys, restore, utc_instant
from worker.connectors.errors import MalformedResponse, RequestRejected
from worker.connectors.http import HeaderAuth, HttpOptions, ProviderClient, ProviderSession
from worker.connectors.responses import error_fields

log = structlog.get_logger(__name__)

MAX_PAGE_SIZE = 100  # the WordPress REST API's maximum `per_page`
STREAMS = ("orders", "products", "subscriptions", "customers")
SNAPSHOT_STREAMS = frozenset({"customers"})  # no modified filter: listed in full every run
OPTIONAL_STREAMS = frozenset({"subscriptions"})  # 404 when the extension is not installed
API_PATH = "/wp-json/wc/v3"
SECOND = timedelta(seconds=1)  # `modified_after` is exclusive and dates have whole seconds
MARK = MarkKeys(UTC_DATE, "modified", "skip_ids", numeric_ids=True)


class WooCommerceConnector(HttpConnector):
    """Syncs a WooCommerce store's orders, products, subscriptions and customers."""

    provider = Provider.WOOCOMMERCE
    streams: ClassVar[tuple[str, ...]] = STREAMS
    required_credentials: tuple[str, ...] = ("store_url", "consumer_key", "consumer_secret")
    max_page_size: ClassVar[int] = MAX_PAGE_SIZE

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        # WooCommerce's error `code` (`woocommerce_rest_...`); never its message.
        detail = error_fields(("code",))
        # No base URL: each store is the customer's own host, reached only at public addresses.
        return ProviderClient(
            base_url, options=options, error_detail=detail, customer_hosts=not base_url
        )

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """`store_url` (https://...), `consumer_key` (ck_...) and `consumer_secret` (cs_...)."""
        reject_unknown(raw, self.required_credentials, provider=self.provider)
        url = credential(raw, "store_url", provider=self.provider).strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or parts.username or parts.query:
            raise InvalidCredentials(
                "woocommerce credentials: store_url must be an https:// address without "
                "credentials or query (plain-HTTP query-string authentication is not supported)"
            )
        refused = refuse_literal(parts.hostname, allow_loopback=self.client.options.allow_loopback)
        if refused:
            raise InvalidCredentials(f"woocommerce credentials: store_url's host {refused}")
        valid = {"store_url": url}
        for name, prefix in (("consumer_key", "ck_"), ("consumer_secret", "cs_")):
            value = credential(raw, name, provider=self.provider)
            if not value.startswith(prefix):
                raise InvalidCredentials(
                    f"woocommerce credentials: {name} must start with {prefix}"
                )
            valid[name] = value
        return valid

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        credentials = self.validate_credentials(ctx.credentials)
        streams = select_streams(ctx.filters, STREAMS, provider=self.provider)
        pair = f"{credentials['consumer_key']}:{credentials['consumer_secret']}"
        basic = "Basic " + base64.b64encode(pair.encode()).decode()
        auth = HeaderAuth(lambda _: {"Authorization": basic})
        api = self.client.authorized(
            auth,
            base_url=self.base_url or credentials["store_url"],
            customer_host=self.base_url is None,
        )

        def sync_stream(stream: str, tally: SyncTally) -> None:
            cursor = _StreamCursor.restore(ctx.cursors.get(stream), stream, tally)
            try:
                _StreamSync(api, stream, self.page_size, cursor, sink, tally).run()
            except RequestRejected as exc:
                if exc.status != 404 or stream not in OPTIONAL_STREAMS:
                    raise
                tally.warn(f"{stream}: skipped, the extension is not installed ({exc})")
            log.debug("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

        return sync_streams(streams, sync_stream)


@dataclass
class _StreamCursor:
    """One stream's position: the mark of a dated stream, or a snapshot listing's next page."""

    mark: Mark[datetime]
    page: int = 1

    @classmethod
    def restore(cls, stored: Mapping[str, Any] | None, stream: str, tally: SyncTally) -> Self:
        """The stored cursor; an unreadable one restarts the stream with a warning."""
        return restore(stream, tally, lambda: cls._load(stored or {}), lambda: cls(Mark(MARK)))

    @classmethod
    def _load(cls, stored: Mapping[str, Any]) -> Self:
        page = stored.get("page", 1)
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise TypeError("page is not a page number")
        return cls(MARK.load(stored), page)

    def params(self) -> dict[str, str]:
        bound = self.mark.bound
        if bound is None:
            return {"page": str(self.page)}
        after = (bound - SECOND).astimezone(UTC).replace(tzinfo=None)  # dates_are_gmt
        params = {"page": "1", "modified_after": after.isoformat()}
        if self.mark.ids:
            params["exclude"] = ",".join(self.mark.sorted_ids())
        return params

    def dump(self) -> dict[str, Any]:
        if self.mark.at is not None:
            return self.mark.dump()
        return {"page": self.page} if self.page > 1 else {}


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
        return f"{API_PATH}/{self.stream}"

    @property
    def snapshot(self) -> bool:
        return self.stream in SNAPSHOT_STREAMS

    def run(self) -> None:
        params = {"per_page": str(self.page_size), "order": "asc", "orderby": "id"}
        if not self.snapshot:
            params.update(orderby="modified", dates_are_gmt="true")
        while True:
            items, pages = self._get({**params, **self.cursor.params()})
            records, moved = self._records(items)
            more = pages > (self.cursor.page if self.snapshot else 1)
            if more and not (self.snapshot or moved):
                raise MalformedResponse(f"GET {self.path}: a full page without a readable object")
            if self.snapshot:
                self.cursor.page = self.cursor.page + 1 if more else 1
            self.tally.store(self.sink, Page(self.stream, records, self.cursor.dump()))
            if not more:
                break
        if self.unreadable:
            self.tally.warn(
                f"{self.stream}: skipped {self.unreadable} objects without a readable id/date"
            )

    def _get(self, params: dict[str, str]) -> tuple[list[Any], int]:
        """One page and the number of pages the query has (`X-WP-TotalPages`)."""
        endpoint = f"GET {self.path}"
        items, headers, _ = self.api.get_json_with_headers(self.path, params)
        if not isinstance(items, list):
            raise MalformedResponse(f"{endpoint}: expected an array of {self.stream}")
        try:
            pages = int(headers["x-wp-totalpages"])
        except (KeyError, ValueError) as exc:
            raise MalformedResponse(f"{endpoint}: missing or bad X-WP-TotalPages header") from exc
        return items, pages

    def _records(self, items: list[Any]) -> tuple[tuple[Record, ...], bool]:
        """The page's records and whether the mark moved; unreadable objects are counted."""
        records: list[Record] = []
        moved = False
        for obj in items:
            raw_id = obj.get("id") if isinstance(obj, dict) else None
            modified = obj.get("date_modified_gmt") if isinstance(obj, dict) else None
            if (
                not isinstance(raw_id, int)
                or isinstance(raw_id, bool)
                or (not self.snapshot and utc_instant(modified) is None)
            ):
                self.unreadable += 1
                continue
            if not self.snapshot:
                moved = self.cursor.mark.add(str(raw_id), str(modified)) or moved
            records.append((str(raw_id), obj))
        return tuple(records), moved
