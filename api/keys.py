"""Verified API keys remembered for a few seconds, so a read costs one query, not two.

Only keys that verified are remembered, by the SHA-256 of the whole presented key (never
the key), each until `ttl` has passed on the app clock: a revoked key keeps working for
at most that long (SYNCWORKER_API_KEY_CACHE_TTL, 5 s by default; 0 turns the cache off).
A key that did not verify is never remembered, so a key made a moment ago works at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from models.api_keys import Principal, digest

# Far more live keys than a deployment has; past it the cache starts over, so a flood of
# distinct valid keys costs memory bounded by this, and at worst a query each.
MAX_ENTRIES: Final = 10_000


class VerifiedKeys:
    """Principals of keys verified within the last `ttl`, by the digest of the key."""

    def __init__(self, ttl: timedelta, now: Callable[[], datetime]) -> None:
        self._ttl = ttl
        self._now = now
        self._entries: dict[str, tuple[Principal, datetime]] = {}
        self._lock = threading.Lock()

    def cached(self, presented: str) -> Principal | None:
        """The key's principal while it is remembered and fresh; None otherwise."""
        if not self._ttl:
            return None
        entry = self._entries.get(digest(presented))
        if entry is None or entry[1] <= self._now():
            return None
        return entry[0]

    def remember(self, presented: str, found: Principal | None) -> None:
        """Remember what the database said of a key: its principal, or forget it (None)."""
        if not self._ttl:
            return
        key = digest(presented)
        with self._lock:
            if found is None:
                self._entries.pop(key, None)
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (found, self._now() + self._ttl)
