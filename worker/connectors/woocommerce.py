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

Where requests go: each integration's store is its own host, so a sync uses a client for its
`store_url` (a WordPress in a sub-folder keeps its path), closed when the sync ends. A
configured `base_url` (tests, the demo's fake) replaces it for every store: the fake tells
stores apart by their key.

Orders, products and subscriptions are fetched by keyset, oldest change first: every request
asks for page 1 of `modified_after=<mark - 1 s>` (the API counts whole seconds) excluding the
ids already stored at the mark, ordered by `modified`. Their cursor: `modified` (the newest
`date_modified_gmt` stored) and `skip_ids`, moved by every stored page; it is where the next
request, the next run and a crashed run all start, and no object can slip between pages when
others change meanwhile. Customers have no date filter or order, so every run lists them all
by page number (ids ascending); their cursor is the next `page` while a listing is under way.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

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

MAX_PAGE_SIZE = 100  # the WordPress REST API's maximum `per_page`
STREAMS = ("orders", "products", "subscriptions", "customers")
SNAPSHOT_STREAMS = frozenset({"customers"})  # no modified filter: listed in full every run
OPTIONAL_STREAMS = frozenset({"subscriptions"})  # 404 when the extension is not installed
API_PATH = "/wp-json/wc/v3"
SECOND = timedelta(seconds=1)  # `modified_after` is exclusive and dates have whole seconds


class WooCommerceConnector:
    """Syncs a WooCommerce store's orders, products, subscriptions and customers."""

    provider = Provider.WOOCOMMERCE
    required_credentials: tuple[str, ...] = ("store_url", "consumer_key", "consumer_secret")

    def __init__(
        self,
        *,
        base_url: str | None = None,
        http: HttpOptions | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.base_url = base_url  # None: every store's own store_url
        self.options = http or HttpOptions()
        self.page_size = page_size

    def client_for(self, store_url: str) -> ProviderClient:
        """A client for one store (see the module docstring); the caller closes it."""
        return ProviderClient(
            self.base_url or store_url, options=self.options, error_detail=_detail
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
        streams = _streams(ctx.filters)
        pair = f"{credentials['consumer_key']}:{credentials['consumer_secret']}"
        basic = "Basic " + base64.b64encode(pair.encode()).decode()
        with self.client_for(credentials["store_url"]) as client:
            api = client.authorized(HeaderAuth(lambda _: {"Authorization": basic}))

            def sync_stream(stream: str, tally: SyncTally) -> None:
                cursor = _StreamCursor.load(ctx.cursors.get(stream), stream, tally)
                try:
                    _StreamSync(api, stream, self.page_size, cursor, sink, tally).run()
                except RequestRejected as exc:
                    if exc.status != 404 or stream not in OPTIONAL_STREAMS:
                        raise
                    tally.warn(f"{stream}: skipped, the extension is not installed ({exc})")
                log.info("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

            return sync_streams(streams, sync_stream)

    def close(self) -> None:
        """Nothing pooled between syncs: each sync closes its store's client."""


def _streams(filters: Mapping[str, Any]) -> tuple[str, ...]:
    """The streams `filters["objects"]` selects (all four by default)."""
    chosen = filters.get("objects")
    if chosen is None:
        return STREAMS
    if not isinstance(chosen, list | tuple) or not chosen or set(chosen) - set(STREAMS):
        raise ConfigurationError(f"woocommerce filters: objects must be some of {list(STREAMS)}")
    return tuple(name for name in STREAMS if name in chosen)


def _detail(response: httpx.Response) -> str | None:
    """WooCommerce's error code (`woocommerce_rest_...`); never its message."""
    try:
        code = response.json()["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _gmt(value: Any) -> datetime | None:
    """A `date_modified_gmt` (ISO 8601 without an offset, in GMT), else None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None)
    except ValueError:
        return None


@dataclass
class _StreamCursor:
    """One stream's position (see the module docstring)."""

    modified: str | None = None
    skip_ids: set[str] = field(default_factory=set)
    page: int = 1

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None, stream: str, tally: SyncTally) -> _StreamCursor:
        """The stored cursor; an unreadable one restarts the stream (upserts make that safe)."""
        stored = stored or {}
        mark, ids, page = stored.get("modified"), stored.get("skip_ids", []), stored.get("page", 1)
        if (
            (mark is not None and _gmt(mark) is None)
            or not (isinstance(ids, list) and all(str(i).isdigit() for i in ids))
            or not (isinstance(page, int) and page >= 1)
        ):
            tally.warn(f"{stream}: stored cursor unreadable; synced from the start")
            return cls()
        return cls(mark, {str(i) for i in ids}, page)

    def params(self) -> dict[str, str]:
        mark = _gmt(self.modified)
        if mark is None:
            return {"page": str(self.page)}
        params = {"page": "1", "modified_after": (mark - SECOND).isoformat()}
        if self.skip_ids:
            params["exclude"] = ",".join(sorted(self.skip_ids, key=int))
        return params

    def saw(self, external_id: str, modified: str) -> bool:
        """Move the mark to a stored object's date if it is the newest; whether it moved."""
        when, mark = _gmt(modified), _gmt(self.modified)
        if mark is None or (when is not None and when > mark):
            self.modified, self.skip_ids = modified, {external_id}
        elif when == mark and external_id not in self.skip_ids:
            self.skip_ids.add(external_id)
        else:
            return False
        return True

    def dump(self) -> dict[str, Any]:
        if self.modified is not None:
            return {"modified": self.modified, "skip_ids": sorted(self.skip_ids, key=int)}
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
        response = self.api.send("GET", self.path, params=params)
        items = decode_json(response, endpoint)
        if not isinstance(items, list):
            raise MalformedResponse(f"{endpoint}: expected an array of {self.stream}")
        try:
            pages = int(response.headers["x-wp-totalpages"])
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
                or (not self.snapshot and _gmt(modified) is None)
            ):
                self.unreadable += 1
                continue
            if not self.snapshot:
                moved = self.cursor.saw(str(raw_id), str(modified)) or moved
            records.append((str(raw_id), obj))
        return tuple(records), moved
