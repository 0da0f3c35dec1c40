"""The RevenueCat connector: a project's customers, with their subscriptions and purchases.

Documented API used (REST API v2, "Developer API 2.0.0", https://www.revenuecat.com/docs/api-v2):

- base `https://api.revenuecat.com`, `Authorization: Bearer <v2 secret API key>` (`sk_...`,
  with the `customer_information:*:read` permissions);
- `GET /v2/projects/{project_id}/customers`, and per customer
  `GET /v2/projects/{project_id}/customers/{customer_id}/subscriptions` and `.../purchases`
  (customer ids URL-encoded, as the docs ask: app user ids may hold `$` and `:`);
- lists answer `{"object": "list", "items": [...], "next_page": "...?starting_after=<id>",
  "url": ...}`, `next_page` absent on the last page; paged by `limit` (1-100) and
  `starting_after` (the previous page's last id). The connector sends `starting_after`
  itself rather than following `next_page`, so no answer can send the key elsewhere;
- errors `{"type", "message", "retryable", "doc_url"}`: 401/403 for a bad, revoked or
  under-privileged key; 429 with `Retry-After` (seconds) and `backoff_ms` in the body;
  every answer carries `RevenueCat-Rate-Limit-Current-Usage` and `-Current-Limit` (per minute).

Incremental: API v2 has no changed-since filter. Each sync walks the customer list (100 a
request) and fetches subscriptions and purchases only for customers that are new or whose
`last_seen_at` passed the stored mark. Changes in between (a renewal of a customer who did
not open the app) arrive by RevenueCat's webhooks (`worker.connectors.webhooks`).

`filters["objects"]` chooses among customers, subscriptions and purchases; the customer list
is walked whichever are chosen, since it finds what changed.

The walk's cursor, a `worker.connectors.cursors.WalkCursor` kept under "customers":
`mark`/`mark_ids`, the newest `last_seen_at` stored by a completed walk and the customers at
exactly it; during a walk also `page` (the last customer stored, the `starting_after` to
resume from after a crash) and `run`/`run_ids` (the walk's future mark); and `objects` when
fewer than all three kinds were chosen: a mark covering fewer kinds than are now chosen is not
trusted, and the walk starts over. A page's subscriptions and purchases are stored before the
customers page that advances the cursor: a crash between them re-fetches that page; upserts
make that harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final
from urllib.parse import quote

import httpx

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
from worker.connectors.cursors import EPOCH, WalkCursor, WalkKeys
from worker.connectors.errors import MalformedResponse, ProviderError
from worker.connectors.http import BearerAuth, HttpOptions, ProviderClient, ProviderSession
from worker.connectors.responses import decode_json, error_fields, require
from worker.connectors.webhooks import WEBHOOK_SECRET_FIELD, webhook_secret_credential

MAX_PAGE_SIZE = 100  # the documented upper clamp of `limit`
RATE_WINDOW = 60.0  # seconds: RevenueCat counts requests per minute
STREAM = "customers"
CHILDREN = ("subscriptions", "purchases")
OBJECTS = (STREAM, *CHILDREN)
CURSOR = WalkKeys(EPOCH)
_PROJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")  # it goes into the path: no '/', '?', '%'


class RevenueCatConnector(HttpConnector):
    """Syncs a RevenueCat project's customers, subscriptions and purchases."""

    provider = Provider.REVENUECAT
    streams: ClassVar[tuple[str, ...]] = OBJECTS
    required_credentials: tuple[str, ...] = ("secret_key", "project_id")
    default_base_url: ClassVar[str] = "https://api.revenuecat.com"
    max_page_size: ClassVar[int] = MAX_PAGE_SIZE

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        detail = error_fields(("type",))  # RevenueCat's error `type`; never its message
        return ProviderClient(
            base_url, options=options, rate_limit=_rate_limit, error_detail=detail
        )

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """`secret_key` (a v2 secret key, sk_...) and `project_id`, and optionally the
        `webhook_secret` (the Authorization header value its webhooks send)."""
        reject_unknown(
            raw, (*self.required_credentials, WEBHOOK_SECRET_FIELD), provider=self.provider
        )
        key = credential(raw, "secret_key", provider=self.provider)
        if not key.startswith("sk_"):
            raise InvalidCredentials(
                "revenuecat credentials: secret_key must be a secret key (sk_)"
            )
        project = credential(raw, "project_id", provider=self.provider)
        if not _PROJECT_ID.fullmatch(project):
            raise InvalidCredentials(
                "revenuecat credentials: project_id may hold only letters, digits, '_' and '-'"
            )
        webhook = webhook_secret_credential(self.provider, raw)
        return {"secret_key": key, "project_id": project, **webhook}

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        credentials = self.validate_credentials(ctx.credentials)
        objects = select_streams(ctx.filters, OBJECTS, provider=self.provider)
        api = self.client.authorized(BearerAuth(credentials["secret_key"]))
        path = f"/v2/projects/{credentials['project_id']}/customers"

        def sync_stream(stream: str, tally: SyncTally) -> None:
            stored = ctx.cursors.get(stream) or {}
            cursor = WalkCursor.restore(CURSOR, stored, stream, tally)
            covered = stored.get("objects", OBJECTS)
            if not isinstance(covered, list | tuple) or any(o not in covered for o in objects):
                cursor = WalkCursor.start(CURSOR)  # its mark covers fewer kinds than chosen
            _CustomerWalk(api, path, self.page_size, cursor, objects, sink, tally).run()

        return sync_streams((STREAM,), sync_stream)


# A 429's `backoff_ms` beyond this (a day) is no answer: the task's own retry takes over.
MAX_BACKOFF_MS: Final = 86_400_000


def _rate_limit(response: httpx.Response, now: float) -> float | None:
    """A 429's `backoff_ms` (when `Retry-After` is missing), or a pause once the minute is spent."""
    if response.status_code == 429:
        try:
            backoff = decode_json(response, "429").get("backoff_ms")
        except (MalformedResponse, AttributeError):
            return None
        # Bounded before dividing: a 400-digit integer would overflow the float.
        if isinstance(backoff, int | float) and 0 <= backoff <= MAX_BACKOFF_MS:
            return backoff / 1000
        return None
    usage = response.headers.get("revenuecat-rate-limit-current-usage", "")
    limit = response.headers.get("revenuecat-rate-limit-current-limit", "")
    if usage.isdigit() and limit.isdigit() and int(usage) >= int(limit):
        return RATE_WINDOW
    return None


@dataclass
class _CustomerWalk:
    """Pages through the customers, storing changed ones with their subscriptions and purchases."""

    api: ProviderSession
    path: str
    page_size: int
    cursor: WalkCursor[int]
    objects: tuple[str, ...]
    sink: PageSink
    tally: SyncTally
    unreadable: int = 0

    def run(self) -> None:
        more = True
        while more:
            payload = self.api.get_json(self.path, self._params(self.cursor.page))
            items = require(payload, "items", list, endpoint=self.endpoint)
            more = _has_next(payload, self.endpoint)
            changed, last_id = self._changed(items)
            if more and last_id is None:
                raise MalformedResponse(f"{self.endpoint}: no item with an id to page after")
            for child in (name for name in CHILDREN if name in self.objects):
                records = tuple(record for obj in changed for record in self._children(obj, child))
                if records:
                    self.tally.store(self.sink, Page(child, records, None))
            if more:
                self.cursor.page = last_id
            else:
                self.cursor.finish()
            customers = tuple((obj["id"], obj) for obj in changed if STREAM in self.objects)
            self.tally.store(self.sink, Page(STREAM, customers, self._dump()))
        if self.unreadable:
            self.tally.warn(
                f"{STREAM}: skipped {self.unreadable} items without a readable id/last_seen_at"
            )

    @property
    def endpoint(self) -> str:
        return f"GET {self.path}"

    def _dump(self) -> dict[str, Any]:
        narrowed = {"objects": list(self.objects)} if self.objects != OBJECTS else {}
        return {**self.cursor.dump(), **narrowed}

    def _params(self, after: str | None) -> dict[str, Any]:
        return {"limit": self.page_size, **({"starting_after": after} if after else {})}

    def _changed(self, items: list[Any]) -> tuple[list[dict[str, Any]], str | None]:
        """The customers new or seen since the mark, and the page's last readable id."""
        changed: list[dict[str, Any]] = []
        last_id: str | None = None
        for obj in items:
            key = obj.get("id") if isinstance(obj, dict) else None
            seen = obj.get("last_seen_at") if isinstance(obj, dict) else None
            if isinstance(key, str):
                last_id = key
            if not isinstance(key, str) or not isinstance(seen, int) or isinstance(seen, bool):
                self.unreadable += 1
            elif self.cursor.take(key, seen):
                changed.append(obj)
        return changed, last_id

    def _children(self, customer: dict[str, Any], child: str) -> Iterator[Record]:
        """Every subscription or purchase of one customer; a failure is a warning naming it."""
        path = f"{self.path}/{quote(customer['id'], safe='')}/{child}"
        after: str | None = None
        try:
            while True:
                payload = self.api.get_json(path, self._params(after))
                items = require(payload, "items", list, endpoint=f"GET {path}")
                for obj in items:
                    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                        raise MalformedResponse(f"GET {path}: an item has no id")
                    after = obj["id"]
                    yield obj["id"], obj
                if not _has_next(payload, f"GET {path}") or after is None:
                    return
        except ProviderError as exc:
            self.tally.warn(f"{child}: {exc}")


def _has_next(payload: dict[str, Any], endpoint: str) -> bool:
    """Whether a list has another page: `next_page` is present (and text) only then."""
    next_page = payload.get("next_page")
    if next_page is not None and not isinstance(next_page, str):
        raise MalformedResponse(f"{endpoint}: key 'next_page' should be a string")
    return bool(next_page)
