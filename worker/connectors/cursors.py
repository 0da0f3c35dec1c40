"""Where a stream's next sync starts: high-water marks, and walks built on two of them.

A *mark* is the newest stamp stored (an epoch integer, or an ISO 8601 instant kept
as the provider wrote it) with the ids stored at exactly that stamp. As a lower
bound it is inclusive yet repeats nothing: a record at the mark whose id is known
was stored already; one with a new id (made in the same second) was not.

- A list read oldest change first (Paddle's transactions, Whop's payments,
  WooCommerce's orders) moves one `Mark` with every stored page: it is where the
  next request, the next run and a crashed run all start.
- A list read newest first or in no stamp order (Stripe, Shopify, RevenueCat,
  Google Play) is *walked*: a `WalkCursor` keeps the `mark` of the last completed
  walk and, while a walk is under way, the `page` to resume from and the `run`
  mark the walk will leave. Only a walk that reaches the end moves the mark.

Each connector keeps its own stored names (`MarkKeys`, `WalkKeys`), so cursors
stored by earlier versions stay readable. A stored cursor that cannot be read
restarts its stream with a warning (`restore`): records are upserts, so that costs
time, not correctness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from worker.connectors.base import SyncTally
from worker.connectors.errors import RequestRejected
from worker.connectors.stamps import stamp_check

K = TypeVar("K", int, datetime)  # a stamp as compared: an epoch integer or an aware instant
C = TypeVar("C")
T = TypeVar("T")
Stamp = int | str  # a stamp as stored: what the provider wrote


def instant(value: object) -> datetime | None:
    """An ISO 8601 timestamp with an offset as an aware datetime, else None."""
    parsed = _iso_8601(value)
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def utc_instant(value: object) -> datetime | None:
    """An ISO 8601 timestamp, read as UTC when it has no offset (WooCommerce's `*_gmt`)."""
    parsed = _iso_8601(value)
    if parsed is None or parsed.tzinfo is not None:
        return parsed
    return parsed.replace(tzinfo=UTC)


def _iso_8601(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def epoch(value: object) -> int | None:
    """An integer stamp (epoch seconds or milliseconds), else None; a bool is none.

    A decimal string counts: Google sends JSON int64 values as strings.
    """
    # ASCII digits only ('²' is a digit to str.isdigit), and no more than an int64 has, so
    # a provider's endless digit string is no stamp rather than a ValueError.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sane(value: int | datetime | None) -> bool:
    return value is not None and stamp_check().sane(value)


@dataclass(frozen=True)
class Stamps(Generic[K]):
    """How a provider's stamps read: as comparable values (`read`, None when unreadable)."""

    read: Callable[[object], K | None]
    kind: str  # what a readable one is, for the unreadable-cursor warning


EPOCH = Stamps(epoch, "an integer")
INSTANT = Stamps(instant, "an ISO 8601 instant with an offset")
UTC_DATE = Stamps(utc_instant, "an ISO 8601 date")


def restore(stream: str, tally: SyncTally, load: Callable[[], C], start: Callable[[], C]) -> C:
    """The cursor `load` reads; when it raises `TypeError`, a warning and a fresh start."""
    try:
        return load()
    except TypeError as exc:
        tally.warn(f"{stream}: stored cursor unreadable ({exc}); synced from the start")
        return start()


@dataclass(frozen=True)
class MarkKeys(Generic[K]):
    """How one connector stores a mark: its stamps and the names of its two keys."""

    stamps: Stamps[K]
    at: str = "mark"
    ids: str = "mark_ids"
    numeric_ids: bool = False  # ids are decimal integers, kept in numeric order

    def load(self, stored: Mapping[str, Any]) -> Mark[K]:
        """The mark in `stored` (none if absent); `TypeError` naming an unreadable key.

        A mark outside the sane range (`worker.connectors.stamps`), stored before stamps
        were checked, is unreadable too: the stream starts over rather than stay stuck.
        """
        at, ids = stored.get(self.at), stored.get(self.ids, [])
        if at is not None and (not isinstance(at, int | str) or self.stamps.read(at) is None):
            raise TypeError(f"{self.at} is not {self.stamps.kind}")
        if at is not None and not _sane(self.stamps.read(at)):
            raise TypeError(f"{self.at} is outside the sane range")
        if not isinstance(ids, list) or not all(self._valid_id(one) for one in ids):
            raise TypeError(f"{self.ids} is not a list of ids")
        return Mark(self, at, set(ids))

    def _valid_id(self, value: object) -> bool:
        return isinstance(value, str) and (value.isdigit() or not self.numeric_ids)


@dataclass
class Mark(Generic[K]):
    """A high-water stamp and the ids stored at exactly it (see the module docstring)."""

    keys: MarkKeys[K] = field(repr=False)
    at: Stamp | None = None
    ids: set[str] = field(default_factory=set)

    @property
    def bound(self) -> K | None:
        """The mark's stamp as compared, None while there is no mark."""
        return None if self.at is None else self.keys.stamps.read(self.at)

    def holds(self, key: str, stamp: Stamp) -> bool:
        """Whether a record is exactly at the mark and was stored there already."""
        return key in self.ids and self.keys.stamps.read(stamp) == self.bound

    def covers(self, key: str, stamp: Stamp) -> bool:
        """Whether a record is older than the mark or held at it."""
        bound, value = self.bound, self.keys.stamps.read(stamp)
        if bound is None or value is None or not _sane(value):
            return False
        return value < bound or (value == bound and key in self.ids)

    def add(self, key: str, stamp: Stamp) -> bool:
        """Raise the mark to a stored record's stamp, or note its id at it; whether it moved.

        A stamp outside the sane range never moves it; the sync counts it for a warning.
        """
        bound, value = self.bound, self.keys.stamps.read(stamp)
        if value is None:
            return False
        if not _sane(value):
            stamp_check().ignored += 1
            return False
        if bound is None or value > bound:
            self.at, self.ids = stamp, {key}
        elif value == bound and key not in self.ids:
            self.ids.add(key)
        else:
            return False
        return True

    def absorb(self, other: Mark[K]) -> None:
        """Take another mark's stamp if newer, or its ids if at the same stamp."""
        if other.at is None:
            return
        other_bound, bound = other.bound, self.bound
        if bound is not None and other_bound == bound:
            self.ids |= other.ids
        elif bound is None or (other_bound is not None and other_bound > bound):
            self.at, self.ids = other.at, set(other.ids)

    def sorted_ids(self) -> list[str]:
        return sorted(self.ids, key=int if self.keys.numeric_ids else None)

    def dump(self) -> dict[str, Any]:
        return {} if self.at is None else {self.keys.at: self.at, self.keys.ids: self.sorted_ids()}


@dataclass(frozen=True)
class WalkKeys(Generic[K]):
    """How one connector stores a walk: its stamps and the names of its marks and page."""

    stamps: Stamps[K]
    mark: tuple[str, str] = ("mark", "mark_ids")  # the last completed walk's
    run: tuple[str, str] = ("run", "run_ids")  # the walk under way's future mark
    page: str = "page"  # where the walk under way resumes

    def marks(self) -> tuple[MarkKeys[K], MarkKeys[K]]:
        return MarkKeys(self.stamps, *self.mark), MarkKeys(self.stamps, *self.run)


@dataclass
class WalkCursor(Generic[K]):
    """A list walked in full each sync, storing only what is new since the last walk's mark."""

    keys: WalkKeys[K] = field(repr=False)
    mark: Mark[K]
    run: Mark[K]
    page: str | None = None
    stored_page: bool = field(default=False, repr=False)  # `page` is a crashed walk's, unused

    @classmethod
    def start(cls, keys: WalkKeys[K]) -> WalkCursor[K]:
        """A cursor with nothing stored yet."""
        mark, run = keys.marks()
        return cls(keys, Mark(mark), Mark(run))

    @classmethod
    def restore(
        cls, keys: WalkKeys[K], stored: Mapping[str, Any] | None, stream: str, tally: SyncTally
    ) -> WalkCursor[K]:
        """The stored cursor; an unreadable one restarts the walk with a warning."""
        load = lambda: cls.load(keys, stored or {})  # noqa: E731 - read only inside `restore`
        return restore(stream, tally, load, lambda: cls.start(keys))

    @classmethod
    def load(cls, keys: WalkKeys[K], stored: Mapping[str, Any]) -> WalkCursor[K]:
        """The stored cursor; `TypeError` naming what is unreadable."""
        page = stored.get(keys.page)
        if page is not None and not isinstance(page, str):
            raise TypeError(f"{keys.page} is not text")
        mark, run = keys.marks()
        return cls(keys, mark.load(stored), run.load(stored), page, stored_page=page is not None)

    def take(self, key: str, stamp: Stamp) -> bool:
        """Whether a record is new since the last walk; a new one is noted in the run."""
        if self.mark.covers(key, stamp):
            return False
        self.run.add(key, stamp)
        return True

    def fetch(self, fetch: Callable[[], T], tally: SyncTally, warning: str) -> T:
        """`fetch()` the walk's next page; if the provider refuses the page a crashed walk
        stored (expired, or its object gone), `warning` and the walk again from the mark.

        Records the restarted walk stores again are upserts: that costs time, not correctness.
        """
        resuming, self.stored_page = self.stored_page, False
        try:
            return fetch()
        except RequestRejected:
            if not resuming:
                raise
        tally.warn(warning)
        self.page = None
        return fetch()

    def finish(self) -> None:
        """The walk reached the end: its newest stamp becomes the mark."""
        self.mark.absorb(self.run)
        self.run, self.page = Mark(self.run.keys), None

    def dump(self) -> dict[str, Any]:
        page = {self.keys.page: self.page} if self.page else {}
        return {**self.mark.dump(), **self.run.dump(), **page}
