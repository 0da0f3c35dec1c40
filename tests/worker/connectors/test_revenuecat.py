"""The RevenueCat connector against the fake RevenueCat API v2 on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from structlog.testing import capture_logs

from fakes.revenuecat import FakeRevenueCat
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions
from worker.connectors.registry import connector_for
from worker.connectors.revenuecat import RevenueCatConnector

KEY = "sk_TESTrevenuecatSecretKey1234567"
PROJECT = "proj1ab2c3d4"
CREDENTIALS = {"secret_key": KEY, "project_id": PROJECT}
CUSTOMERS = f"/v2/projects/{PROJECT}/customers"
NEWEST = f"$RCAnonymousID:{60:032x}"  # the 60th customer, seen last; every fifth is anonymous
MARK = 1_700_003_600_000  # its last_seen_at
TOTAL = 60 + 30 + 20  # customers, subscriptions (odd ones), purchases (every third)

MakeRevenueCat = Callable[..., RevenueCatConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def project(fake_revenuecat: FakeRevenueCat) -> FakeRevenueCat:
    fake_revenuecat.add_project(KEY, PROJECT, customers=60)
    return fake_revenuecat


@pytest.fixture
def make_revenuecat(
    fake_revenuecat: FakeRevenueCat, http_options: HttpOptions
) -> Iterator[MakeRevenueCat]:
    made: list[RevenueCatConnector] = []

    def create(**options: object) -> RevenueCatConnector:
        options.setdefault("http", http_options)
        options.setdefault("page_size", 25)
        connector = RevenueCatConnector(base_url=fake_revenuecat.url, **options)  # type: ignore[arg-type]
        made.append(connector)
        return connector

    yield create
    for connector in made:
        connector.close()


def child_path(customer_id: str, child: str) -> str:
    return f"{CUSTOMERS}/{quote(customer_id, safe='')}/{child}"


def test_multi_page_sync_stores_customers_with_their_subscriptions_and_purchases(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    sink = RecordingSink()
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), sink)
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert result.records == TOTAL
    customer_pages = [page for page in sink.pages if page.stream == "customers"]
    assert [len(page.records) for page in customer_pages] == [25, 25, 10]
    assert sorted(sink.ids("customers")) == project.customer_ids(KEY)
    assert len(set(sink.ids("subscriptions"))) == 30
    assert len(set(sink.ids("purchases"))) == 20
    first = customer_pages[0].cursor or {}
    assert set(first) == {"page", "run", "run_ids"}
    assert sink.cursors["customers"] == {"mark": MARK, "mark_ids": [NEWEST]}
    # anonymous ids are URL-encoded into the path, and every list asks for a full page
    assert project.requests_to(child_path(f"$RCAnonymousID:{5:032x}", "subscriptions"))
    assert {r.query["limit"] for r in project.requests} == {"25"}


def test_incremental_sync_fetches_children_only_for_new_or_seen_customers(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    # given a completed sync, then three new customers and one who came back and bought again
    connector, first = make_revenuecat(), RecordingSink()
    run_sync(connector, make_context(CREDENTIALS), first)
    new_ids = project.add_customers(KEY, 3)
    project.touch(KEY, "cust_00007")
    project.clear_log()
    # when
    second = RecordingSink()
    result = run_sync(connector, make_context(CREDENTIALS, cursors=first.cursors), second)
    # then the list is walked, but subscriptions and purchases are asked for four customers only
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sorted(second.ids("customers")) == sorted([*new_ids, "cust_00007"])
    children = {r.path for r in project.requests if r.path != CUSTOMERS}
    assert children == {
        child_path(key, child)
        for key in [*new_ids, "cust_00007"]
        for child in ("subscriptions", "purchases")
    }
    assert len(second.ids("purchases")) == 2  # cust_00007's new one, and cust_00063's
    assert second.cursors["customers"]["mark"] == 1_700_003_840_000


def test_filters_choose_what_is_stored_while_the_customer_list_is_always_walked(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    # given only subscriptions chosen
    sink = RecordingSink()
    context = make_context(CREDENTIALS, filters={"objects": ["subscriptions"]})
    # when
    result = run_sync(make_revenuecat(), context, sink)
    # then no customer records and no purchase requests, and the cursor says what it covers
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 30)
    assert (sink.ids("customers"), sink.ids("purchases")) == ([], [])
    assert not [r for r in project.requests if r.path.endswith("/purchases")]
    assert sink.cursors["customers"] == {
        "mark": MARK,
        "mark_ids": [NEWEST],
        "objects": ["subscriptions"],
    }


def test_a_mark_covering_fewer_objects_than_now_chosen_walks_again_from_the_start(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    connector, first, second = make_revenuecat(), RecordingSink(), RecordingSink()
    only_customers = make_context(CREDENTIALS, filters={"objects": ["customers"]})
    run_sync(connector, only_customers, first)
    assert first.ids("subscriptions") == [] and len(project.requests) == 3  # the list only
    result = run_sync(connector, make_context(CREDENTIALS, cursors=first.cursors), second)
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, TOTAL)
    assert second.cursors["customers"] == {"mark": MARK, "mark_ids": [NEWEST]}


def test_unknown_objects_in_filters_fail_naming_them(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    context = make_context(CREDENTIALS, filters={"objects": ["customers", "refunds"]})
    result = run_sync(make_revenuecat(), context, RecordingSink())
    assert (result.outcome, result.error) == (
        SyncOutcome.FAILED,
        "revenuecat filters: unknown objects ['refunds']; "
        "expected some of ['customers', 'subscriptions', 'purchases']",
    )
    assert project.requests == []


def test_a_sync_with_nothing_new_stores_nothing_and_keeps_the_cursor(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    connector, first, second = make_revenuecat(), RecordingSink(), RecordingSink()
    run_sync(connector, make_context(CREDENTIALS), first)
    result = run_sync(connector, make_context(CREDENTIALS, cursors=first.cursors), second)
    assert (result.outcome, result.records, second.deliveries) == (SyncOutcome.SUCCEEDED, 0, [])
    assert second.cursors == first.cursors


def test_a_revoked_key_is_auth_failed(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    project.revoke(KEY)
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == f"GET {CUSTOMERS}: 401 Unauthorized (authentication_error)"


def test_a_key_of_another_project_is_auth_failed(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    credentials = {**CREDENTIALS, "project_id": "projOther"}
    result = run_sync(make_revenuecat(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert "403 Forbidden (authorization_error)" in (result.error or "")


def test_a_429_with_retry_after_and_revenuecat_headers_is_waited_out(
    project: FakeRevenueCat,
    make_revenuecat: MakeRevenueCat,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    headers = {
        "RevenueCat-Rate-Limit-Current-Usage": "481",
        "RevenueCat-Rate-Limit-Current-Limit": "480",
    }
    project.rate_limit_next(1, retry_after=2, path=CUSTOMERS, headers=headers)
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, TOTAL)
    assert sleep.delays == [2.0]


def test_a_429_without_retry_after_waits_the_bodys_backoff_ms(
    project: FakeRevenueCat,
    make_revenuecat: MakeRevenueCat,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    project.rate_limit_next(1, retry_after=None, path=CUSTOMERS)
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sleep.delays == [1.0]


def test_a_spent_minute_pauses_before_the_next_call(
    project: FakeRevenueCat,
    make_revenuecat: MakeRevenueCat,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    project.spend_budget()
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sleep.delays and set(sleep.delays) == {5.0}  # a minute, capped at the policy's max


def test_a_500_is_retried_then_succeeds(
    project: FakeRevenueCat,
    make_revenuecat: MakeRevenueCat,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    project.fail_next(1, status=500, path=CUSTOMERS)
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, TOTAL)
    assert sleep.delays == [0.5]


def test_persistent_5xx_propagates_as_transient_for_the_task_to_retry(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    project.fail_next(3, status=503, path=CUSTOMERS)
    with pytest.raises(TransientError, match=f"GET {CUSTOMERS}: 503"):
        run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())


def test_a_malformed_customer_list_fails_the_sync_naming_the_endpoint(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    project.malformed_next(1, path=CUSTOMERS)
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == f"customers: GET {CUSTOMERS}: response body is not valid JSON"


def test_a_customer_list_without_items_fails_naming_the_key(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    project.route("GET", CUSTOMERS, lambda _: project.error_response(200, "surprise"))
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == f"customers: GET {CUSTOMERS}: missing key 'items'"


def test_a_customer_whose_purchases_cannot_be_read_is_a_warning_naming_it(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    broken = child_path("cust_00003", "purchases")
    project.malformed_next(1, path=broken)
    project.drop_field_next(1, "id", path=CUSTOMERS, index=3)
    sink = RecordingSink()
    result = run_sync(make_revenuecat(), make_context(CREDENTIALS), sink)
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        f"purchases: GET {broken}: response body is not valid JSON",
        "customers: skipped 1 items without a readable id/last_seen_at",
    )
    assert "cust_00003" in sink.ids("customers") and len(sink.ids("customers")) == 59


def test_a_crash_between_pages_resumes_without_loss_or_duplicates(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    # given a worker that dies after the first customers page (and its children) is stored
    crashed = RecordingSink(crash_after=3)
    with pytest.raises(SinkCrashed):
        run_sync(make_revenuecat(), make_context(CREDENTIALS), crashed)
    assert len(crashed.ids("customers")) == 25
    # when a new run starts from the stored cursor
    resumed = RecordingSink()
    result = run_sync(
        make_revenuecat(), make_context(CREDENTIALS, cursors=crashed.cursors), resumed
    )
    # then every customer, subscription and purchase is stored exactly once across the runs
    assert result.outcome is SyncOutcome.SUCCEEDED
    for stream, count in (("customers", 60), ("subscriptions", 30), ("purchases", 20)):
        stored = crashed.ids(stream) + resumed.ids(stream)
        assert len(stored) == len(set(stored)) == count
    assert resumed.cursors["customers"] == {"mark": MARK, "mark_ids": [NEWEST]}


def test_an_unreadable_stored_cursor_restarts_with_a_warning(
    project: FakeRevenueCat, make_revenuecat: MakeRevenueCat, make_context: MakeContext
) -> None:
    context = make_context(CREDENTIALS, cursors={"customers": {"mark": "yesterday"}})
    result = run_sync(make_revenuecat(), context, RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "customers: stored cursor unreadable (mark is not an integer); synced from the start",
    )
    assert result.records == TOTAL


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "revenuecat credentials: secret_key is required"),
        ({"secret_key": KEY}, "revenuecat credentials: project_id is required"),
        ({"secret_key": "", "project_id": PROJECT}, "secret_key is required"),
        ({"secret_key": "appl_publicKey", "project_id": PROJECT}, "must be a secret key"),
        ({"secret_key": KEY, "project_id": "../admin?x=sk_y"}, "project_id may hold only"),
        ({**CREDENTIALS, "token": "hunter2secret"}, "unexpected field 'token'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    raw: dict[str, object], message: str, make_revenuecat: MakeRevenueCat
) -> None:
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_revenuecat().validate_credentials(raw)
    for value in raw.values():
        if isinstance(value, str) and value:
            assert value not in str(raised.value)


def test_the_secret_key_never_reaches_a_message_or_a_log(
    project: FakeRevenueCat,
    make_revenuecat: MakeRevenueCat,
    make_context: MakeContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, context = make_revenuecat(), make_context(CREDENTIALS)
    with capture_logs() as logs:
        project.fail_next(3, status=500, path=CUSTOMERS)
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        project.route(
            "GET", child_path("cust_00001", "purchases"), lambda _: project.error_response(400, KEY)
        )
        partial = run_sync(connector, context, RecordingSink())
        project.revoke(KEY)
        revoked = run_sync(connector, context, RecordingSink())
    assert partial.warnings and revoked.outcome is SyncOutcome.AUTH_FAILED
    texts = [str(transient.value), repr(partial), repr(revoked), repr(logs), caplog.text]
    texts += [repr(context), repr(connector.client.__dict__)]
    assert not [text for text in texts if KEY in text or KEY[-8:] in text]


def test_the_registry_builds_the_revenuecat_connector(fake_revenuecat: FakeRevenueCat) -> None:
    connector = connector_for(Provider.REVENUECAT, base_url=fake_revenuecat.url)
    connector.close()
    assert isinstance(connector, RevenueCatConnector)
