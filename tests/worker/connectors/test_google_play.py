"""The Google Play connector against the fake token endpoint and Android Publisher API."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from structlog.testing import capture_logs

from fakes.app_store_connect import make_private_key as make_ec_key
from fakes.google_play import FakeGooglePlay, private_key
from fakes.server import Response
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from tests.worker.connectors.conftest import NOW, RecordingSink, RecordingSleep, SinkCrashed
from worker.connectors.base import Page, SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.google_play import GooglePlayConnector
from worker.connectors.http import HttpOptions
from worker.connectors.registry import connector_for

EMAIL = "sync@demo-project.iam.gserviceaccount.com"
PACKAGE = "com.example.app"
VOIDED = f"/androidpublisher/v3/applications/{PACKAGE}/purchases/voidedpurchases"
REVIEWS = f"/androidpublisher/v3/applications/{PACKAGE}/reviews"
TOTAL = 50 + 30  # voided purchases, reviews

MakeGoogle = Callable[..., GooglePlayConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def app(fake_google_play: FakeGooglePlay) -> FakeGooglePlay:
    fake_google_play.add_service_account(EMAIL, PACKAGE)
    fake_google_play.add_voided(PACKAGE, 50)
    fake_google_play.add_reviews(PACKAGE, 30)
    return fake_google_play


@pytest.fixture
def credentials(app: FakeGooglePlay) -> dict[str, str]:
    key_file = app.add_service_account(EMAIL, PACKAGE)
    return {"service_account_json": key_file, "package_name": PACKAGE}


@pytest.fixture
def make_google(
    fake_google_play: FakeGooglePlay, http_options: HttpOptions
) -> Iterator[MakeGoogle]:
    made: list[GooglePlayConnector] = []

    def create(**options: object) -> GooglePlayConnector:
        options.setdefault("http", http_options)
        options.setdefault("page_size", 20)
        options.setdefault("base_url", fake_google_play.url)
        connector = GooglePlayConnector(**options)  # type: ignore[arg-type]
        made.append(connector)
        return connector

    yield create
    for connector in made:
        connector.close()


def test_a_sync_exchanges_a_signed_assertion_then_pages_through_both_lists(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    sink = RecordingSink()
    result = run_sync(make_google(), make_context(credentials), sink)
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, TOTAL)
    assert [len(p.records) for p in sink.pages if p.stream == "voided_purchases"] == [20, 20, 10]
    assert [len(p.records) for p in sink.pages if p.stream == "reviews"] == [20, 10]
    assert set(sink.pages[0].cursor or {}) == {"page", "run", "run_ids"}
    assert sink.cursors["voided_purchases"] == {
        "mark": 1_767_002_940_000,
        "mark_ids": ["GPA.3371-0050-0000-00000"],
    }
    assert app.assertions == [
        {
            "iss": EMAIL,
            "scope": "https://www.googleapis.com/auth/androidpublisher",
            "aud": f"{app.url}/token",
            "iat": int(NOW),
            "exp": int(NOW) + 3600,
        }
    ]
    first_voided = app.requests_to(VOIDED)[0]
    assert first_voided.query == {"maxResults": "20", "type": "1"}  # Google's 30-day default
    assert first_voided.headers["authorization"] == "[redacted]"


def test_incremental_sync_starts_at_the_mark_and_stores_only_what_changed(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    connector, first = make_google(), RecordingSink()
    run_sync(connector, make_context(credentials), first)
    new_voids = app.add_voided(PACKAGE, 3)
    app.edit_review(PACKAGE, "gp:review-00003")
    new_reviews = app.add_reviews(PACKAGE, 1)
    app.clear_log()
    second = RecordingSink()
    result = run_sync(connector, make_context(credentials, cursors=first.cursors), second)
    assert result.outcome is SyncOutcome.SUCCEEDED
    [voided] = app.requests_to(VOIDED)
    assert voided.query["startTime"] == "1767002940000"
    assert sorted(second.ids("voided_purchases")) == sorted(new_voids)
    assert sorted(second.ids("reviews")) == sorted(["gp:review-00003", *new_reviews])


def test_a_sync_with_nothing_new_stores_nothing_and_keeps_the_cursors(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    connector, first, second = make_google(), RecordingSink(), RecordingSink()
    run_sync(connector, make_context(credentials), first)
    result = run_sync(connector, make_context(credentials, cursors=first.cursors), second)
    assert (result.outcome, result.records, second.deliveries) == (SyncOutcome.SUCCEEDED, 0, [])
    assert second.cursors == first.cursors


def test_a_revoked_service_account_is_auth_failed(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    app.revoke(EMAIL)
    result = run_sync(make_google(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == f"POST {app.url}/token: 400 Bad Request (invalid_grant)"
    assert app.requests_to(VOIDED) == []


def test_a_token_refusal_that_is_not_about_the_key_fails_naming_its_code(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    refusal = {"error": "invalid_scope", "error_description": "Bad scope"}
    app.route("POST", "/token", lambda _: Response.json(refusal, 400))
    result = run_sync(make_google(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == f"POST {app.url}/token: 400 Bad Request (invalid_scope)"


def test_filters_choose_the_lists_and_unknown_ones_fail_naming_them(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    sink = RecordingSink()
    context = make_context(credentials, filters={"objects": ["reviews"]})
    result = run_sync(make_google(), context, sink)
    assert (result.outcome, result.records, set(sink.cursors)) == (
        SyncOutcome.SUCCEEDED,
        30,
        {"reviews"},
    )
    assert app.requests_to(VOIDED) == []
    context = make_context(credentials, filters={"objects": ["orders"]})
    refused = run_sync(make_google(), context, RecordingSink())
    assert (refused.outcome, refused.error) == (
        SyncOutcome.FAILED,
        "google_play_console filters: unknown objects ['orders']; "
        "expected some of ['voided_purchases', 'reviews']",
    )


def test_a_rejected_access_token_is_auth_failed(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    class ExpiringSink(RecordingSink):
        def store(self, page: Page) -> None:
            super().store(page)
            app.expire_tokens()

    result = run_sync(make_google(), make_context(credentials), ExpiringSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == f"GET {VOIDED}: 401 Unauthorized (UNAUTHENTICATED)"


def test_an_access_token_about_to_expire_is_renewed_between_calls(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
    http_options: HttpOptions,
) -> None:
    clock = [NOW]

    class SlowSink(RecordingSink):
        def store(self, page: Page) -> None:
            super().store(page)
            clock[0] += 1800  # each page takes half an hour

    options = replace(http_options, wall_clock=lambda: clock[0])
    result = run_sync(make_google(http=options), make_context(credentials), SlowSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, TOTAL)
    assert len(app.assertions) == 3  # at the start, then every other page


def test_a_429_resource_exhausted_with_retry_after_is_waited_out(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
    sleep: RecordingSleep,
) -> None:
    app.rate_limit_next(1, retry_after=3, path=VOIDED)
    result = run_sync(make_google(), make_context(credentials), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, TOTAL)
    assert sleep.delays == [3.0]


def test_a_503_is_retried_then_succeeds(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
    sleep: RecordingSleep,
) -> None:
    app.fail_next(1, status=503, path=REVIEWS)
    result = run_sync(make_google(), make_context(credentials), RecordingSink())
    assert (result.outcome, result.records) == (SyncOutcome.SUCCEEDED, TOTAL)
    assert sleep.delays == [0.5]


def test_a_malformed_token_answer_fails_the_sync_naming_the_endpoint(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    app.malformed_next(1, path="/token")
    result = run_sync(make_google(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == f"POST {app.url}/token: response body is not valid JSON"


def test_malformed_lists_fail_the_sync_naming_them(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    app.malformed_next(1, path=VOIDED)
    reviews = Response.json({"reviews": "none yet"})
    app.route("GET", REVIEWS.replace(PACKAGE, "{package}"), lambda _: reviews)
    result = run_sync(make_google(), make_context(credentials), RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == (
        f"voided_purchases: GET {VOIDED}: response body is not valid JSON; "
        f"reviews: GET {REVIEWS}: key 'reviews' should be a list"
    )


def test_an_unreadable_list_and_items_without_ids_are_warnings_naming_them(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    app.fail_next(1, status=400, path=REVIEWS)
    app.drop_field_next(1, "orderId", path=VOIDED, index=2)
    sink = RecordingSink()
    result = run_sync(make_google(), make_context(credentials), sink)
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "voided_purchases: skipped 1 items without an id or time",
        f"reviews: GET {REVIEWS}: 400 Bad Request (INVALID_ARGUMENT)",
    )
    assert len(sink.ids("voided_purchases")) == 49 and "reviews" not in sink.cursors


def test_a_crash_between_pages_resumes_from_the_page_token(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    crashed = RecordingSink(crash_after=2)
    with pytest.raises(SinkCrashed):
        run_sync(make_google(), make_context(credentials), crashed)
    resumed = RecordingSink()
    result = run_sync(make_google(), make_context(credentials, cursors=crashed.cursors), resumed)
    assert result.outcome is SyncOutcome.SUCCEEDED
    for stream, count in (("voided_purchases", 50), ("reviews", 30)):
        stored = crashed.ids(stream) + resumed.ids(stream)
        assert len(stored) == len(set(stored)) == count
    assert "token" in app.requests_to(VOIDED)[-1].query


def test_an_expired_page_token_lists_again_from_the_mark_with_a_warning(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
) -> None:
    cursors = {"voided_purchases": {"page": "expired!"}}
    sink = RecordingSink()
    result = run_sync(make_google(), make_context(credentials, cursors=cursors), sink)
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "voided_purchases: stored page token expired; listed again from the mark",
    )
    assert len(set(sink.ids("voided_purchases"))) == 50


def _key_file(**changes: object) -> str:
    info: dict[str, object] = {
        "type": "service_account",
        "client_email": EMAIL,
        "private_key": private_key(EMAIL),
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    info.update(changes)
    return json.dumps({name: value for name, value in info.items() if value is not None})


@pytest.mark.parametrize(
    ("key_file", "message"),
    [
        ("{not json", "service_account_json is not valid JSON"),
        ("[1, 2]", "service_account_json is not a service account key file"),
        (_key_file(type="authorized_user"), "is not a service account key file"),
        (_key_file(client_email=None), "service_account_json: client_email is required"),
        (_key_file(private_key="-----BEGIN PRIVATE KEY-----\nxx"), "must be an RSA private key"),
        (_key_file(private_key=make_ec_key()), "must be an RSA private key"),
        (_key_file(token_uri="https://evil.example/token"), "token_uri must be Google's"),
    ],
)
def test_validate_credentials_names_the_problem_never_the_key(
    key_file: str, message: str, make_google: MakeGoogle
) -> None:
    raw = {"service_account_json": key_file, "package_name": PACKAGE}
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_google().validate_credentials(raw)
    assert "PRIVATE KEY" not in str(raised.value) and EMAIL not in str(raised.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"package_name": PACKAGE}, "service_account_json is required"),
        ({"service_account_json": _key_file()}, "package_name is required"),
        ({"service_account_json": _key_file(), "package_name": "app"}, "package_name is not"),
        ({"service_account_json": _key_file(), "package_name": PACKAGE, "x": "y"}, "field 'x'"),
    ],
)
def test_validate_credentials_requires_both_fields(
    raw: dict[str, str], message: str, make_google: MakeGoogle
) -> None:
    with pytest.raises(InvalidCredentials, match=message):
        make_google().validate_credentials(raw)


def test_only_googles_token_uri_is_trusted_without_a_base_url_override(
    app: FakeGooglePlay, credentials: dict[str, str], make_google: MakeGoogle
) -> None:
    real = GooglePlayConnector()
    try:
        with pytest.raises(InvalidCredentials, match="token_uri must be Google's"):
            real.validate_credentials(credentials)  # the fake's token URI
        google = {"service_account_json": _key_file(), "package_name": PACKAGE}
        assert real.validate_credentials(google) == google
    finally:
        real.close()
    assert make_google().validate_credentials(credentials) == credentials


def test_the_key_and_the_tokens_never_reach_a_message_or_a_log(
    app: FakeGooglePlay,
    make_google: MakeGoogle,
    make_context: MakeContext,
    credentials: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, context = make_google(), make_context(credentials)
    with capture_logs() as logs:
        app.fail_next(3, status=500, path=VOIDED)
        with pytest.raises(TransientError) as transient:
            run_sync(connector, context, RecordingSink())
        app.fail_next(1, status=400, path=REVIEWS)
        partial = run_sync(connector, context, RecordingSink())
        app.revoke(EMAIL)
        revoked = run_sync(connector, context, RecordingSink())
    assert partial.warnings and revoked.outcome is SyncOutcome.AUTH_FAILED
    secret_line = private_key(EMAIL).splitlines()[1]
    texts = [str(transient.value), repr(partial), repr(revoked), repr(logs), caplog.text]
    texts += [repr(context), repr(connector.client.__dict__)]
    leaks = ("ya29.", "eyJ", secret_line)
    assert not [text for text in texts if any(leak in text for leak in leaks)]


def test_the_registry_builds_the_google_play_connector(fake_google_play: FakeGooglePlay) -> None:
    connector = connector_for(Provider.GOOGLE_PLAY_CONSOLE, base_url=fake_google_play.url)
    connector.close()
    assert isinstance(connector, GooglePlayConnector)
