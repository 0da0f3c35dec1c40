"""The Stripe connector: customers, subscriptions, invoices and charges.

Documented API used (https://docs.stripe.com/api):

- base `https://api.stripe.com`, `Authorization: Bearer <secret key>` (`sk_live_`,
  `sk_test_` or a restricted `rk_` key), `Stripe-Version: 2024-06-20` pinned so
  the object shapes do not drift, `Stripe-Account: acct_...` for a connected
  account;
- list endpoints `GET /v1/customers`, `/v1/subscriptions` (with `status=all`,
  else canceled ones are left out), `/v1/invoices`, `/v1/charges`, newest
  first, paged by `limit` (at most 100) and `starting_after`, answering
  `{"object": "list", "data": [...], "has_more": bool, "url": ...}`;
- changes after the first full listing from `GET /v1/events` (`worker.connectors.stripe_events`):
  a list filtered by `created` never sees an update or a refund;
- errors as `{"error": {"type", "code", "message"}}`: 401 for an invalid or
  revoked key, 429 for rate limiting (both classified by the HTTP layer).

A stream's cursor: while a full listing is under way, a `worker.connectors.cursors.WalkCursor`
(`starting_after`, the last id stored, to resume after a crash; `newest`/`newest_ids`)
with `listed_from`, when the listing began. Once it is done, `{"events": ...}`, the
stream's event walk (see `worker.connectors.stripe_events`), until events since its
last walk may have passed Stripe's 30-day retention: then it is listed in full again.
A cursor stored before events (`created_gte`/`skip_ids`) is listed in full once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from models.errors import InvalidCredentials
from models.status import Provider
from models.sync_runs import SyncResult
from worker.connectors.base import (
    HttpConnector,
    PageSink,
    Record,
    SyncContext,
    SyncTally,
    credential,
    reject_unknown,
    select_streams,
    sync_streams,
)
from worker.connectors.cursors import EPOCH, WalkCursor, WalkKeys
from worker.connectors.http import BearerAuth, HttpOptions, ProviderClient
from worker.connectors.responses import error_fields
from worker.connectors.stripe_events import (
    EVENTS,
    LISTED_FROM,
    RETENTION,
    RETENTION_MARGIN,
    EventsCursor,
    EventSync,
    StripeWalk,
)

log = structlog.get_logger(__name__)

API_VERSION = "2024-06-20"  # the Stripe-Version these object shapes were written against
MAX_PAGE_SIZE = 100  # Stripe's documented maximum `limit`
STREAMS = ("customers", "subscriptions", "invoices", "charges")
STREAM_PARAMS: dict[str, dict[str, str]] = {"subscriptions": {"status": "all"}}
KEY_PREFIXES = ("sk_", "rk_")
CURSOR = WalkKeys(EPOCH, ("created_gte", "skip_ids"), ("newest", "newest_ids"), "starting_after")


class StripeConnector(HttpConnector):
    """Syncs a Stripe account's customers, subscriptions, invoices and charges."""

    provider = Provider.STRIPE
    streams: ClassVar[tuple[str, ...]] = STREAMS
    required_credentials: tuple[str, ...] = ("secret_key",)
    optional_credentials: ClassVar[tuple[str, ...]] = ("account_id",)
    default_base_url: ClassVar[str] = "https://api.stripe.com"
    max_page_size: ClassVar[int] = MAX_PAGE_SIZE

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        headers = {"Stripe-Version": API_VERSION}
        # Stripe's error type and code; never its message, which can echo a masked key.
        detail = error_fields(("error", "type"), ("error", "code"))
        return ProviderClient(base_url, options=options, headers=headers, error_detail=detail)

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """`secret_key` (sk_/rk_) and an optional `account_id` (acct_)."""
        reject_unknown(
            raw, self.required_credentials + self.optional_credentials, provider=self.provider
        )
        key = credential(raw, "secret_key", provider=self.provider)
        if not key.startswith(KEY_PREFIXES):
            raise InvalidCredentials("stripe credentials: secret_key must start with sk_ or rk_")
        valid = {"secret_key": key}
        if raw.get("account_id") is not None:
            account = credential(raw, "account_id", provider=self.provider)
            if not account.startswith("acct_"):
                raise InvalidCredentials("stripe credentials: account_id must start with acct_")
            valid["account_id"] = account
        return valid

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        credentials = self.validate_credentials(ctx.credentials)
        account = credentials.get("account_id")
        headers = {"Stripe-Account": account} if account else {}
        api = self.client.authorized(BearerAuth(credentials["secret_key"]), headers)

        now_s = int(ctx.now.timestamp())

        def sync_stream(stream: str, tally: SyncTally) -> None:
            stored = ctx.cursors.get(stream) or {}
            events = _events_cursor(stream, stored, now_s, tally)
            walk = (api, stream, self.page_size, sink, tally)
            if events is not None:
                EventSync(*walk, events, now_s).run()
            else:
                listing = _listing(stored) if EVENTS not in stored else {}
                cursor = WalkCursor.restore(CURSOR, listing, stream, tally)
                began = listing.get(LISTED_FROM)
                _StreamSync(*walk, cursor, began if isinstance(began, int) else now_s).run()
            log.debug("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

        streams = select_streams(ctx.filters, STREAMS, provider=self.provider)
        return sync_streams(streams, sync_stream)


@dataclass
class _StreamSync(StripeWalk):
    """Lists one stream in full, newest first, then hands it over to its events."""

    cursor: WalkCursor[int]
    listed_from: int  # when this full listing began (epoch seconds)

    unreadable_kind: ClassVar[str] = "objects without a readable id/created"

    def _next_page(self, last_id: str) -> dict[str, Any]:
        self.cursor.page = last_id
        return {**self.cursor.dump(), LISTED_FROM: self.listed_from}

    def _finished(self) -> dict[str, Any]:
        self.cursor.finish()
        return {EVENTS: EventsCursor.after_listing(self.cursor, self.listed_from).dump()}

    @property
    def endpoint(self) -> str:
        return f"GET /v1/{self.stream}"

    def _fetch(self) -> Any:
        def fetch() -> Any:
            return self.api.get_json(f"/v1/{self.stream}", self._params())

        warning = (
            f"{self.stream}: resume point {self.cursor.page} is gone; "
            "listed again from the last completed run"
        )
        return self.cursor.fetch(fetch, self.tally, warning)

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.page_size, **STREAM_PARAMS.get(self.stream, {})}
        if self.cursor.mark.at is not None:
            params["created[gte]"] = self.cursor.mark.at
        if self.cursor.page is not None:
            params["starting_after"] = self.cursor.page
        return params

    def _records(self, data: list[Any]) -> tuple[tuple[Record, ...], str | None]:
        """The page's new records and the last readable id; unreadable objects are counted."""
        records: list[Record] = []
        last_id: str | None = None
        for obj in data:
            external_id = obj.get("id") if isinstance(obj, dict) else None
            created = obj.get("created") if isinstance(obj, dict) else None
            if isinstance(external_id, str):
                last_id = external_id
            if not isinstance(external_id, str) or not isinstance(created, int):
                self.unreadable += 1
            elif self.cursor.take(external_id, created):
                records.append((external_id, obj))
        return tuple(records), last_id


def _events_cursor(
    stream: str, stored: Mapping[str, Any], now_s: int, tally: SyncTally
) -> EventsCursor | None:
    """The stream's events cursor, or None when it must be listed in full (with a warning why)."""
    found = stored.get(EVENTS)
    if found is None:
        return None
    try:
        events = EventsCursor.load(found if isinstance(found, Mapping) else {})
    except TypeError as exc:
        tally.warn(f"{stream}: stored events cursor unreadable ({exc}); listed again in full")
        return None
    if events.expired(now_s):
        tally.warn(
            f"{stream}: changes last synced over {RETENTION.days - RETENTION_MARGIN.days} days "
            f"ago, past Stripe's {RETENTION.days}-day event retention; listed again in full"
        )
        return None
    return events


def _listing(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A listing under way; a cursor from before events keeps only its resume point.

    Its `created_gte` mark would list only creations since, missing every update: the
    stream is listed in full once, then follows events.
    """
    if LISTED_FROM in stored:
        return dict(stored)
    return {key: stored[key] for key in ("starting_after", "newest", "newest_ids") if key in stored}
