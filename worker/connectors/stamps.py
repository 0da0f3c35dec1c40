"""Which record stamps may move a cursor: those within a sane range of the sync's "now".

One record with `created: 99999999999999999999999` once became a stream's mark, so
every later sync asked for records created after the year 3 trillion and stored
nothing while reporting success. A stamp may only move a mark
(`worker.connectors.cursors.Mark`) if it lies between the epoch and the sync's
`now` plus `FUTURE_SKEW`; the record itself is still stored, and the sync says how
many stamps it ignored as a warning naming the stream (`sync_streams`).

`run_sync` binds the check to the sync's `now` (`checking_stamps`); outside a sync
(a connector driven directly), `FALLBACK_LATEST` bounds the future.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Final

# Providers' clocks run a little ahead of ours; a day covers any honest skew.
FUTURE_SKEW: Final = timedelta(days=1)
FALLBACK_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
# Epoch integers from here up are milliseconds (as seconds they would be past year 5000).
MILLISECONDS_FROM: Final = 100_000_000_000


class StampCheck:
    """The latest sane stamp of one sync, and how many stamps it ignored per stream."""

    def __init__(self, latest: datetime) -> None:
        self.latest = latest
        # Compared as integers: a provider's 400-digit "stamp" is a Python int too, and
        # dividing it would overflow a float.
        self._latest_s = int(latest.timestamp())
        self.ignored = 0

    def sane(self, value: int | datetime) -> bool:
        """Whether a stamp (epoch seconds or milliseconds, or an instant) is in range."""
        if isinstance(value, datetime):
            return datetime(1970, 1, 1, tzinfo=UTC) <= value <= self.latest
        latest = self._latest_s * 1000 if value >= MILLISECONDS_FROM else self._latest_s
        return 0 <= value <= latest

    def take_ignored(self) -> int:
        """How many stamps were ignored since the last call (one stream's)."""
        ignored, self.ignored = self.ignored, 0
        return ignored


_CHECK: ContextVar[StampCheck | None] = ContextVar("syncworker_stamp_check", default=None)


@contextmanager
def checking_stamps(now: datetime) -> Iterator[StampCheck]:
    """Bind the sane range for a sync starting at `now` (an aware datetime)."""
    check = StampCheck(now.astimezone(UTC) + FUTURE_SKEW)
    token = _CHECK.set(check)
    try:
        yield check
    finally:
        _CHECK.reset(token)


def stamp_check() -> StampCheck:
    """The running sync's check, or one bounded by `FALLBACK_LATEST` outside a sync."""
    return _CHECK.get() or StampCheck(FALLBACK_LATEST)
