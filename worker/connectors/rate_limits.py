"""How long a provider asks us to wait: `Retry-After` and the rate-limit headers.

The HTTP layer (`worker.connectors.http`) asks these after every answer: a 429 or
5xx with `Retry-After` is retried after the time it names, a 429 without one
after the reset the rate-limit headers give, and any answer whose headers say the
budget is spent pauses the next call. A provider with its own headers (Shopify's
leaky bucket, RevenueCat's per-minute usage) passes its own `RateLimitHook`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

# Reads a provider's rate-limit headers: seconds to wait before the next call, or None.
RateLimitHook = Callable[[httpx.Response, float], "float | None"]

# Reset values above this are epoch seconds; as a delta it would be thirty years.
EPOCH_THRESHOLD = 1_000_000_000


def sane_wait(seconds: float | None) -> float | None:
    """A wait a provider asked for, if it is one: finite and not negative; else None.

    Every hook's answer passes here before anyone sleeps on it: `time.sleep` raises on a
    negative, NaN or infinite value, and a provider may send any of them.
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta seconds or an HTTP-date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def rate_limit_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds until reset when `RateLimit-*` or `X-RateLimit-*` headers say none is left."""
    for prefix in ("ratelimit-", "x-ratelimit-"):
        remaining = _number(response.headers.get(prefix + "remaining"))
        if remaining is None:
            continue
        reset = _number(response.headers.get(prefix + "reset"))
        if remaining > 0 or reset is None:
            return None
        return max(0.0, reset - now) if reset > EPOCH_THRESHOLD else reset
    return None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
