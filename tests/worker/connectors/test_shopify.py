"""The Shopify connector against the fake Shopify Admin API on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from structlog.testing import capture_logs

from fakes.server import Response
from fakes.shopify import FakeShopify
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions
from worker.connectors.registry import connector_for
from worker.connectors.shopify import ShopifyConnector, call_limit_wait

TOKEN = "shpat_0123456789abcdef0123456789abcdef"
SHOP = "acme-store.myshopify.com"
CREDENTIALS = {"shop_domain": SHOP, "access_token": TOKEN}
ORDERS = "/admin/api/2024-10/orders.json"
CUSTOMERS = "/admin/api/2024-10/customers.json"

MakeShopify = Callable[..., ShopifyConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def shop(fake_shopify: FakeShopify) -> FakeShopify:
    fake_shopify.add_shop(TOKEN, orders=120, customers=7, products=3)
    return fake_shopify


def test_multi_page_sync_follows_link_headers_and_stores_each_page_with_its_cursor(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    # given 120 orders (every fourth closed) and pages of 50
    sink = RecordingSink()
    # when
    result = run_sync(make_shopify(page_size=50), make_context(CREDENTIALS), sink)
    # then three order pages, the filters on the first request only, page_info after it
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 120 + 7 + 3)
    orders = [page for page in sink.pages if page.stream == "orders"]
    assert [len(page.records) for page in orders] == [50, 50, 20]
    first, second, third = shop.requests_to(ORDERS)
    assert first.query == {"limit": "50", "status": "any"}
    assert set(second.query) == set(third.query) == {"limit", "page_info"}
    assert orders[0].cursor == {
        "page_info": second.query["page_info"],
        "newest": sink.records[("orders", "1050")]["updated_at"],
        "newest_ids": ["1050"],
    }
    newest = shop.newest_updated_at(TOKEN, "orders")
    assert orders[2].cursor == {"updated_at_min": newest, "skip_ids": ["1120"]}
    assert sorted(sink.ids("orders"), key=int) == [str(1000 + n) for n in range(1, 121)]
    assert shop.requests[0].headers["x-shopify-access-token"] == "[redacted]"


def test_incremental_sync_sends_updated_at_min_and_fetches_only_what_changed(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    # given a completed first sync, then one changed and two new customers
    connector, first = make_shopify(), RecordingSink()
    only_customers = {"objects": ["customers"]}
    run_sync(connector, make_context(CREDENTIALS, filters=only_customers), first)
    shop.touch(TOKEN, "customers", ["1003"])
    new_ids = shop.add_objects(TOKEN, "customers", 2)
    shop.clear_log()
    # when
    second = RecordingSink()
    context = make_context(CREDENTIALS, cursors=first.cursors, filters=only_customers)
    result = run_sync(connector, context, second)
    # then one request bounded by the first run's newest updated_at
    [request] = shop.requests
    assert request.query["updated_at_min"] == first.cursors["customers"]["updated_at_min"]
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sorted(second.ids("customers")) == ["1003", *new_ids]


def test_a_sync_with_nothing_new_stores_nothing_and_keeps_the_cursor(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    connector, first, second = make_shopify(), RecordingSink(), RecordingSink()
    run_sync(connector, make_context(CREDENTIALS), first)
    result = run_sync(connector, make_context(CREDENTIALS, cursors=first.cursors), second)
    assert (result.outcome, result.records, second.deliveries) == (SyncOutcome.SUCCEEDED, 0, [])
    assert second.cursors == first.cursors


def test_a_revoked_token_is_auth_failed(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    shop.revoke(TOKEN)
    result = run_sync(make_shopify(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == f"GET {ORDERS}: 401 Unauthorized"


def test_an_unknown_token_is_auth_failed(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    credentials = {**CREDENTIALS, "access_token": "shpat_other"}
    result = run_sync(make_shopify(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED


def test_a_nearly_full_call_bucket_slows_the_next_call_down(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    # given a bucket at 38 of 40 (above the 80% mark of 32 by six calls, leaking 2/s)
    shop.call_limit = "38/40"
    context = make_context(CREDENTIALS, filters={"objects": ["orders"]})
    # when
    result = run_sync(make_shopify(page_size=50), context, RecordingSink())
    # then each call after an answer reporting it waits three seconds
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 120)
    assert sleep.delays == [3.0, 3.0]


def test_a_429_with_retry_after_is_waited_out(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    headers = {"X-Shopify-Shop-Api-Call-Limit": "40/40"}
    shop.rate_limit_next(1, retry_after=2.0, path=CUSTOMERS, headers=headers)
    result = run_sync(make_shopify(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 130)
    assert sleep.delays == [2.0]


def test_a_429_without_retry_after_waits_for_the_bucket_to_drain(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    headers = {"X-Shopify-Shop-Api-Call-Limit": "40/40"}
    shop.rate_limit_next(1, retry_after=None, path=CUSTOMERS, headers=headers)
    result = run_sync(make_shopify(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sleep.delays == [4.0]  # (40 - 32) calls at 2 a second


@pytest.mark.parametrize(
    ("header", "wait"),
    [("1/40", None), ("32/40", None), ("36/40", 2.0), ("80/80", 4.0), ("junk", None), ("", None)],
)
def test_call_limit_wait_reads_the_leaky_bucket(header: str, wait: float | None) -> None:
    response = httpx.Response(200, headers={"X-Shopify-Shop-Api-Call-Limit": header})
    assert call_limit_wait(response, 0.0) == wait


def test_a_500_is_retried_then_succeeds(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    shop.fail_next(1, status=502, path=CUSTOMERS)
    result = run_sync(make_shopify(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 130)
    assert sleep.delays == [0.5]


def test_persistent_5xx_propagates_as_transient_for_the_task_to_retry(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    shop.fail_next(3, status=503, path=CUSTOMERS)
    sink = RecordingSink()
    with pytest.raises(TransientError, match=f"GET {CUSTOMERS}: 503"):
        run_sync(make_shopify(), make_context(CREDENTIALS), sink)
    assert len(sink.ids("orders")) == 120  # the pages stored before it are kept


def test_a_malformed_body_fails_the_sync_naming_the_endpoint(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    shop.malformed_next(1)
    context = make_context(CREDENTIALS, filters={"objects": ["orders"]})
    result = run_sync(make_shopify(), context, RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == f"orders: GET {ORDERS}: response body is not valid JSON"


def test_an_answer_without_its_list_fails_naming_the_key(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    shop.route("GET", ORDERS, lambda _: Response.json({"order": []}))
    context = make_context(CREDENTIALS, filters={"objects": ["orders"]})
    result = run_sync(make_shopify(), context, RecordingSink())
    assert result.error == f"orders: GET {ORDERS}: missing list 'orders'"


def test_a_stream_that_cannot_be_read_is_a_warning_naming_it_while_the_others_sync(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    shop.route("GET", CUSTOMERS, lambda _: shop.error_response(404, "Not Found"))
    sink = RecordingSink()
    result = run_sync(make_shopify(), make_context(CREDENTIALS), sink)
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (f"customers: GET {CUSTOMERS}: 404 Not Found",)
    assert (result.records, "customers" in sink.cursors) == (123, False)


def test_objects_without_an_updated_at_are_skipped_with_a_warning(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    shop.drop_field_next(1, "updated_at", path=CUSTOMERS, index=2)
    result = run_sync(make_shopify(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == ("customers: skipped 1 objects without a readable id/updated_at",)
    assert result.records == 129


def test_a_crash_between_pages_resumes_without_loss_or_duplicates(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    # given a worker that dies after storing the first page of orders
    crashed = RecordingSink(crash_after=1)
    with pytest.raises(SinkCrashed):
        run_sync(make_shopify(page_size=50), make_context(CREDENTIALS), crashed)
    # when a new run starts from the stored cursors
    resumed = RecordingSink()
    context = make_context(CREDENTIALS, cursors=crashed.cursors)
    result = run_sync(make_shopify(page_size=50), context, resumed)
    # then it continues at the stored page_info and stores every order exactly once
    assert result.outcome is SyncOutcome.SUCCEEDED
    stored = crashed.ids("orders") + resumed.ids("orders")
    assert sorted(stored, key=int) == [str(1000 + n) for n in range(1, 121)]
    assert shop.requests_to(ORDERS)[-2].query["page_info"] == crashed.cursors["orders"]["page_info"]
    assert resumed.cursors["orders"] == {
        "updated_at_min": shop.newest_updated_at(TOKEN, "orders"),
        "skip_ids": ["1120"],
    }


def test_an_expired_resume_point_lists_the_stream_again_with_a_warning(
    shop: FakeShopify, make_shopify: MakeShopify, make_context: MakeContext
) -> None:
    cursors = {"orders": {"page_info": "bm90LWEtY3Vyc29y", "newest_ids": ["1"]}}
    context = make_context(CREDENTIALS, cursors=cursors, filters={"objects": ["orders"]})
    sink = RecordingSink()
    result = run_sync(make_shopify(), context, sink)
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == ("orders: resume point expired; listed again from the last run",)
    assert len(set(sink.ids("orders"))) == 120


def test_without_a_base_url_requests_go_to_the_shop_domain(make_context: MakeContext) -> None:
    # given the real API's shape, answered in-process
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"orders": []})

    connector = ShopifyConnector(http=HttpOptions(transport=httpx.MockTransport(answer)))
    context = make_context(CREDENTIALS, filters={"objects": ["orders"]})
    # when
    result = connector.sync(context, RecordingSink())
    # then
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert str(seen[0]).startswith(f"https://{SHOP}/admin/api/2024-10/orders.json?")


def test_one_pooled_client_serves_every_shop_on_its_own_host(make_context: MakeContext) -> None:
    hosts: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(200, json={"orders": []})

    other = {"shop_domain": "other-shop.myshopify.com", "access_token": TOKEN}
    with ShopifyConnector(http=HttpOptions(transport=httpx.MockTransport(answer))) as connector:
        client = connector.client
        for credentials in (CREDENTIALS, other):
            context = make_context(credentials, filters={"objects": ["orders"]})
            assert connector.sync(context, RecordingSink()).outcome is SyncOutcome.SUCCEEDED
        assert connector.client is client
    assert hosts == [SHOP, "other-shop.myshopify.com"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"access_token": TOKEN}, "shopify credentials: shop_domain is required"),
        ({"shop_domain": SHOP}, "shopify credentials: access_token is required"),
        ({**CREDENTIALS, "shop_domain": "acme.example.com"}, "shop_domain must look like"),
        ({**CREDENTIALS, "shop_domain": "https://acme.myshopify.com"}, "shop_domain must look"),
        ({**CREDENTIALS, "access_token": "hunter2secret"}, "access_token must be an Admin API"),
        ({**CREDENTIALS, "api_secret": "shpss_abc"}, "unexpected field 'api_secret'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    raw: dict[str, object], message: str, make_shopify: MakeShopify
) -> None:
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_shopify().validate_credentials(raw)
    for name, value in raw.items():
        if name != "shop_domain" and isinstance(value, str):
            assert value not in str(raised.value)


def test_validate_credentials_normalises_the_shop_domain(make_shopify: MakeShopify) -> None:
    raw = {"shop_domain": " Acme-Store.myshopify.com ", "access_token": TOKEN}
    assert make_shopify().validate_credentials(raw) == CREDENTIALS


def test_the_token_never_reaches_a_message_or_a_log(
    shop: FakeShopify,
    make_shopify: MakeShopify,
    make_context: MakeContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, context = make_shopify(), make_context(CREDENTIALS)
    with capture_logs() as logs:
        shop.fail_next(3, status=500, path=ORDERS)
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        shop.route("GET", CUSTOMERS, lambda _: shop.error_response(400, TOKEN))
        shop.malformed_next(1, path="/admin/api/2024-10/products.json")
        partial = run_sync(connector, context, RecordingSink())
        shop.revoke(TOKEN)
        revoked = run_sync(connector, context, RecordingSink())
    assert len(partial.warnings) == 2 and revoked.outcome is SyncOutcome.AUTH_FAILED
    texts = [str(transient.value), repr(partial), repr(revoked), repr(logs), caplog.text]
    texts += [repr(context), repr(connector.__dict__), repr(shop.requests)]
    assert not [text for text in texts if TOKEN in text or TOKEN[-8:] in text]


def test_the_registry_builds_shopify(fake_shopify: FakeShopify) -> None:
    connector = connector_for(Provider.SHOPIFY, base_url=fake_shopify.url)
    connector.close()
    assert isinstance(connector, ShopifyConnector)
