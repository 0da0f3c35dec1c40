"""The Paddle connector against the fake Paddle Billing API on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from structlog.testing import capture_logs

from fakes.paddle import FakePaddle
from fakes.server import Response
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions
from worker.connectors.paddle import PaddleConnector
from worker.connectors.registry import connector_for

KEY = "pdl_live_apikey_01hv8x2k3m4n5p6q7r8s9t0vwx_Zy3Ab9Cd7Ef5Gh1"
SANDBOX_KEY = "pdl_sdbx_apikey_01hv8x2k3m4n5p6q7r8s9t0vwx_Qw2Er4Ty6Ui8Op0"

MakePaddle = Callable[..., PaddleConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def account(fake_paddle: FakePaddle) -> FakePaddle:
    fake_paddle.add_account(KEY, transactions=70, subscriptions=250, customers=10)
    return fake_paddle


def test_multi_page_sync_follows_pagination_next_and_stores_each_page_with_its_cursor(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    sink = RecordingSink()
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), sink)
    # archived customers (every fifth) are asked for too
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 70 + 250 + 10)
    transactions = [page for page in sink.pages if page.stream == "transactions"]
    assert [len(page.records) for page in transactions] == [30, 30, 10]
    first, second, _ = account.requests_to("/transactions")
    assert first.query == {"per_page": "30", "order_by": "updated_at[ASC]"}
    assert second.query["after"] == "txn_000030"
    assert all(r.headers["paddle-version"] == "1" for r in account.requests)
    thirtieth = sink.records[("transactions", "txn_000030")]["updated_at"]
    assert transactions[0].cursor == {"updated_at": thirtieth, "skip_ids": ["txn_000030"]}
    subscriptions = [page for page in sink.pages if page.stream == "subscriptions"]
    assert [page.cursor for page in subscriptions] == [{"after": "sub_000200"}, {}]
    assert account.requests_to("/customers")[0].query["status"] == "active,archived"


def test_incremental_sync_asks_for_transactions_updated_since_the_last_run(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    # given a completed sync, then a refunded and a new transaction
    connector, first = make_paddle(), RecordingSink()
    run_sync(connector, make_context({"api_key": KEY}), first)
    account.update(KEY, "transactions", "txn_000003", status="refunded")
    [new] = account.add_objects(KEY, "transactions", 1)
    account.clear_log()
    # when
    second = RecordingSink()
    result = run_sync(connector, make_context({"api_key": KEY}, cursors=first.cursors), second)
    # then one transactions request bounded by updated_at[GTE], only the changes stored
    [request] = account.requests_to("/transactions")
    assert request.query["updated_at[GTE]"] == first.cursors["transactions"]["updated_at"]
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert second.ids("transactions") == ["txn_000003", new]
    assert len(second.ids("subscriptions")) == 250  # no change filter: listed in full


def test_sandbox_keys_and_live_keys_go_to_their_own_hosts(make_context: MakeContext) -> None:
    # given the real hosts, answered in-process
    hosts: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        pagination = {"per_page": 30, "next": "x", "has_more": False, "estimated_total": 0}
        return httpx.Response(200, json={"data": [], "meta": {"pagination": pagination}})

    with PaddleConnector(http=HttpOptions(transport=httpx.MockTransport(answer))) as connector:
        connector.sync(make_context({"api_key": SANDBOX_KEY}), RecordingSink())
        connector.sync(make_context({"api_key": KEY}), RecordingSink())
    assert hosts == ["sandbox-api.paddle.com"] * 3 + ["api.paddle.com"] * 3


def test_a_revoked_key_is_auth_failed(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    account.revoke(KEY)
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == (
        "GET /transactions: 401 Unauthorized (request_error/authentication_malformed)"
    )


def test_a_key_without_one_permission_gets_a_warning_naming_the_stream(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    # given a key whose role may not read customers (issue 10: not an auth failure)
    account.route("GET", "/customers", lambda _: account.error_response(403, "no permission"))
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "customers: GET /customers: 403 Forbidden (request_error/forbidden): "
        "the credential lacks this permission",
    )


def test_a_key_allowed_no_stream_is_auth_failed(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    account.fail_next(3, status=403)
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED


def test_a_429_with_retry_after_is_waited_out(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    account.rate_limit_next(1, retry_after=3, path="/subscriptions")
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 330)
    assert sleep.delays == [3.0]


def test_a_500_is_retried_then_succeeds(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    account.fail_next(2, status=500, path="/customers")
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 330)
    assert sleep.delays == [0.5, 1.0]


def test_persistent_5xx_propagates_as_transient(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    account.fail_next(3, status=502, path="/transactions")
    with pytest.raises(TransientError, match="GET /transactions: 502"):
        run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())


def test_a_malformed_body_fails_the_sync_naming_the_endpoint(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    account.malformed_next(1)
    context = make_context({"api_key": KEY}, filters={"objects": ["transactions"]})
    result = run_sync(make_paddle(), context, RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == "transactions: GET /transactions: response body is not valid JSON"


def test_an_answer_without_pagination_fails_naming_the_key(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    account.route("GET", "/customers", lambda _: Response.json({"data": [], "meta": {}}))
    context = make_context({"api_key": KEY}, filters={"objects": ["customers"]})
    result = run_sync(make_paddle(), context, RecordingSink())
    assert result.error == "customers: GET /customers meta: missing key 'pagination'"


def test_a_stream_that_cannot_be_read_is_a_warning_naming_it(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    account.route("GET", "/subscriptions", lambda _: account.error_response(404, "gone"))
    account.route("GET", "/customers", lambda _: account.error_response(404, "gone"))
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "subscriptions: GET /subscriptions: 404 Not Found (request_error/not_found)",
        "customers: GET /customers: 404 Not Found (request_error/not_found)",
    )
    assert result.records == 70


def test_transactions_without_updated_at_are_skipped_with_a_warning(
    account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    account.drop_field_next(1, "updated_at", path="/transactions", index=4)
    result = run_sync(make_paddle(), make_context({"api_key": KEY}), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == ("transactions: skipped 1 objects without a readable id/updated_at",)
    assert result.records == 329


@pytest.mark.parametrize("crash_after", [1, 4])  # a transactions page; a subscriptions page
def test_a_crash_between_pages_resumes_without_loss_or_duplicates(
    crash_after: int, account: FakePaddle, make_paddle: MakePaddle, make_context: MakeContext
) -> None:
    crashed = RecordingSink(crash_after=crash_after)
    with pytest.raises(SinkCrashed):
        run_sync(make_paddle(), make_context({"api_key": KEY}), crashed)
    resumed = RecordingSink()
    context = make_context({"api_key": KEY}, cursors=crashed.cursors)
    result = run_sync(make_paddle(), context, resumed)
    assert result.outcome is SyncOutcome.SUCCEEDED
    for stream, prefix, count in (("transactions", "txn", 70), ("subscriptions", "sub", 250)):
        stored = crashed.ids(stream) + resumed.ids(stream)
        assert sorted(stored) == [f"{prefix}_{n:06d}" for n in range(1, count + 1)]
    assert resumed.cursors["subscriptions"] == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "paddle credentials: api_key is required"),
        ({"api_key": "  "}, "paddle credentials: api_key is required"),
        ({"api_key": "sk_live_notpaddle"}, "api_key must start with pdl_live_ or pdl_sdbx_"),
        ({"api_key": KEY, "vendor_id": "1234"}, "unexpected field 'vendor_id'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    raw: dict[str, object], message: str, make_paddle: MakePaddle
) -> None:
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_paddle().validate_credentials(raw)
    for value in raw.values():
        if isinstance(value, str) and value.strip():
            assert value not in str(raised.value)


def test_the_key_never_reaches_a_message_or_a_log(
    account: FakePaddle,
    make_paddle: MakePaddle,
    make_context: MakeContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, context = make_paddle(), make_context({"api_key": KEY})
    with capture_logs() as logs:
        account.fail_next(3, status=500, path="/transactions")
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        account.route("GET", "/customers", lambda _: account.error_response(400, KEY))
        account.malformed_next(1, path="/subscriptions")
        partial = run_sync(connector, context, RecordingSink())
        account.revoke(KEY)
        revoked = run_sync(connector, context, RecordingSink())
    assert len(partial.warnings) == 2 and revoked.outcome is SyncOutcome.AUTH_FAILED
    texts = [str(transient.value), repr(partial), repr(revoked), repr(logs), caplog.text]
    texts += [repr(context), repr(connector.client.__dict__), repr(account.requests)]
    assert not [text for text in texts if KEY in text or KEY[-8:] in text]


def test_the_registry_builds_paddle(fake_paddle: FakePaddle) -> None:
    connector = connector_for(Provider.PADDLE, base_url=fake_paddle.url)
    connector.close()
    assert isinstance(connector, PaddleConnector)
