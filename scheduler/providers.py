"""Each provider's sync policy: how often, on which queue, within what request budget.

Defaults below; every field can be overridden from configuration, and an
integration can override its own interval (`Integration.sync_interval_seconds`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Final

from models.errors import InvalidValue
from models.status import Provider


@dataclass(frozen=True)
class ProviderPolicy:
    """How one provider's integrations are scheduled and throttled."""

    provider: Provider
    interval: timedelta
    queue: str
    # Requests per second one customer's key may spend at this provider, shared by every
    # worker process on every machine, and the burst the bucket allows.
    rate_per_s: float
    burst: int
    base_url: str | None = None
    # How far a backfill (`syncworker integrations resync --backfill`) re-reads, for
    # providers whose report data arrives or is restated late; None where none does.
    lookback: timedelta | None = None


def _policy(provider: Provider, minutes: int, rate: float, burst: int) -> ProviderPolicy:
    return ProviderPolicy(
        provider, timedelta(minutes=minutes), f"sync.{provider.value}", rate, burst
    )


P = Provider

# Intervals follow how fresh each provider's data gets; rates stay under each provider's
# documented per-key limit with headroom for the customer's own traffic.
DEFAULT_POLICIES: Final[Mapping[Provider, ProviderPolicy]] = {
    # Stripe: 100 read requests/s in live mode, 25/s in test mode.
    P.STRIPE: _policy(P.STRIPE, 15, 20, 40),
    # RevenueCat API v2: about 480 requests/min per project key.
    P.REVENUECAT: _policy(P.REVENUECAT, 30, 6, 20),
    # App Store Connect: reports are daily; about 3,600 requests/hour per key. Apple may
    # restate a day's sales report over the following days: a backfill re-reads a week.
    P.APP_STORE_CONNECT: replace(
        _policy(P.APP_STORE_CONNECT, 360, 0.8, 10), lookback=timedelta(days=7)
    ),
    # Shopify REST Admin: leaky bucket of 40 requests refilling at 2/s per store.
    P.SHOPIFY: _policy(P.SHOPIFY, 15, 2, 40),
    # Google Play Developer API: daily quota per project; a steady trickle is plenty.
    # Voided purchases show up days after the void: a backfill re-reads three days.
    P.GOOGLE_PLAY_CONSOLE: replace(
        _policy(P.GOOGLE_PLAY_CONSOLE, 60, 3, 10), lookback=timedelta(days=3)
    ),
    P.WHOP: _policy(P.WHOP, 30, 5, 20),
    # Paddle Billing: 240 requests/min per IP.
    P.PADDLE: _policy(P.PADDLE, 30, 3, 20),
    # WooCommerce runs on the merchant's own server: be gentle.
    P.WOOCOMMERCE: _policy(P.WOOCOMMERCE, 30, 2, 10),
    # Superwall data arrives by webhook; the sync only checks the key and freshness.
    P.SUPERWALL: _policy(P.SUPERWALL, 60, 2, 10),
}

OVERRIDABLE: Final = ("interval", "queue", "rate_per_s", "burst", "base_url", "lookback")


def resolve_policies(
    overrides: Mapping[Provider, Mapping[str, Any]] | None = None,
) -> dict[Provider, ProviderPolicy]:
    """The default policies with configured overrides applied, validated."""
    policies = dict(DEFAULT_POLICIES)
    for provider, fields in (overrides or {}).items():
        unknown = set(fields) - set(OVERRIDABLE)
        if unknown:
            raise InvalidValue(f"unknown {provider.value} policy setting(s): {sorted(unknown)}")
        policy = replace(policies[provider], **fields)
        if policy.interval < timedelta(minutes=1):
            raise InvalidValue(f"{provider.value} sync interval must be at least one minute")
        if not policy.rate_per_s > 0 or policy.burst < 1:  # `not >` also rejects NaN
            raise InvalidValue(f"{provider.value} rate limit must be positive")
        policies[provider] = policy
    return policies
