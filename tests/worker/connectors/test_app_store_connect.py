"""The App Store Connect connector against the fake sales-reports API on loopback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from structlog.testing import capture_logs

from fakes.app_store_connect import FakeAppStoreConnect, make_private_key
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import NOW, RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.app_store_connect import AppStoreConnectConnector
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions
from worker.connectors.registry import connector_for

PRIVATE_KEY = make_private_key()
KEY_ID = "2X9R4HXF34"
ISSUER = "57246542-96fe-1a63-e053-0824d011072a"
VENDOR = "80012345"
CREDENTIALS = {
    "issuer_id": ISSUER,
    "key_id": KEY_ID,
    "private_key": PRIVATE_KEY,
    "vendor_number": VENDOR,
}
ENDPOINT = "/v1/salesReports"
FIRST_DAY = date(2025, 12, 18)  # the context's today (2026-01-01) minus the 14-day lookback

MakeAsc = Callable[..., AppStoreConnectConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def team(fake_app_store_connect: FakeAppStoreConnect) -> FakeAppStoreConnect:
    fake = fake_app_store_connect
    fake.add_team(KEY_ID, ISSUER, PRIVATE_KEY, VENDOR)
    for offset in range(2, 12):  # sales from Dec 20 to Dec 29
        fake.add_report(KEY_ID, "SALES", FIRST_DAY + timedelta(days=offset), rows=3)
    for offset in range(4, 12):  # subscriptions from Dec 22 to Dec 29
        fake.add_report(KEY_ID, "SUBSCRIPTION", FIRST_DAY + timedelta(days=offset), rows=2)
    return fake


@pytest.fixture
def make_asc(
    fake_app_store_connect: FakeAppStoreConnect, http_options: HttpOptions
) -> Iterator[MakeAsc]:
    made: list[AppStoreConnectConnector] = []

    def create(**options: object) -> AppStoreConnectConnector:
        options.setdefault("http", http_options)
        options.setdefault("lookback_days", 14)
        url = fake_app_store_connect.url
        connector = AppStoreConnectConnector(base_url=url, **options)  # type: ignore[arg-type]
        made.append(connector)
        return connector

    yield create
    for connector in made:
        connector.close()


def dates(fake: FakeAppStoreConnect, report_type: str) -> list[str]:
    return [
        r.query["filter[reportDate]"]
        for r in fake.requests_to(ENDPOINT)
        if r.query["filter[reportType]"] == report_type
    ]


def test_a_sync_downloads_each_day_until_the_report_that_is_not_out_yet(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    sink = RecordingSink()
    result = run_sync(make_asc(), make_context(CREDENTIALS), sink)
    # then each day is a page stored with its date, old days without sales included
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 10 * 3 + 8 * 2)
    sales = [page for page in sink.pages if page.stream == "sales"]
    assert [page.cursor for page in sales][:3] == [
        {"last_date": "2025-12-18"},
        {"last_date": "2025-12-19"},
        {"last_date": "2025-12-20"},
    ]
    assert [len(page.records) for page in sales] == [0, 0] + [3] * 10
    assert sink.cursors == {
        "sales": {"last_date": "2025-12-29"},
        "subscriptions": {"last_date": "2025-12-29"},
    }
    # and Dec 30 (two days old, no report yet) stopped each stream without an error
    assert dates(team, "SALES")[-1] == "2025-12-30"
    assert "2025-12-31" not in dates(team, "SALES")
    record = sink.records[("sales", "2025-12-20:1")]
    assert record["SKU"] == "SKU 2025-12-20 1" and record["report_date"] == "2025-12-20"


def test_filters_choose_the_reports_and_unknown_ones_fail_naming_them(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    sink, only = RecordingSink(), {"objects": ["subscriptions"]}
    result = run_sync(make_asc(), make_context(CREDENTIALS, filters=only), sink)
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 8 * 2)
    assert (dates(team, "SALES"), set(sink.cursors)) == ([], {"subscriptions"})
    unknown = make_context(CREDENTIALS, filters={"objects": ["sales", "refunds"]})
    refused = run_sync(make_asc(), unknown, RecordingSink())
    assert (refused.outcome, refused.error) == (
        SyncOutcome.FAILED,
        "app_store_connect filters: unknown objects ['refunds']; "
        "expected some of ['sales', 'subscriptions']",
    )


def test_requests_carry_the_documented_filters_and_a_short_lived_es256_token(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    run_sync(make_asc(lookback_days=1), make_context(CREDENTIALS), RecordingSink())
    request = team.requests_to(ENDPOINT)[0]
    assert request.query == {
        "filter[frequency]": "DAILY",
        "filter[reportDate]": "2025-12-31",
        "filter[reportSubType]": "SUMMARY",
        "filter[reportType]": "SALES",
        "filter[vendorNumber]": VENDOR,
        "filter[version]": "1_0",
    }
    token = team.tokens[0]
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": KEY_ID, "typ": "JWT"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "iss": ISSUER,
        "iat": int(NOW),
        "exp": int(NOW) + 900,
        "aud": "appstoreconnect-v1",
    }


def test_incremental_sync_asks_only_for_the_days_since_the_cursor(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    connector, first = make_asc(), RecordingSink()
    run_sync(connector, make_context(CREDENTIALS), first)
    for day in (date(2025, 12, 30), date(2025, 12, 31)):
        team.add_report(KEY_ID, "SALES", day, rows=3)
        team.add_report(KEY_ID, "SUBSCRIPTION", day, rows=2)
    team.clear_log()
    # when the next day's sync runs from the stored cursors
    context = replace(
        make_context(CREDENTIALS, cursors=first.cursors), now=datetime(2026, 1, 2, tzinfo=UTC)
    )
    second = RecordingSink()
    result = run_sync(connector, context, second)
    # then only Dec 30 and 31 are asked for (Jan 1 is not out yet)
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 10)
    assert dates(team, "SALES") == ["2025-12-30", "2025-12-31", "2026-01-01"]
    assert dates(team, "SUBSCRIPTION") == ["2025-12-30", "2025-12-31", "2026-01-01"]
    assert second.cursors["sales"] == {"last_date": "2025-12-31"}


def test_a_revoked_key_is_auth_failed(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    team.revoke(KEY_ID)
    result = run_sync(make_asc(), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == f"GET {ENDPOINT}: 401 Unauthorized (NOT_AUTHORIZED)"


def test_a_token_signed_with_another_key_is_auth_failed(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    credentials = {**CREDENTIALS, "private_key": make_private_key()}
    result = run_sync(make_asc(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED


def test_a_key_without_access_to_the_vendor_is_auth_failed(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    credentials = {**CREDENTIALS, "vendor_number": "80099999"}
    result = run_sync(make_asc(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    # every stream was denied: the key is allowed nowhere
    assert result.error is not None
    assert result.error.startswith(f"sales: GET {ENDPOINT}: 403 Forbidden (FORBIDDEN_ERROR)")


def test_a_spent_rolling_hour_goes_back_to_the_task_then_resumes(
    team: FakeAppStoreConnect,
    make_asc: MakeAsc,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    # given a 429 whose X-Rate-Limit says the rolling hour's requests are spent
    spent = {"X-Rate-Limit": "user-hour-lim:3500;user-hour-rem:0;"}
    team.rate_limit_next(1, retry_after=None, path=ENDPOINT, headers=spent)
    sink = RecordingSink()
    # when
    with pytest.raises(TransientError) as raised:
        run_sync(make_asc(), make_context(CREDENTIALS), sink)
    # then the worker is not blocked for the rolling hour: the task retries in a minute
    assert raised.value.retry_after == 60.0
    assert sleep.delays == []
    resumed = RecordingSink()
    result = run_sync(make_asc(), make_context(CREDENTIALS, cursors=sink.cursors), resumed)
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 46)


def test_a_429_with_hours_to_spare_is_retried_after_a_backoff(
    team: FakeAppStoreConnect,
    make_asc: MakeAsc,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    team.rate_limit_next(1, retry_after=None, path=ENDPOINT)
    result = run_sync(make_asc(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 46)
    assert sleep.delays == [0.5]


def test_a_500_is_retried_then_succeeds(
    team: FakeAppStoreConnect,
    make_asc: MakeAsc,
    make_context: MakeContext,
    sleep: RecordingSleep,
) -> None:
    team.fail_next(1, status=500)
    result = run_sync(make_asc(), make_context(CREDENTIALS), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, 46)
    assert sleep.delays == [0.5]


def test_reports_that_are_not_gzip_fail_the_sync_naming_the_endpoint_and_day(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    team.malformed_next(2)  # the first answer of each stream
    result = run_sync(make_asc(lookback_days=1), make_context(CREDENTIALS), RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == (
        f"sales: GET {ENDPOINT}: the 2025-12-31 SALES report is not gzip-compressed; "
        f"subscriptions: GET {ENDPOINT}: the 2025-12-31 SUBSCRIPTION report is not gzip-compressed"
    )


def test_a_rejected_report_type_and_broken_rows_are_warnings_naming_them(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    # given a vendor whose subscription report is refused, and a sales day with a broken row
    team.add_report(KEY_ID, "SALES", date(2025, 12, 21), rows=3, broken=1)
    team.refuse("SUBSCRIPTION")
    sink = RecordingSink()
    # when
    result = run_sync(make_asc(), make_context(CREDENTIALS), sink)
    # then the sales arrive and the missing pieces are named
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "sales: skipped 1 rows not matching the header",
        f"subscriptions: GET {ENDPOINT}: 400 Bad Request (PARAMETER_ERROR.INVALID)",
    )
    assert result.records == 30 and "subscriptions" not in sink.cursors


def test_a_crash_between_days_resumes_without_loss_or_duplicates(
    team: FakeAppStoreConnect, make_asc: MakeAsc, make_context: MakeContext
) -> None:
    crashed = RecordingSink(crash_after=5)
    with pytest.raises(SinkCrashed):
        run_sync(make_asc(), make_context(CREDENTIALS), crashed)
    assert crashed.cursors == {"sales": {"last_date": "2025-12-22"}}
    resumed = RecordingSink()
    result = run_sync(make_asc(), make_context(CREDENTIALS, cursors=crashed.cursors), resumed)
    assert result.outcome is SyncOutcome.SUCCEEDED
    for stream, count in (("sales", 30), ("subscriptions", 16)):
        stored = crashed.ids(stream) + resumed.ids(stream)
        assert len(stored) == len(set(stored)) == count
    assert dates(team, "SALES").count("2025-12-22") == 1


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer_id": None}, "issuer_id is required"),
        ({"issuer_id": "issuer-42"}, "issuer_id must be a UUID"),
        ({"key_id": "abc"}, "key_id must be 10 capital letters or digits"),
        ({"vendor_number": "V-1"}, "vendor_number must be digits"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nnot base64\n"}, "private_key must be"),
        ({"private_key": _pem(ec.generate_private_key(ec.SECP384R1()))}, "EC P-256"),
        ({"private_key": _pem(rsa.generate_private_key(65537, 2048))}, "private_key must be"),
        ({"password": "hunter2secret"}, "unexpected field 'password'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    changes: dict[str, str | None], message: str, make_asc: MakeAsc
) -> None:
    raw = {**CREDENTIALS, **changes}
    raw = {name: value for name, value in raw.items() if value is not None}
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_asc().validate_credentials(raw)
    for value in changes.values():
        for line in (value or "").splitlines():
            assert line not in str(raised.value) or line.startswith("-----")


def test_the_key_and_the_token_never_reach_a_message_or_a_log(
    team: FakeAppStoreConnect,
    make_asc: MakeAsc,
    make_context: MakeContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, context = make_asc(), make_context(CREDENTIALS)
    with capture_logs() as logs:
        team.fail_next(3, status=500)
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        team.malformed_next(1)
        partial = run_sync(connector, context, RecordingSink())
        team.revoke(KEY_ID)
        revoked = run_sync(connector, context, RecordingSink())
    secret_line = PRIVATE_KEY.splitlines()[1]
    tokens = [r.headers["authorization"] for r in team.requests]
    assert set(tokens) == {"[redacted]"}
    texts = [str(transient.value), repr(partial), repr(revoked), repr(logs), caplog.text]
    texts += [repr(context), repr(connector.client.__dict__)]
    assert revoked.outcome is SyncOutcome.AUTH_FAILED
    assert not [text for text in texts if secret_line in text or "eyJ" in text]


def test_the_registry_builds_the_app_store_connect_connector(
    fake_app_store_connect: FakeAppStoreConnect,
) -> None:
    connector = connector_for(Provider.APP_STORE_CONNECT, base_url=fake_app_store_connect.url)
    connector.close()
    assert isinstance(connector, AppStoreConnectConnector)
