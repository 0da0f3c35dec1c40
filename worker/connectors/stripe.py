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
- incremental by `created[gte]`;
- errors as `{"error": {"type", "code", "message"}}`: 401 for an invalid or
  revoked key, 429 for rate limiting (both classified by the HTTP layer).

A stream's cursor: `created_gte` (the newest `created` stored, the next run's
lower bound) with `skip_ids` (the ids at exactly that second already stored,
so `gte` loses nothing created in the same second and re-stores nothing);
while a run is under way also `starting_after` (the last id stored, to resume
after a crash) and `newest`/`newest_ids` (the run's future `created_gte`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
from worker.connectors.errors import ConfigurationError, MalformedResponse, RequestRejected
from worker.connectors.http import (
    BearerAuth,
    HttpOptions,
    ProviderClient,
    ProviderSession,
    require,
)

log = structlog.get_logger(__name__)

API_VERSION = "2024-06-20"  # the Stripe-Version these object shapes were written against
MAX_PAGE_SIZE = 100  # Stripe's documented maximum `limit`
STREAMS = ("customers", "subscriptions", "invoices", "charges")
STREAM_PARAMS: dict[str, dict[str, str]] = {"subscriptions": {"status": "all"}}
KEY_PREFIXES = ("sk_", "rk_")


class StripeConnector(HttpConnector):
    """Syncs a Stripe account's customers, subscriptions, invoices and charges."""

    provider = Provider.STRIPE
    required_credentials: tuple[str, ...] = ("secret_key",)
    optional_credentials: ClassVar[tuple[str, ...]] = ("account_id",)
    default_base_url: ClassVar[str] = "https://api.stripe.com"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        http: HttpOptions | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        super().__init__(base_url=base_url, http=http)
        self.page_size = page_size

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        headers = {"Stripe-Version": API_VERSION}
        return ProviderClient(base_url, options=options, headers=headers, error_detail=_detail)

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

        def sync_stream(stream: str, tally: SyncTally) -> None:
            cursor = _StreamCursor.load(ctx.cursors.get(stream), stream, tally)
            _StreamSync(api, stream, self.page_size, cursor, sink, tally).run()
            log.info("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

        return sync_streams(_streams(ctx.filters), sync_stream)


def _streams(filters: Mapping[str, Any]) -> tuple[str, ...]:
    """The streams `filters["objects"]` selects (all four by default)."""
    chosen = filters.get("objects")
    if chosen is None:
        return STREAMS
    if not isinstance(chosen, list | tuple) or not chosen:
        raise ConfigurationError("stripe filters: objects must be a non-empty list")
    unknown = [name for name in chosen if name not in STREAMS]
    if unknown:
        raise ConfigurationError(
            f"stripe filters: unknown objects {unknown}; expected some of {list(STREAMS)}"
        )
    return tuple(name for name in STREAMS if name in chosen)


def _detail(response: httpx.Response) -> str | None:
    """Stripe's error type and code; never its message, which can echo a masked key."""
    try:
        error = response.json().get("error", {})
        parts = [error.get("type"), error.get("code")]
    except (ValueError, AttributeError):
        return None
    return "/".join(part for part in parts if isinstance(part, str)) or None


@dataclass
class _StreamCursor:
    """One stream's position (see the module docstring)."""

    created_gte: int | None = None
    skip_ids: set[str] = field(default_factory=set)
    starting_after: str | None = None
    newest: int | None = None
    newest_ids: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, stored: Mapping[str, Any] | None, stream: str, tally: SyncTally) -> _StreamCursor:
        """The stored cursor; an unreadable one restarts the stream (upserts make that safe)."""
        stored = stored or {}
        try:
            return cls(
                created_gte=_optional(stored, "created_gte", int),
                skip_ids=set(_optional(stored, "skip_ids", list) or ()),
                starting_after=_optional(stored, "starting_after", str),
                newest=_optional(stored, "newest", int),
                newest_ids=set(_optional(stored, "newest_ids", list) or ()),
            )
        except TypeError as exc:
            tally.warn(f"{stream}: stored cursor unreadable ({exc}); synced from the start")
            return cls()

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.created_gte is not None:
            params["created[gte]"] = self.created_gte
        if self.starting_after is not None:
            params["starting_after"] = self.starting_after
        return params

    def already_stored(self, external_id: str, created: int) -> bool:
        return created == self.created_gte and external_id in self.skip_ids

    def saw(self, external_id: str, created: int) -> None:
        if self.newest is None or created > self.newest:
            self.newest, self.newest_ids = created, {external_id}
        elif created == self.newest:
            self.newest_ids.add(external_id)

    def finish(self) -> None:
        """The run reached the end: the newest seen becomes the next run's lower bound."""
        if self.newest is not None:
            if self.newest == self.created_gte:
                self.newest_ids |= self.skip_ids
            self.created_gte, self.skip_ids = self.newest, self.newest_ids
        self.starting_after, self.newest, self.newest_ids = None, None, set()

    def dump(self) -> dict[str, Any]:
        dumped = {
            "created_gte": self.created_gte,
            "skip_ids": sorted(self.skip_ids),
            "starting_after": self.starting_after,
            "newest": self.newest,
            "newest_ids": sorted(self.newest_ids),
        }
        return {key: value for key, value in dumped.items() if value not in (None, [])}


def _optional(stored: Mapping[str, Any], key: str, kind: type) -> Any:
    value = stored.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise TypeError(f"{key} is not {kind.__name__}")
    return value


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

    def run(self) -> None:
        has_more, first = True, True
        while has_more:
            payload = self._fetch(first)
            data = require(payload, "data", list, endpoint=self.endpoint)
            has_more = require(payload, "has_more", bool, endpoint=self.endpoint)
            records, last_id = self._records(data)
            if has_more and last_id is None:
                raise MalformedResponse(f"{self.endpoint}: no object with an id to page after")
            if has_more:
                self.cursor.starting_after = last_id
            else:
                self.cursor.finish()
            self.tally.store(self.sink, Page(self.stream, records, self.cursor.dump()))
            first = False
        if self.unreadable:
            self.tally.warn(
                f"{self.stream}: skipped {self.unreadable} objects without a readable id/created"
            )

    @property
    def endpoint(self) -> str:
        return f"GET /v1/{self.stream}"

    def _fetch(self, first: bool) -> Any:
        params = {"limit": self.page_size, **STREAM_PARAMS.get(self.stream, {})}
        try:
            return self.api.get_json(f"/v1/{self.stream}", {**params, **self.cursor.params()})
        except RequestRejected:
            if not (first and self.cursor.starting_after):
                raise
        # The object a crashed run stopped after is gone: list again from the lower bound
        # (re-stored records are upserts, so this costs time, not correctness).
        self.tally.warn(
            f"{self.stream}: resume point {self.cursor.starting_after} is gone; "
            "listed again from the last completed run"
        )
        self.cursor.starting_after = None
        return self.api.get_json(f"/v1/{self.stream}", {**params, **self.cursor.params()})

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
                continue
            if not self.cursor.already_stored(external_id, created):
                self.cursor.saw(external_id, created)
                records.append((external_id, obj))
        return tuple(records), last_id
