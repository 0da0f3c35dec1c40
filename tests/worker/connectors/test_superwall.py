"""The Superwall connector: the key check against the fake API and webhook freshness."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from fakes.superwall import FakeSuperwall
from models.errors import InvalidCredentials
from models.status import Provider, SyncOutcome
from models.sync_runs import SyncResult
from tests.worker.connectors.conftest import RecordingSink, RecordingSleep
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions
from worker.connectors.registry import connector_for
from worker.connectors.superwall import SuperwallConnector

KEY = "sw_live_4f3c2b1a0e9d8c7b6a5f4e3d"
CREDENTIALS = {"api_key": KEY}
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # make_context's "now"

MakeSuperwall = Callable[..., SuperwallConnector]
MakeContext = Callable[..., SyncContext]


@pytest.fixture
def org(fake_superwall: FakeSuperwall) -> FakeSuperwall:
    fake_superwall.add_key(KEY, projects=2)
    return fake_superwall


@pytest.fixture
def make_superwall(
    fake_superwall: FakeSuperwall, http_options: HttpOptions
) -> Iterator[MakeSuperwall]:
    made: list[SuperwallConnector] = []

    def create() -> SuperwallConnector:
        made.append(SuperwallConnector(base_url=fake_superwall.url, http=http_options))
        return made[-1]

    yield create
    for connector in made:
        connector.close()


@pytest.fixture
def context(make_context: MakeContext) -> Callable[..., SyncContext]:
    def create(last: datetime | None, **configurations: Any) -> SyncContext:
        base = make_context(CREDENTIALS)
        return replace(base, configurations=configurations, data_last_received_at=last)

    return create


def test_a_valid_key_and_fresh_webhook_data_succeed_with_one_probe(
    org: FakeSuperwall, make_superwall: MakeSuperwall, context: Callable[..., SyncContext]
) -> None:
    sink = RecordingSink()
    result = run_sync(make_superwall(), context(NOW - timedelta(hours=3)), sink)
    assert result == SyncResult(SyncOutcome.SUCCEEDED)
    [probe] = org.requests
    assert (probe.path, probe.query) == ("/v2/projects", {"limit": "1"})
    assert sink.pages == []


def test_no_webhook_data_past_the_threshold_is_a_warning_naming_the_staleness(
    org: FakeSuperwall, make_superwall: MakeSuperwall, context: Callable[..., SyncContext]
) -> None:
    last = NOW - timedelta(hours=50)
    result = run_sync(make_superwall(), context(last), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert result.warnings == (
        "webhooks: no Superwall webhook data for 50 hours "
        "(last at 2025-12-29T22:00:00+00:00); stale after 48 hours",
    )


def test_webhook_data_never_received_is_a_warning(
    org: FakeSuperwall, make_superwall: MakeSuperwall, context: Callable[..., SyncContext]
) -> None:
    result = run_sync(make_superwall(), context(None), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert "has ever been received" in result.warnings[0]


@pytest.mark.parametrize(
    ("hours", "outcome"), [(6, "succeeded_with_warnings"), (12.5, "succeeded")]
)
def test_the_staleness_threshold_is_configurable(
    org: FakeSuperwall,
    make_superwall: MakeSuperwall,
    context: Callable[..., SyncContext],
    hours: float,
    outcome: str,
) -> None:
    ctx = context(NOW - timedelta(hours=10), stale_after_hours=hours)
    assert run_sync(make_superwall(), ctx, RecordingSink()).outcome == outcome


@pytest.mark.parametrize("hours", [0, -1, "48", True, None])
def test_an_unusable_threshold_fails_naming_the_setting(
    org: FakeSuperwall,
    make_superwall: MakeSuperwall,
    context: Callable[..., SyncContext],
    hours: object,
) -> None:
    result = run_sync(make_superwall(), context(NOW, stale_after_hours=hours), RecordingSink())
    assert result.outcome is SyncOutcome.FAILED
    assert result.error == (
        "superwall configurations: stale_after_hours must be a positive number of hours"
    )


def test_a_revoked_key_is_auth_failed(
    org: FakeSuperwall, make_superwall: MakeSuperwall, context: Callable[..., SyncContext]
) -> None:
    org.revoke(KEY)
    result = run_sync(make_superwall(), context(NOW), RecordingSink())
    assert result.outcome is SyncOutcome.AUTH_FAILED
    assert result.error == "GET /v2/projects: 401 Unauthorized (unauthorized)"


def test_a_429_with_retry_after_is_waited_out(
    org: FakeSuperwall,
    make_superwall: MakeSuperwall,
    context: Callable[..., SyncContext],
    sleep: RecordingSleep,
) -> None:
    org.rate_limit_next(1, retry_after=2)
    result = run_sync(make_superwall(), context(NOW), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sleep.delays == [2.0]


def test_a_502_is_retried_then_succeeds(
    org: FakeSuperwall,
    make_superwall: MakeSuperwall,
    context: Callable[..., SyncContext],
    sleep: RecordingSleep,
) -> None:
    org.fail_next(1, status=502)
    result = run_sync(make_superwall(), context(NOW), RecordingSink())
    assert result.outcome is SyncOutcome.SUCCEEDED
    assert sleep.delays == [0.5]


def test_persistent_5xx_propagates_as_transient(
    org: FakeSuperwall, make_superwall: MakeSuperwall, context: Callable[..., SyncContext]
) -> None:
    org.fail_next(3, status=503)
    with pytest.raises(TransientError, match="GET /v2/projects: 503"):
        run_sync(make_superwall(), context(NOW), RecordingSink())


@pytest.mark.parametrize(
    ("script", "error"),
    [
        ("malformed", "GET /v2/projects: response body is not valid JSON"),
        ("no data", "GET /v2/projects: missing key 'data'"),
    ],
)
def test_an_unexpected_answer_fails_naming_the_endpoint(
    org: FakeSuperwall,
    make_superwall: MakeSuperwall,
    context: Callable[..., SyncContext],
    script: str,
    error: str,
) -> None:
    if script == "malformed":
        org.malformed_next(1)
    else:
        org.route("GET", "/v2/projects", lambda _: org.error_response(200, "maintenance"))
    result = run_sync(make_superwall(), context(NOW), RecordingSink())
    assert (result.outcome, result.error) == (SyncOutcome.FAILED, error)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "superwall credentials: api_key is required"),
        ({"api_key": "  "}, "superwall credentials: api_key is required"),
        ({"api_key": "pk_8f7e6d5c4b3a"}, "api_key is a public SDK key"),
        ({"api_key": KEY, "secret": "hunter2secret"}, "unexpected field 'secret'"),
    ],
)
def test_validate_credentials_names_the_field_never_the_value(
    raw: dict[str, object], message: str, make_superwall: MakeSuperwall
) -> None:
    with pytest.raises(InvalidCredentials, match=message) as raised:
        make_superwall().validate_credentials(raw)
    for value in raw.values():
        if isinstance(value, str) and value.strip():
            assert value not in str(raised.value)


def test_the_key_never_reaches_a_message_or_a_log(
    org: FakeSuperwall,
    make_superwall: MakeSuperwall,
    context: Callable[..., SyncContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector, ctx = make_superwall(), context(None)
    with capture_logs() as logs:
        org.fail_next(3, status=500)
        with pytest.raises(TransientError) as transient:
            run_sync(connector, ctx, RecordingSink())
        stale = run_sync(connector, ctx, RecordingSink())
        org.revoke(KEY)
        revoked = run_sync(connector, ctx, RecordingSink())
    texts = [str(transient.value), repr(stale), repr(revoked), repr(logs), caplog.text]
    texts += [repr(ctx), repr(connector.client.__dict__)]
    assert revoked.outcome is SyncOutcome.AUTH_FAILED
    assert not [text for text in texts if KEY in text or KEY[-8:] in text]


def test_the_registry_builds_the_superwall_connector(fake_superwall: FakeSuperwall) -> None:
    connector = connector_for(Provider.SUPERWALL, base_url=fake_superwall.url)
    connector.close()
    assert isinstance(connector, SuperwallConnector)
