"""Stripe's changes after the initial listing: the Events API.

Listing by `created` alone never sees an update: a customer whose email changed or a
charge that was refunded keeps its `created`. Stripe's documented way to follow
changes is its event log (https://docs.stripe.com/api/events/list): every change to an
object is an event whose `data.object` is the object's state after it, listed newest
first by `GET /v1/events` with `type` (one name or a `*` wildcard), `created[gte]`,
`limit` and `starting_after`, kept for 30 days.

So a stream is listed in full once (`worker.connectors.stripe`), remembering when that
listing began (`listed_from`), and from then on synced from its events:

- `GET /v1/events?type=<prefix>.*` walked like a list (a `WalkCursor` over event ids
  and `created`), from just before the listing began: nothing changed during the
  listing is missed; a wildcard also matches other objects' events
  (`customer.*` includes `customer.subscription.*`), so only events whose
  `data.object.object` is the stream's object are stored;
- the walk is newest first, so an object's first event in a walk is its newest state:
  older events of the same object in that walk are skipped; a `*.deleted` event's
  object is stored with `"deleted": true`;
- `checked` is when the last complete walk began: every earlier event has been seen.
  If it is older than Stripe's retention (less a day's margin), events may have been
  lost and the stream is listed in full again, with a warning.

Event payloads are rendered in the API version of the event's creation, not the
pinned `Stripe-Version`; the objects are stored as Stripe sent them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Final

from worker.connectors.base import Page, PageSink, Record, SyncTally
from worker.connectors.cursors import EPOCH, WalkCursor, WalkKeys
from worker.connectors.errors import MalformedResponse
from worker.connectors.http import ProviderSession
from worker.connectors.responses import require

EVENT_PREFIXES: Final = {
    "customers": "customer",
    "subscriptions": "customer.subscription",
    "invoices": "invoice",
    "charges": "charge",
}
OBJECT_NAMES: Final = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
}
# Stripe keeps events for 30 days; a day's margin covers a slow walk and clock skew.
RETENTION: Final = timedelta(days=30)
RETENTION_MARGIN: Final = timedelta(days=1)
# Events from five minutes before the listing began: Stripe's clock and ours may differ.
OVERLAP_S: Final = 300
EVENTS: Final = "events"  # a stream cursor's key once it follows events
LISTED_FROM: Final = "listed_from"  # while a full listing is under way: when it began
CHECKED: Final = "checked"
WALK: Final = WalkKeys(
    EPOCH, ("created_gte", "skip_ids"), ("newest", "newest_ids"), "starting_after"
)


@dataclass
class EventsCursor:
    """Where a stream's event walk resumes, and when the last complete walk began."""

    walk: WalkCursor[int]
    checked: int  # epoch seconds

    @classmethod
    def load(cls, stored: Mapping[str, Any]) -> EventsCursor:
        """The stored cursor; `TypeError` naming what is unreadable."""
        checked = stored.get(CHECKED)
        if not isinstance(checked, int) or isinstance(checked, bool):
            raise TypeError(f"{EVENTS}.{CHECKED} is not an integer")
        walk = WalkCursor.load(WALK, stored)
        return cls(walk, checked)

    @classmethod
    def after_listing(cls, listed: WalkCursor[int], listed_from: int) -> EventsCursor:
        """The first events cursor, once a full listing that began at `listed_from` is done.

        It starts `OVERLAP_S` before the listing, and never after the newest object
        listed, so a provider clock behind ours loses nothing (events are upserts).
        """
        start = listed_from - OVERLAP_S
        newest = listed.mark.bound
        walk = WalkCursor.start(WALK)
        walk.mark.at = start if newest is None else min(start, newest)
        return cls(walk, listed_from)

    def expired(self, now_s: int) -> bool:
        """Whether events since `checked` may be gone from Stripe's log."""
        return now_s - self.checked > (RETENTION - RETENTION_MARGIN).total_seconds()

    def dump(self) -> dict[str, Any]:
        return {**self.walk.dump(), CHECKED: self.checked}


@dataclass
class StripeWalk(ABC):
    """Pages through one of Stripe's newest-first lists, storing each page with its cursor."""

    api: ProviderSession
    stream: str
    page_size: int
    sink: PageSink
    tally: SyncTally
    unreadable: int = field(default=0, init=False)

    unreadable_kind: ClassVar[str]  # what an unreadable item is, for the warning

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """`GET /path` of the list, for messages."""

    def run(self) -> None:
        has_more = True
        while has_more:
            payload = self._fetch()
            data = require(payload, "data", list, endpoint=self.endpoint)
            has_more = require(payload, "has_more", bool, endpoint=self.endpoint)
            records, last_id = self._records(data)
            if has_more and last_id is None:
                raise MalformedResponse(f"{self.endpoint}: nothing with an id to page after")
            cursor = self._next_page(last_id) if last_id and has_more else self._finished()
            self.tally.store(self.sink, Page(self.stream, records, cursor))
        if self.unreadable:
            self.tally.warn(f"{self.stream}: skipped {self.unreadable} {self.unreadable_kind}")

    @abstractmethod
    def _fetch(self) -> Any:
        """The next page's JSON."""

    @abstractmethod
    def _records(self, data: list[Any]) -> tuple[tuple[Record, ...], str | None]:
        """The page's records to store, and the last readable id to page after."""

    @abstractmethod
    def _next_page(self, last_id: str) -> dict[str, Any]:
        """The cursor stored with a page that has more after it."""

    @abstractmethod
    def _finished(self) -> dict[str, Any]:
        """The cursor stored with the last page."""


@dataclass
class EventSync(StripeWalk):
    """Walks one stream's events since its cursor, storing each page's newest object states."""

    cursor: EventsCursor
    now_s: int  # when this walk began: `checked` once it completes
    stored: set[str] = field(default_factory=set, init=False)  # object ids this walk stored

    unreadable_kind: ClassVar[str] = "unreadable events"

    @property
    def endpoint(self) -> str:
        return "GET /v1/events"

    def _next_page(self, last_id: str) -> dict[str, Any]:
        self.cursor.walk.page = last_id
        return {EVENTS: self.cursor.dump()}

    def _finished(self) -> dict[str, Any]:
        self.cursor.walk.finish()
        self.cursor.checked = self.now_s
        return {EVENTS: self.cursor.dump()}

    def _fetch(self) -> Any:
        walk = self.cursor.walk
        params: dict[str, Any] = {
            "type": f"{EVENT_PREFIXES[self.stream]}.*",
            "limit": self.page_size,
        }

        def fetch() -> Any:
            if walk.mark.at is not None:
                params["created[gte]"] = walk.mark.at
            params.pop("starting_after", None)
            if walk.page is not None:
                params["starting_after"] = walk.page
            return self.api.get_json("/v1/events", params)

        warning = f"{self.stream}: event resume point {walk.page} is gone; walked again"
        return walk.fetch(fetch, self.tally, warning)

    def _records(self, data: list[Any]) -> tuple[tuple[Record, ...], str | None]:
        records: list[Record] = []
        last_id: str | None = None
        for event in data:
            event_id = event.get("id") if isinstance(event, dict) else None
            created = event.get("created") if isinstance(event, dict) else None
            if not isinstance(event_id, str) or not isinstance(created, int):
                self.unreadable += 1
                continue
            last_id = event_id
            if self.cursor.walk.take(event_id, created):
                record = self._record(event)
                if record is not None:
                    records.append(record)
        return tuple(records), last_id

    def _record(self, event: dict[str, Any]) -> Record | None:
        """The newest state of the event's object, if it is this stream's and not stored yet."""
        payload = event.get("data")
        obj = payload.get("object") if isinstance(payload, dict) else None
        if not isinstance(obj, dict) or obj.get("object") != OBJECT_NAMES[self.stream]:
            return None  # another object's event matched by the wildcard
        object_id = obj.get("id")
        if not isinstance(object_id, str):
            self.unreadable += 1
            return None
        if object_id in self.stored:
            return None  # an older state than the one this walk stored
        self.stored.add(object_id)
        if str(event.get("type", "")).endswith(".deleted"):
            obj = {**obj, "deleted": True}
        return object_id, obj
