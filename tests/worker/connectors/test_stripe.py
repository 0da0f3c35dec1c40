"""The Stripe connector against the fake Stripe API on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from fakes.stripe import FakeStripe
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.registry import connector_for
from worker.connectors.stripe import StripeConnector

KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
ALL_STREAMS = ("customers", "subscriptions", "invoices", "charges")

MakeStripe = Callable[..., StripeConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def account(fake_stripe: FakeStripe) -> FakeStripe:
    fake_stripe.add_account(KEY, customers=250, subscriptions=30, invoices=5, charges=3)
    return fake_stripe


NOW_S = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())  # make_context's now
AFTER_LISTING = {"events": {"created_gte": 1_700_015_000, "skip_ids": [], "checked": NOW_S}}


def test_multi_page_sync_stores_every_page_with_its_cursor(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    # given 250 customers and pages of 100
    sink = RecordingSink()
    # when
    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), sink)
    # then three customer pages, each stored with the cursor that follows it
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert result.records == 250 + 30 + 5 + 3  # subscriptions with status=all: canceled too
    customer_pages = [page for page in sink.pages if page.stream == "customers"]
    assert [len(page.records) for page in customer_pages] == [100, 100, 50]
    assert customer_pages[0].cursor == {
        "starting_after": "cus_000151",
        "newest": 1_700_015_000,
        "newest_ids": ["cus_000250"],
        "listed_from": NOW_S,
    }
    assert customer_pages[1].cursor == {
        "starting_after": "cus_000051",
        "newest": 1_700_015_000,
        "newest_ids": ["cus_000250"],
        "listed_from": NOW_S,
    }
    # listed in full: from now on the stream follows its events, from the newest object on
    assert customer_pages[2].cursor == {
        "events": {"created_gte": 1_700_015_000, "skip_ids": [], "checked": NOW_S}
    }
    assert sorted(sink.ids("customers")) == [f"cus_{n:06d}" for n in range(1, 251)]
    assert {r.query["limit"] for r in account.requests} == {"100"}
    assert all(r.query["status"] == "all" for r in account.requests_to("/v1/subscriptions"))


def test_incremental_sync_fetches_only_new_objects(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    # given a completed first sync, then three new customers
    connector, first = make_stripe(), RecordingSink()
    run_sync(
        connector, make_context({"secret_key": KEY}, filters={"objects": ["customers"]}), first
    )
    new_ids = account.add_objects(KEY, "customers", 3)
    account.clear_log()
    # when
    second = RecordingSink()
    context = make_context(
        {"secret_key": KEY}, cursors=first.cursors, filters={"objects": ["customers"]}
    )
    result = run_sync(connector, context, second)
    # then one request for the stream's events since the listing, storing the new customers
    # (and the newest listed one, replayed from the overlap)
    [request] = account.requests
    assert request.path == "/v1/events"
    assert request.query["type"] == "customer.*"
    assert request.query["created[gte]"] == str(1_700_015_000)
    assert "starting_after" not in request.query
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sorted(second.ids("customers")) == sorted([*new_ids, "cus_000250"])
    assert second.cursors["customers"] == {
        "events": {"created_gte": 1_700_015_180, "skip_ids": ["evt_000291"], "checked": NOW_S}
    }


def test_a_sync_with_nothing_new_stores_nothing_and_keeps_the_cursor(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    connector, first, second, third = (
        make_stripe(),
        RecordingSink(),
        RecordingSink(),
        RecordingSink(),
    )
    run_sync(connector, make_context({"secret_key": KEY}), first)
    run_sync(connector, make_context({"secret_key": KEY}, cursors=first.cursors), second)
    result = run_sync(connector, make_context({"secret_key": KEY}, cursors=second.cursors), third)
    assert (result.outcome, result.records, third.deliveries) == (SyncOutcome.SUCCEEDED, 0, [])
    assert third.cursors == second.cursors


def test_a_revoked_key_is_auth_failed(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    account.revoke(KEY)
    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == "GET /v1/customers: 401 Unauthorized (invalid_request_error)"


def test_an_unknown_key_is_auth_failed(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    result = run_sync(make_stripe(), make_context({"secret_key": "sk_test_other"}), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED


def test_unusable_stored_credentials_are_auth_failed_without_a_request(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    result = run_sync(make_stripe(), make_context({"secret_key": "pk_test_x"}), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == "stripe credentials: secret_key must start with sk_ or rk_"
    assert account.requests == []


def test_a_429_with_retry_after_is_waited_out(
    account: FakeStripe,
    make_stripe: MakeStripe,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    account.rate_limit_next(1, retry_after=2, path="/v1/customers")
    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 288)
    assert sleep.delays == [2.0]


def test_a_500_is_retried_then_succeeds(
    account: FakeStripe,
    make_stripe: MakeStripe,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    account.fail_next(1, status=500, path="/v1/invoices")
    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 288)
    assert sleep.delays == [0.5]


def test_persistent_5xx_propagates_as_transient_for_the_task_to_retry(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    account.fail_next(3, status=503, path="/v1/charges")
    sink = RecordingSink()
    with pytest.raises(TransientError, match="GET /v1/charges: 503"):
        run_sync(make_stripe(), make_context({"secret_key": KEY}), sink)
    assert len(sink.ids("customers")) == 250  # pages stored before it are kept


def test_a_malformed_body_fails_the_sync_with_a_clear_message(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    account.malformed_next(1)
    context = make_context({"secret_key": KEY}, filters={"objects": ["customers"]})
    result = run_sync(make_stripe(), context, RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == "customers: GET /v1/customers: response body is not valid JSON"


def test_a_failing_stream_is_a_warning_naming_it_while_the_others_sync(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    # given a stream the key may not list
    account.route("GET", "/v1/invoices", lambda _: account.error_response(404, "gone"))
    sink = RecordingSink()
    # when
    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), sink)
    # then
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == ("invoices: GET /v1/invoices: 404 Not Found (invalid_request_error)",)
    assert result.records == 250 + 30 + 3
    assert "invoices" not in sink.cursors


def test_objects_without_an_id_are_skipped_with_a_warning(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    account.drop_field_next(1, "id", path="/v1/charges", index=1)
    result = run_sync(make_stripe(), make_context({"secret_key": KEY}), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == ("charges: skipped 1 objects without a readable id/created",)
    assert result.records == 287


def test_a_crash_between_pages_resumes_without_loss_or_duplicates(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    # given a worker that dies after storing the first page
    crashed = RecordingSink(crash_after=1)
    with pytest.raises(SinkCrashed):
        run_sync(make_stripe(), make_context({"secret_key": KEY}), crashed)
    # when a new run starts from the stored cursors
    resumed = RecordingSink()
    context = make_context({"secret_key": KEY}, cursors=crashed.cursors)
    result = run_sync(make_stripe(), context, resumed)
    # then every customer is stored exactly once across the two runs
    assert result.outcome is SyncOutcome.SUCCEEDED
    stored = crashed.ids("customers") + resumed.ids("customers")
    assert sorted(stored) == [f"cus_{n:06d}" for n in range(1, 251)]
    assert account.requests_to("/v1/customers")[-3].query["starting_after"] == "cus_000151"
    assert resumed.cursors["customers"] == AFTER_LISTING


def test_a_resume_point_that_vanished_lists_the_stream_again(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    cursors = {"customers": {"starting_after": "cus_999999", "newest": 1, "newest_ids": ["x"]}}
    context = make_context({"secret_key": KEY}, cursors=cursors, filters={"objects": ["customers"]})
    sink = RecordingSink()
    result = run_sync(make_stripe(), context, sink)
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert "resume point cus_999999 is gone" in result.warnings[0]
    assert len(set(sink.ids("customers"))) == 250


def test_filters_choose_the_streams(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    context = make_context({"secret_key": KEY}, filters={"objects": ["charges", "customers"]})
    result = run_sync(make_stripe(), context, RecordingSink())
    assert result.records == 253
    assert {r.path for r in account.requests} == {"/v1/customers", "/v1/charges"}


def test_unknown_objects_in_filters_fail_naming_them(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    context = make_context({"secret_key": KEY}, filters={"objects": ["refunds"]})
    result = run_sync(make_stripe(), context, RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error is not None and "unknown objects ['refunds']" in result.error


def test_a_connected_account_is_sent_as_stripe_account(
    account: FakeStripe, make_stripe: MakeStripe, make_context: MakeContext
) -> None:
    credentials = {"secret_key": KEY, "account_id": "acct_123"}
    run_sync(
        make_stripe(), make_context(credentials, filters={"objects": ["charges"]}), RecordingSink()
    )
    [request] = account.requests
    assert request.headers["stripe-account"] == "acct_123"
    assert request.headers["stripe-version"] == "2024-06-20"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "stripe credentials: secret_key is required"),
        ({"secret_key": ""}, "stripe credentials: secret_key is required"),
        ({"secret_key": 42}, "stripe credentials: secret_key is required"),
        ({"secret_key": "pk_live_abcdef"}, "stripe credentials: secret_key must start with"),
        ({"secret_key": KEY, "account_id": "x_secretish"}, "account_id must start with acct_"),
        ({"secret_key": KEY, "password": "hunter2"}, "unexpected field 'password'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    raw: dict[str, object], message: str, make_stripe: MakeStripe
) -> None:
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_stripe().validate_credentials(raw)
    for value in raw.values():
        if isinstance(value, str) and value:
            assert value not in str(raised.value)


def test_validate_credentials_keeps_the_known_fields(make_stripe: MakeStripe) -> None:
    raw = {"secret_key": "rk_live_abc", "account_id": "acct_1"}
    assert make_stripe().validate_credentials(raw) == raw


def test_the_secret_key_never_reaches_a_message_or_a_log(
    account: FakeStripe,
    make_stripe: MakeStripe,
    make_context: MakeContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a sync that meets every kind of failure (the fake's 400 even echoes the key)
    caplog.set_level(logging.DEBUG)
    connector, context = make_stripe(), make_context({"secret_key": KEY})
    with capture_logs() as logs:
        account.fail_next(3, status=500, path="/v1/customers")
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        account.route("GET", "/v1/charges", lambda _: account.error_response(400, KEY))
        account.malformed_next(1, path="/v1/invoices")
        partial = run_sync(connector, context, RecordingSink())
        account.revoke(KEY)
        revoked = run_sync(connector, context, RecordingSink())
    # then no message, result, log line or repr holds the key or its tail
    assert len(partial.warnings) == 2 and revoked.outcome is SyncOutcome.AUTH_FAILED
    texts = [
        str(transient.value),
        repr(partial),
        repr(revoked),
        repr(logs),
        caplog.text,
        repr(context),
        repr(connector.client.__dict__),
    ]
    assert not [text for text in texts if KEY in text or KEY[-8:] in text]


def test_the_registry_has_a_connector_for_every_provider(fake_stripe: FakeStripe) -> None:
    stripe = connector_for(Provider.STRIPE, base_url=fake_stripe.url)
    stripe.close()
    assert isinstance(stripe, StripeConnector)
    for provider in Provider:
        connector = connector_for(provider, base_url="http://127.0.0.1:9")
        try:
            assert connector.provider is provider
        finally:
            connector.close()
