"""The one source of "now": an injectable clock.

Every time rule takes its `now` from a `Clock`, so tests move time instead of
sleeping and the demo can run days in minutes.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = ensure_utc(start) if start else datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            self._now = ensure_utc(moment)


class AcceleratedClock:
    """A clock that runs `speed` times faster than the wall clock from `start`; for the demo.

    It can be held: while held, simulated time stands still, and it resumes where it
    stopped. The demo holds it while its worker is behind, so a busy machine plays the
    same story slower instead of a different story (syncs skipped by the simulated days).
    """

    def __init__(self, speed: float, start: datetime | None = None) -> None:
        self.speed = speed
        self._start = ensure_utc(start) if start else datetime.now(UTC)
        self._origin = time.monotonic()
        self._lock = threading.Lock()
        self._held_since: float | None = None
        self._held_total = 0.0

    def now(self) -> datetime:
        with self._lock:
            stopped_at = self._held_since
            until = time.monotonic() if stopped_at is None else stopped_at
            elapsed = until - self._origin - self._held_total
        return self._start + timedelta(seconds=elapsed * self.speed)

    @property
    def held(self) -> bool:
        return self._held_since is not None

    def hold(self) -> None:
        """Stop simulated time (a no-op while already held)."""
        with self._lock:
            if self._held_since is None:
                self._held_since = time.monotonic()

    def resume(self) -> None:
        """Let simulated time run again from where it stood (a no-op unless held)."""
        with self._lock:
            if self._held_since is not None:
                self._held_total += time.monotonic() - self._held_since
                self._held_since = None


def ensure_utc(moment: datetime) -> datetime:
    """Return `moment` as an aware UTC datetime; naive values are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
