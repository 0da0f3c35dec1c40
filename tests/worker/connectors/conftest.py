"""Fixtures for connector tests: fakes on loopback, a recording sleep and sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fakes.app_store_connect import FakeAppStoreConnect
from fakes.google_play import FakeGooglePlay
from fakes.paddle import FakePaddle
from fakes.revenuecat import FakeRevenueCat
from fakes.shopify import FakeShopify
from fakes.stripe import FakeStripe
from fakes.superwall import FakeSuperwall
from fakes.whop import FakeWhop
from fakes.woocommerce import FakeWooCommerce
from models.credentials import Credentials
from worker.connectors.base import Page, SyncContext
from worker.connectors.http import HttpOptions, RetryPolicy
from worker.connectors.paddle import PaddleConnector
from worker.connectors.shopify import ShopifyConnector
from worker.connectors.stripe import StripeConnector
from worker.connectors.whop import WhopConnector
from worker.connectors.woocommerce import WooCommerceConnector

NOW = 1_700_000_000.0  # the wall clock the HTTP layer sees, for HTTP-dates and resets


class RecordingSleep:
    """A `sleep` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class SinkCrashed(Exception):
    """Raised by `RecordingSink` to simulate a worker dying between pages."""


class RecordingSink:
    """A `PageSink` that keeps what it stored, like the real store: upsert plus cursor."""

    def __init__(self, crash_after: int | None = None) -> None:
        self.crash_after = crash_after
        self.pages: list[Page] = []
        self.cursors: dict[str, dict[str, Any]] = {}
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.deliveries: list[tuple[str, str]] = []  # every (stream, id) stored, repeats kept

    def store(self, page: Page) -> None:
        if self.crash_after is not None and len(self.pages) >= self.crash_after:
            raise SinkCrashed(f"crashed before storing page {len(self.pages) + 1}")
        self.pages.append(page)
        for external_id, data in page.records:
            self.records[(page.stream, external_id)] = data
            self.deliveries.append((page.stream, external_id))
        if page.cursor is not None:
            self.cursors[page.stream] = page.cursor

    def ids(self, stream: str) -> list[str]:
        return [external_id for kind, external_id in self.deliveries if kind == stream]


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def http_options(sleep: RecordingSleep) -> HttpOptions:
    """Deterministic backoff (the full ceiling) and no real waiting."""
    return HttpOptions(
        retry=RetryPolicy(attempts=3, base_delay=0.5, max_delay=5.0),
        timeout=2.0,
        sleep=sleep,
        random=lambda: 1.0,
        wall_clock=lambda: NOW,
        allow_loopback=True,  # the fakes listen on 127.0.0.1
    )


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture
def make_stripe(
    fake_stripe: FakeStripe, http_options: HttpOptions
) -> Iterator[Callable[..., StripeConnector]]:
    """Create Stripe connectors pointed at the fake; all are closed after the test."""
    made: list[StripeConnector] = []

    def create(**options: Any) -> StripeConnector:
        options.setdefault("http", http_options)
        connector = StripeConnector(base_url=fake_stripe.url, **options)
        made.append(connector)
        return connector

    yield create
    for connector in made:
        connector.close()


@pytest.fixture
def make_context() -> Callable[..., SyncContext]:
    """Build a `SyncContext` with sensible defaults."""

    def create(
        credentials: dict[str, str],
        *,
        cursors: dict[str, dict[str, Any]] | None = None,
        filters: dict[str, Any] | None = None,
    ) -> SyncContext:
        return SyncContext(
            integration_id="int_1",
            credentials=Credentials(credentials),
            filters=filters or {},
            configurations={},
            cursors=cursors or {},
            now=datetime(2026, 1, 1, tzinfo=UTC),
            data_last_received_at=None,
        )

    return create


@pytest.fixture
def fake_revenuecat() -> Iterator[FakeRevenueCat]:
    with FakeRevenueCat() as fake:
        yield fake


@pytest.fixture
def fake_shopify() -> Iterator[FakeShopify]:
    with FakeShopify() as fake:
        yield fake


@pytest.fixture
def fake_whop() -> Iterator[FakeWhop]:
    with FakeWhop() as fake:
        yield fake


@pytest.fixture
def fake_paddle() -> Iterator[FakePaddle]:
    with FakePaddle() as fake:
        yield fake


@pytest.fixture
def fake_woocommerce() -> Iterator[FakeWooCommerce]:
    with FakeWooCommerce() as fake:
        yield fake


@pytest.fixture
def make_shopify(
    fake_shopify: FakeShopify, http_options: HttpOptions
) -> Iterator[Callable[..., ShopifyConnector]]:
    """Create Shopify connectors serving every shop from the fake; all closed after the test."""
    made: list[ShopifyConnector] = []

    def create(**options: Any) -> ShopifyConnector:
        options.setdefault("http", http_options)
        options.setdefault("base_url", fake_shopify.url)
        made.append(ShopifyConnector(**options))
        return made[-1]

    yield create
    for connector in made:
        connector.close()


@pytest.fixture
def make_whop(
    fake_whop: FakeWhop, http_options: HttpOptions
) -> Iterator[Callable[..., WhopConnector]]:
    """Create Whop connectors pointed at the fake; all closed after the test."""
    made: list[WhopConnector] = []

    def create(**options: Any) -> WhopConnector:
        options.setdefault("http", http_options)
        made.append(WhopConnector(base_url=fake_whop.url, **options))
        return made[-1]

    yield create
    for connector in made:
        connector.close()


@pytest.fixture
def make_paddle(
    fake_paddle: FakePaddle, http_options: HttpOptions
) -> Iterator[Callable[..., PaddleConnector]]:
    """Create Paddle connectors pointed at the fake (live and sandbox); all closed after."""
    made: list[PaddleConnector] = []

    def create(**options: Any) -> PaddleConnector:
        options.setdefault("http", http_options)
        made.append(PaddleConnector(base_url=fake_paddle.url, **options))
        return made[-1]

    yield create
    for connector in made:
        connector.close()


@pytest.fixture
def make_woocommerce(
    fake_woocommerce: FakeWooCommerce, http_options: HttpOptions
) -> Iterator[Callable[..., WooCommerceConnector]]:
    """Create WooCommerce connectors serving every store from the fake; all closed after."""
    made: list[WooCommerceConnector] = []

    def create(**options: Any) -> WooCommerceConnector:
        options.setdefault("http", http_options)
        options.setdefault("base_url", fake_woocommerce.url)
        made.append(WooCommerceConnector(**options))
        return made[-1]

    yield create
    for connector in made:
        connector.close()


@pytest.fixture
def fake_app_store_connect() -> Iterator[FakeAppStoreConnect]:
    with FakeAppStoreConnect() as fake:
        yield fake


@pytest.fixture
def fake_google_play() -> Iterator[FakeGooglePlay]:
    with FakeGooglePlay() as fake:
        yield fake


@pytest.fixture
def fake_superwall() -> Iterator[FakeSuperwall]:
    with FakeSuperwall() as fake:
        yield fake
