"""The Whop connector against the fake Whop API on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from fakes.server import Response
from fakes.whop import FakeWhop
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.registry import connector_for
from worker.connectors.whop import WhopConnector

KEY = "apik_Xq3b8RkT2mW9vLpN4sHd7cJfA1eYg6Uz"
COMPANY = "biz_acme123"
CREDENTIALS = {"api_key": KEY, "company_id": COMPANY}
MEMBERSHIPS, PAYMENTS = "/api/v1/memberships", "/api/v1/payments"

MakeWhop = Callable[..., WhopConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def company(fake_whop: FakeWhop) -> FakeWhop:
    fake_whop.add_company(KEY, COMPANY, memberships=120, payments=30)
    return fake_whop


def test_multi_page_sync_follows_end_cursors_and_stores_each_page_with_its_cursor(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    sink = RecordingSink()
    result = run_sync(make_whop(), make_context(CREDENTIALS), sink)
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 150)
    memberships = [page for page in sink.pages if page.stream == "memberships"]
    assert [len(page.records) for page in memberships] == [50, 50, 20]
    first, second, _ = company.requests_to(MEMBERSHIPS)
    assert first.query == {
        "company_id": COMPANY,
        "first": "50",
        "order": "created_at",
        "direction": "asc",
    }
    assert "after" in second.query
    fiftieth = sink.records[("memberships", "mem_000050")]["created_at"]
    assert memberships[0].cursor == {"created_after": fiftieth, "skip_ids": ["mem_000050"]}
    assert memberships[2].cursor == {}  # listed in full: the next run starts over
    assert sorted(sink.ids("memberships")) == [f"mem_{n:06d}" for n in range(1, 121)]


def test_incremental_sync_lists_new_payments_and_every_membership(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    # given a completed sync, then two new payments and a canceled membership
    connector, first = make_whop(), RecordingSink()
    run_sync(connector, make_context(CREDENTIALS), first)
    new_payments = company.add_objects(KEY, "payments", 2)
    company.update(KEY, "memberships", "mem_000007", status="canceled")
    company.clear_log()
    # when
    second = RecordingSink()
    result = run_sync(connector, make_context(CREDENTIALS, cursors=first.cursors), second)
    # then payments are asked for from the newest stored, memberships in full
    [payments] = company.requests_to(PAYMENTS)
    assert payments.query["created_after"] == first.cursors["payments"]["created_after"]
    assert "created_after" not in company.requests_to(MEMBERSHIPS)[0].query
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert second.ids("payments") == new_payments
    assert second.records[("memberships", "mem_000007")]["status"] == "canceled"


def test_a_revoked_key_is_auth_failed(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    company.revoke(KEY)
    result = run_sync(make_whop(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == f"GET {MEMBERSHIPS}: 401 Unauthorized (unauthorized)"


def test_a_key_without_access_to_the_company_is_auth_failed(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    credentials = {**CREDENTIALS, "company_id": "biz_someone_else"}
    result = run_sync(make_whop(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    # every stream was denied: the key is allowed nowhere
    assert result.error is not None
    assert result.error.startswith(f"memberships: GET {MEMBERSHIPS}: 403 Forbidden (forbidden)")


def test_a_429_is_waited_out(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    company.rate_limit_next(2, retry_after=1, path=PAYMENTS)
    result = run_sync(make_whop(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 150)
    assert sleep.delays == [1.0, 1.0]


def test_a_500_is_retried_then_succeeds(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext, sleep: RecordingSleep
) -> None:
    company.fail_next(1, status=500, path=MEMBERSHIPS)
    result = run_sync(make_whop(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 150)
    assert sleep.delays == [0.5]


def test_persistent_5xx_propagates_as_transient(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    company.fail_next(3, status=503, path=PAYMENTS)
    with pytest.raises(TransientError, match=f"GET {PAYMENTS}: 503"):
        run_sync(make_whop(), make_context(CREDENTIALS), RecordingSink())


def test_a_malformed_body_fails_the_sync_naming_the_endpoint(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    company.malformed_next(1)
    context = make_context(CREDENTIALS, filters={"objects": ["memberships"]})
    result = run_sync(make_whop(), context, RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == f"memberships: GET {MEMBERSHIPS}: response body is not valid JSON"


def test_an_answer_without_page_info_fails_naming_the_key(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    company.route("GET", PAYMENTS, lambda _: Response.json({"data": [], "pagination": {}}))
    context = make_context(CREDENTIALS, filters={"objects": ["payments"]})
    result = run_sync(make_whop(), context, RecordingSink())
    assert result.error == f"payments: GET {PAYMENTS}: missing key 'page_info'"


def test_a_stream_that_cannot_be_read_is_a_warning_naming_it(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    company.route("GET", PAYMENTS, lambda _: company.error_response(404, "gone"))
    sink = RecordingSink()
    result = run_sync(make_whop(), make_context(CREDENTIALS), sink)
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (f"payments: GET {PAYMENTS}: 404 Not Found (not_found)",)
    assert result.records == 120


def test_objects_without_created_at_are_skipped_with_a_warning(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    company.drop_field_next(1, "created_at", path=PAYMENTS, index=0)
    result = run_sync(make_whop(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == ("payments: skipped 1 objects without a readable id/created_at",)
    assert result.records == 149


def test_a_crash_between_pages_resumes_without_loss_or_duplicates(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    # given a worker that dies after storing the second page of memberships
    crashed = RecordingSink(crash_after=2)
    with pytest.raises(SinkCrashed):
        run_sync(make_whop(), make_context(CREDENTIALS), crashed)
    # when a new run starts from the stored cursors
    resumed = RecordingSink()
    result = run_sync(make_whop(), make_context(CREDENTIALS, cursors=crashed.cursors), resumed)
    # then it lists from the last stored membership on, and stores each exactly once
    assert result.outcome is SyncOutcome.SUCCEEDED
    stored = crashed.ids("memberships") + resumed.ids("memberships")
    assert sorted(stored) == [f"mem_{n:06d}" for n in range(1, 121)]
    resume = company.requests_to(MEMBERSHIPS)[-1].query
    assert resume["created_after"] == crashed.records[("memberships", "mem_000100")]["created_at"]
    assert resumed.cursors["memberships"] == {}


def test_an_unreadable_stored_cursor_restarts_the_stream_with_a_warning(
    company: FakeWhop, make_whop: MakeWhop, make_context: MakeContext
) -> None:
    cursors = {"payments": {"created_after": "yesterday"}}
    context = make_context(CREDENTIALS, cursors=cursors, filters={"objects": ["payments"]})
    result = run_sync(make_whop(), context, RecordingSink())
    assert result.warnings == (
        "payments: stored cursor unreadable (created_after is not an ISO 8601 instant with an"
        " offset); synced from the start",
    )
    assert result.records == 30


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"company_id": COMPANY}, "whop credentials: api_key is required"),
        ({"api_key": KEY}, "whop credentials: company_id is required"),
        ({"api_key": "two words", "company_id": COMPANY}, "api_key must be printable ASCII"),
        ({"api_key": KEY, "company_id": "acme"}, "company_id must start with biz_"),
        ({**CREDENTIALS, "webhook_secret": "ws_abc"}, "unexpected field 'webhook_secret'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    raw: dict[str, object], message: str, make_whop: MakeWhop
) -> None:
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_whop().validate_credentials(raw)
    for value in raw.values():
        if isinstance(value, str):
            assert value not in str(raised.value)


def test_the_key_never_reaches_a_message_or_a_log(
    company: FakeWhop,
    make_whop: MakeWhop,
    make_context: MakeContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, context = make_whop(), make_context(CREDENTIALS)
    with capture_logs() as logs:
        company.fail_next(3, status=500, path=MEMBERSHIPS)
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        company.route("GET", PAYMENTS, lambda _: company.error_response(400, KEY))
        partial = run_sync(connector, context, RecordingSink())
        company.revoke(KEY)
        revoked = run_sync(connector, context, RecordingSink())
    assert len(partial.warnings) == 1 and revoked.outcome is SyncOutcome.AUTH_FAILED
    texts = [str(transient.value), repr(partial), repr(revoked), repr(logs), caplog.text]
    texts += [repr(context), repr(connector.client.__dict__), repr(company.requests)]
    assert not [text for text in texts if KEY in text or KEY[-8:] in text]


def test_the_registry_builds_whop(fake_whop: FakeWhop) -> None:
    connector = connector_for(Provider.WHOP, base_url=fake_whop.url)
    connector.close()
    assert isinstance(connector, WhopConnector)
