"""The WooCommerce connector against the fake WooCommerce REST API on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from structlog.testing import capture_logs

from fakes.server import Response
from fakes.woocommerce import FakeWooCommerce
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions
from worker.connectors.registry import connector_for
from worker.connectors.woocommerce import WooCommerceConnector

KEY = "ck_4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e"
SECRET = "cs_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
STORE = "https://shop.example.com"
CREDENTIALS = {"store_url": STORE, "consumer_key": KEY, "consumer_secret": SECRET}
ORDERS, CUSTOMERS = "/wp-json/wc/v3/orders", "/wp-json/wc/v3/customers"
SUBSCRIPTIONS = "/wp-json/wc/v3/subscriptions"

MakeWoo = Callable[..., WooCommerceConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def store(fake_woocommerce: FakeWooCommerce) -> FakeWooCommerce:
    fake_woocommerce.add_store(KEY, SECRET, orders=250, products=4, customers=120, subscriptions=3)
    return fake_woocommerce


def _orders(n: int, m: int) -> list[str]:
    return [str(100 + i) for i in range(n, m + 1)]


def test_multi_page_sync_stores_each_page_with_its_cursor(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    sink = RecordingSink()
    result = run_sync(make_woocommerce(), make_context(CREDENTIALS), sink)
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 250 + 4 + 3 + 120)
    orders = [page for page in sink.pages if page.stream == "orders"]
    assert [len(page.records) for page in orders] == [100, 100, 50]
    first, second, _ = store.requests_to(ORDERS)
    assert first.query == {
        "per_page": "100",
        "order": "asc",
        "orderby": "modified",
        "dates_are_gmt": "true",
        "page": "1",
    }
    hundredth = sink.records[("orders", "200")]["date_modified_gmt"]
    assert orders[0].cursor == {"modified": hundredth, "skip_ids": ["200"]}
    assert second.query["modified_after"] < hundredth and second.query["exclude"] == "200"
    assert sorted(sink.ids("orders"), key=int) == _orders(1, 250)
    customers = [page for page in sink.pages if page.stream == "customers"]
    assert [page.cursor for page in customers] == [{"page": 2}, {}]
    assert [r.query["page"] for r in store.requests_to(CUSTOMERS)] == ["1", "2"]
    assert store.requests[0].headers["authorization"] == "[redacted]"


def test_incremental_sync_sends_modified_after_and_fetches_only_what_changed(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    # given a completed sync, then two orders changed and one placed
    connector, first = make_woocommerce(), RecordingSink()
    only_orders = {"objects": ["orders"]}
    run_sync(connector, make_context(CREDENTIALS, filters=only_orders), first)
    store.touch(KEY, "orders", ["105", "150"])
    [new] = store.add_objects(KEY, "orders", 1)
    store.clear_log()
    # when
    second = RecordingSink()
    context = make_context(CREDENTIALS, cursors=first.cursors, filters=only_orders)
    result = run_sync(connector, context, second)
    # then one request from just before the newest stored, excluding what is stored at it
    [request] = store.requests
    assert request.query["modified_after"] == "2024-06-01T12:04:09"  # the 250th, less a second
    assert request.query["exclude"] == "350"
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert second.ids("orders") == ["105", "150", new]


def test_changes_within_one_second_across_a_page_boundary_are_all_stored(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    # given five orders changed in the same second and pages of two
    connector, first = make_woocommerce(page_size=100), RecordingSink()
    only_orders = {"objects": ["orders"]}
    run_sync(connector, make_context(CREDENTIALS, filters=only_orders), first)
    store.touch(KEY, "orders", ["101", "102", "103", "104", "105"], same_second=True)
    # when
    second = RecordingSink()
    context = make_context(CREDENTIALS, cursors=first.cursors, filters=only_orders)
    run_sync(make_woocommerce(page_size=2), context, second)
    # then every one of them once, the excluded ids growing page by page
    assert second.ids("orders") == ["101", "102", "103", "104", "105"]
    assert [r.query.get("exclude") for r in store.requests_to(ORDERS)[-3:]] == [
        "350",
        "101,102",
        "101,102,103,104",
    ]


def test_a_store_without_the_subscriptions_extension_syncs_with_a_warning(
    fake_woocommerce: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    fake_woocommerce.add_store(KEY, SECRET, orders=3, products=1, customers=2)
    result = run_sync(make_woocommerce(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED_WITH_WARNINGS, 6)
    assert result.warnings == (
        "subscriptions: skipped, the extension is not installed "
        f"(GET {SUBSCRIPTIONS}: 404 Not Found (rest_no_route))",
    )


def test_a_revoked_key_is_auth_failed(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    store.revoke(KEY)
    result = run_sync(make_woocommerce(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == (
        f"GET {ORDERS}: 401 Unauthorized (woocommerce_rest_authentication_error)"
    )


def test_a_wrong_secret_is_auth_failed(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    credentials = {**CREDENTIALS, "consumer_secret": "cs_wrong"}
    result = run_sync(make_woocommerce(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED


def test_a_429_with_retry_after_is_waited_out(
    store: FakeWooCommerce,
    make_woocommerce: MakeWoo,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    store.rate_limit_next(1, retry_after=4, path=CUSTOMERS)
    result = run_sync(make_woocommerce(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 377)
    assert sleep.delays == [4.0]


def test_a_500_is_retried_then_succeeds(
    store: FakeWooCommerce,
    make_woocommerce: MakeWoo,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    store.fail_next(1, status=500, path=ORDERS)
    result = run_sync(make_woocommerce(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 377)
    assert sleep.delays == [0.5]


def test_persistent_5xx_propagates_as_transient(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    store.fail_next(3, status=503, path=CUSTOMERS)
    with pytest.raises(TransientError, match=f"GET {CUSTOMERS}: 503"):
        run_sync(make_woocommerce(), make_context(CREDENTIALS), RecordingSink())


def test_a_malformed_body_fails_the_sync_naming_the_endpoint(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    store.malformed_next(1)
    context = make_context(CREDENTIALS, filters={"objects": ["orders"]})
    result = run_sync(make_woocommerce(), context, RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == f"orders: GET {ORDERS}: response body is not valid JSON"


def test_an_answer_without_total_pages_fails_naming_the_header(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    store.route("GET", CUSTOMERS, lambda _: Response.json([]))
    context = make_context(CREDENTIALS, filters={"objects": ["customers"]})
    result = run_sync(make_woocommerce(), context, RecordingSink())
    assert result.error == f"customers: GET {CUSTOMERS}: missing or bad X-WP-TotalPages header"


def test_a_stream_that_cannot_be_read_is_a_warning_naming_it(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    store.route("GET", "/wp-json/wc/v3/products", lambda _: store.error_response(400, "bad"))
    result = run_sync(make_woocommerce(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "products: GET /wp-json/wc/v3/products: 400 Bad Request (rest_invalid_param)",
    )
    assert result.records == 373


def test_objects_without_a_modified_date_are_skipped_with_a_warning(
    store: FakeWooCommerce, make_woocommerce: MakeWoo, make_context: MakeContext
) -> None:
    store.drop_field_next(1, "date_modified_gmt", path=SUBSCRIPTIONS, index=1)
    result = run_sync(make_woocommerce(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == ("subscriptions: skipped 1 objects without a readable id/date",)
    assert result.records == 376


@pytest.mark.parametrize("crash_after", [1, 6])  # an orders page; a customers page
def test_a_crash_between_pages_resumes_without_loss_or_duplicates(
    crash_after: int,
    store: FakeWooCommerce,
    make_woocommerce: MakeWoo,
    make_context: MakeContext,
) -> None:
    crashed = RecordingSink(crash_after=crash_after)
    with pytest.raises(SinkCrashed):
        run_sync(make_woocommerce(), make_context(CREDENTIALS), crashed)
    resumed = RecordingSink()
    context = make_context(CREDENTIALS, cursors=crashed.cursors)
    result = run_sync(make_woocommerce(), context, resumed)
    assert result.outcome is SyncOutcome.SUCCEEDED
    for stream, expected in (("orders", _orders(1, 250)), ("customers", _orders(1, 120))):
        stored = crashed.ids(stream) + resumed.ids(stream)
        assert sorted(stored, key=int) == expected
    assert resumed.cursors["customers"] == {}


def test_without_a_base_url_requests_go_to_the_store_url(make_context: MakeContext) -> None:
    # given a WordPress in a sub-folder, answered in-process
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json=[], headers={"X-WP-TotalPages": "0"})

    options = HttpOptions(transport=httpx.MockTransport(answer))
    credentials = {**CREDENTIALS, "store_url": "https://example.com/shop/"}
    context = make_context(credentials, filters={"objects": ["orders"]})
    # when
    result = WooCommerceConnector(http=options).sync(context, RecordingSink())
    # then
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert str(seen[0]).startswith("https://example.com/shop/wp-json/wc/v3/orders?")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"consumer_key": KEY, "consumer_secret": SECRET}, "store_url is required"),
        ({**CREDENTIALS, "store_url": "http://shop.example.com"}, "store_url must be an https://"),
        ({**CREDENTIALS, "store_url": "https://u:pw@shop.example.com"}, "without credentials"),
        ({**CREDENTIALS, "store_url": "shop.example.com"}, "store_url must be an https://"),
        ({**CREDENTIALS, "consumer_key": "key_abc"}, "consumer_key must start with ck_"),
        ({**CREDENTIALS, "consumer_secret": "hunter2"}, "consumer_secret must start with cs_"),
        ({"store_url": STORE, "consumer_key": KEY}, "consumer_secret is required"),
        ({**CREDENTIALS, "password": "hunter2"}, "unexpected field 'password'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    raw: dict[str, object], message: str, make_woocommerce: MakeWoo
) -> None:
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_woocommerce().validate_credentials(raw)
    for value in raw.values():
        if isinstance(value, str) and value != STORE:
            assert value not in str(raised.value)


def test_the_secret_never_reaches_a_message_or_a_log(
    store: FakeWooCommerce,
    make_woocommerce: MakeWoo,
    make_context: MakeContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, context = make_woocommerce(), make_context(CREDENTIALS)
    with capture_logs() as logs:
        store.fail_next(3, status=500, path=ORDERS)
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        store.route("GET", CUSTOMERS, lambda _: store.error_response(400, SECRET))
        store.malformed_next(1, path=SUBSCRIPTIONS)
        partial = run_sync(connector, context, RecordingSink())
        store.revoke(KEY)
        revoked = run_sync(connector, context, RecordingSink())
    assert len(partial.warnings) == 2 and revoked.outcome is SyncOutcome.AUTH_FAILED
    texts = [str(transient.value), repr(partial), repr(revoked), repr(logs), caplog.text]
    texts += [repr(context), repr(connector.__dict__), repr(store.requests)]
    for secret in (SECRET, KEY):
        assert not [text for text in texts if secret in text or secret[-8:] in text]


def test_the_registry_builds_woocommerce(fake_woocommerce: FakeWooCommerce) -> None:
    connector = connector_for(Provider.WOOCOMMERCE, base_url=fake_woocommerce.url)
    connector.close()
    assert isinstance(connector, WooCommerceConnector)
