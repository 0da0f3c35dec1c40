"""Delivering the outbox (SPEC §8): a log line and a signed webhook per status change.

Receivers are real HTTP servers on loopback; time moves on a ManualClock, so retries
and backoffs are driven without sleeping. Every database test runs on SQLite and,
when TEST_DATABASE_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from fakes.webhooks import HOOK_PATH, FakeReceiver
from models.changes import Change, record_change
from models.clock import ManualClock
from models.db import lock_integration, make_sessionmaker
from models.errors import InvalidValue
from models.schema import Integration, OutboxEvent
from models.status import Status, Trigger
from scheduler.beat import DELIVER_EVENTS_TASK
from tests.conftest import IntegrationFactory, integration_factory
from tests.worker.conftest import LogLines
from worker.app import create_app
from worker.errors import SignatureError
from worker.events import (
    BACKOFF_BASE,
    BACKOFF_CAP,
    CLAIM_LEASE,
    LOG_SINK_NAME,
    Sink,
    backoff,
    claim_due,
    deliver_due,
    deliver_pending,
)
from worker.runtime import Runtime
from worker.settings import Settings
from worker.webhooks import (
    ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSink,
    fingerprint,
    make_client,
    verify_signature,
)

SECRET = "whsec_test_0123456789"
LEAKED_KEY = "sk_live_abcdef123456"
Sessions = sessionmaker[Session]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_client(2) as made:
        yield made


@pytest.fixture
def receiver() -> Iterator[FakeReceiver]:
    with FakeReceiver(SECRET) as fake:
        yield fake


@pytest.fixture
def sink_to(client: httpx.Client) -> Callable[[str], WebhookSink]:
    def create(url: str) -> WebhookSink:
        return WebhookSink(url, secret=SECRET, client=client)

    return create


def change_status(
    sessions: Sessions,
    integration: Integration,
    to_status: Status,
    *,
    now: datetime,
    reason: str | None = None,
) -> uuid.UUID:
    """Record a status change the way the lifecycle does; the id of its outbox event."""
    with sessions() as session, session.begin():
        locked = lock_integration(session, integration.id)
        change = Change(locked.id, Trigger.SYNC_FAILED, locked.status_enum, to_status)
        locked.status = to_status.value
        record_change(session, locked, change, now=now, actor="system", reason=reason)
        [event] = [added for added in session.new if isinstance(added, OutboxEvent)]
        session.flush()
        return event.id


def outbox(sessions: Sessions, event_id: uuid.UUID) -> OutboxEvent:
    with sessions() as session:
        return session.get_one(OutboxEvent, event_id)


def status_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["event"] == "integration.status_changed"]


# -- signing ----------------------------------------------------------------------------------


def test_signed_delivery_verifies_and_a_tampered_or_stale_one_does_not(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    receiver: FakeReceiver,
    sink_to: Callable[[str], WebhookSink],
) -> None:
    # given an event, delivered to a receiver that checks signatures on its own wall clock
    integration = make_integration()
    deliver_pending(sessions, [sink_to(receiver.hook_url)], now=clock.now())

    # then it arrived signed, with the event id as Webhook-Id, and the receiver verified it
    [delivery] = receiver.deliveries
    assert delivery.verified
    body = delivery.json()
    assert delivery.headers[ID_HEADER.lower()] == body["id"]
    assert body["type"] == "integration.status_changed"
    assert body["data"]["integrationId"] == str(integration.id)
    assert datetime.fromisoformat(body["createdAt"]) == clock.now()

    # and the same header fails for a tampered body, a stale timestamp or another secret
    header, raw = delivery.headers[SIGNATURE_HEADER.lower()], delivery.body
    sent_at = datetime.fromtimestamp(int(header.split(",")[0].removeprefix("t=")), UTC)
    verify_signature(SECRET, header, raw, now=sent_at + timedelta(seconds=299))
    tampered = raw.replace(b'"toStatus":"active"', b'"toStatus":"inactive"')
    assert tampered != raw
    with pytest.raises(SignatureError, match="no signature matches"):
        verify_signature(SECRET, header, tampered, now=sent_at)
    with pytest.raises(SignatureError, match="outside the tolerance"):
        verify_signature(SECRET, header, raw, now=sent_at + timedelta(seconds=301))
    with pytest.raises(SignatureError, match="no signature matches"):
        verify_signature("whsec_other", header, raw, now=sent_at)
    for broken in (None, "", "v1=abc", f"t={int(sent_at.timestamp())}", "t=soon,v1=abc"):
        with pytest.raises(SignatureError):
            verify_signature(SECRET, broken, raw, now=sent_at)


def test_a_receiver_with_another_secret_refuses_and_the_event_stays_pending(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    receiver: FakeReceiver,
    client: httpx.Client,
) -> None:
    make_integration()
    forger = WebhookSink(receiver.hook_url, secret="whsec_wrong", client=client)

    report = deliver_pending(sessions, [forger], now=clock.now())

    assert (report.claimed, report.delivered, report.retrying) == (1, 0, 1)
    assert [d.verified for d in receiver.deliveries] == [False]


# -- retries ----------------------------------------------------------------------------------


def test_receiver_failing_three_times_gets_the_event_exactly_once(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    receiver: FakeReceiver,
    sink_to: Callable[[str], WebhookSink],
) -> None:
    # given a receiver that answers 500 three times, then 200
    make_integration()
    receiver.fail_next(3, status=500, path=HOOK_PATH)
    sinks: list[Sink] = [sink_to(receiver.hook_url)]
    with sessions() as session:
        event_id = session.scalars(select(OutboxEvent.id)).one()

    # when the deliverer runs at each retry time, and once just before it
    delays = []
    for attempt in range(1, 4):
        failed_at = clock.now()
        assert deliver_pending(sessions, sinks, now=failed_at).retrying == 1
        row = outbox(sessions, event_id)
        assert (row.attempts, row.delivered_at) == (attempt, None)
        assert row.last_error is not None and "HTTP 500" in row.last_error
        delays.append(row.next_attempt_at - failed_at)
        clock.set(row.next_attempt_at - timedelta(seconds=1))
        assert deliver_pending(sessions, sinks, now=clock.now()).claimed == 0  # not due yet
        clock.set(row.next_attempt_at)
    assert deliver_pending(sessions, sinks, now=clock.now()).delivered == 1

    # then the backoff doubled with jitter, and the receiver has the event once
    for attempt, delay in enumerate(delays, start=1):
        ceiling = BACKOFF_BASE * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling
    clock.advance(timedelta(days=2))
    assert deliver_pending(sessions, sinks, now=clock.now()).claimed == 0
    assert receiver.event_ids() == [str(event_id)]
    assert len(receiver.requests_to(HOOK_PATH)) == 4
    row = outbox(sessions, event_id)
    assert (row.attempts, row.last_error) == (4, None)
    assert row.delivered_at is not None


def test_receiver_that_answered_2xx_never_gets_a_duplicate_while_another_fails(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    sink_to: Callable[[str], WebhookSink],
    json_logs: LogLines,
) -> None:
    with FakeReceiver(SECRET) as healthy, FakeReceiver(SECRET) as flaky:
        # given two receivers, one failing twice
        make_integration()
        flaky.fail_next(2, status=503, path=HOOK_PATH)
        sinks: list[Sink] = [sink_to(healthy.hook_url), sink_to(flaky.hook_url)]

        # when delivery is retried until the flaky one accepts
        for _ in range(3):
            deliver_pending(sessions, sinks, now=clock.now())
            clock.advance(BACKOFF_CAP)

        # then each receiver has the event exactly once, and it was logged once
        [event_id] = healthy.event_ids()
        assert flaky.event_ids() == [event_id]
        assert len(healthy.requests_to(HOOK_PATH)) == 1
        assert len(flaky.requests_to(HOOK_PATH)) == 3
        sink_names = [LOG_SINK_NAME, fingerprint(healthy.hook_url), fingerprint(flaky.hook_url)]
    row = outbox(sessions, uuid.UUID(event_id))
    assert row.delivered_at is not None
    assert sorted(row.delivered_to) == sorted(sink_names)
    assert [line["event_id"] for line in status_lines(json_logs())] == [event_id]


def test_an_event_claimed_by_a_deliverer_that_died_is_delivered_after_the_lease(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    receiver: FakeReceiver,
    sink_to: Callable[[str], WebhookSink],
) -> None:
    # given a deliverer that claimed the event and died before sending it
    make_integration()
    with sessions() as session, session.begin():
        [claimed] = claim_due(session, now=clock.now())
    sinks: list[Sink] = [sink_to(receiver.hook_url)]

    # then no one else takes it while the lease runs, and someone does once it ran out
    clock.advance(CLAIM_LEASE - timedelta(seconds=1))
    assert deliver_pending(sessions, sinks, now=clock.now()).claimed == 0
    clock.advance(timedelta(seconds=1))
    assert deliver_pending(sessions, sinks, now=clock.now()).delivered == 1
    assert receiver.event_ids() == [str(claimed.event.id)]


def test_an_unreachable_receiver_is_retried_and_its_url_stays_out_of_the_error(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    sink_to: Callable[[str], WebhookSink],
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_integration()
    url = f"http://127.0.0.1:{port}/services/T0001/B0001/tokenXYZ"

    report = deliver_pending(sessions, [sink_to(url)], now=clock.now())

    assert report.retrying == 1
    with sessions() as session:
        row = session.scalars(select(OutboxEvent)).one()
    assert row.last_error is not None
    assert f"http://127.0.0.1:{port}" in row.last_error
    assert "tokenXYZ" not in row.last_error
    assert row.delivered_to == [LOG_SINK_NAME]


def test_backoff_doubles_from_the_base_with_jitter_up_to_the_cap() -> None:
    assert backoff(1, rand=lambda: 0.0) == BACKOFF_BASE / 2
    assert backoff(1, rand=lambda: 1.0) == BACKOFF_BASE
    assert backoff(3, rand=lambda: 1.0) == BACKOFF_BASE * 4
    assert backoff(10_000, rand=lambda: 1.0) == BACKOFF_CAP  # no overflow for old events


# -- content ----------------------------------------------------------------------------------


def test_a_secret_in_the_reason_is_redacted_in_the_webhook_and_the_log(
    *,
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    receiver: FakeReceiver,
    sink_to: Callable[[str], WebhookSink],
    json_logs: LogLines,
) -> None:
    integration = make_integration(status=Status.ACTIVE.value)
    reason = f"401 from Stripe: Invalid API Key provided: {LEAKED_KEY}"
    event_id = change_status(
        sessions, integration, Status.AUTH_FAILING, now=clock.now(), reason=reason
    )

    deliver_due(sessions, [sink_to(receiver.hook_url)], now=clock.now)

    [delivered] = [d for d in receiver.deliveries if d.event_id == str(event_id)]
    assert LEAKED_KEY.encode() not in delivered.body
    assert delivered.json()["data"]["reason"] == "401 from Stripe: Invalid API Key provided: ***"
    [logged] = [line for line in status_lines(json_logs()) if line["event_id"] == str(event_id)]
    assert logged["reason"] == "401 from Stripe: Invalid API Key provided: ***"


def test_qa_and_invalid_credentials_are_logged_as_warnings_other_changes_as_info(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    json_logs: LogLines,
) -> None:
    # given an integration created (active), then moved to QA, then to invalid credentials
    integration = make_integration()
    for status in (Status.QUALITY_ASSURANCE, Status.CREDENTIALS_INVALID):
        clock.advance(timedelta(minutes=1))
        change_status(sessions, integration, status, now=clock.now())

    # when the outbox is delivered with no webhook configured
    deliver_due(sessions, [], now=clock.now)

    # then each change is one log line, the two that need someone at WARNING
    levels = {line["to_status"]: line["level"] for line in status_lines(json_logs())}
    assert levels == {
        "active": "info",
        "quality_assurance": "warning",
        "credentials_invalid": "warning",
    }
    with sessions() as session:
        assert session.scalars(select(OutboxEvent.delivered_at)).all() == [clock.now()] * 3


def test_the_status_change_log_line_has_snake_case_keys_and_the_webhook_keeps_camel_case(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    *,
    receiver: FakeReceiver,
    sink_to: Callable[[str], WebhookSink],
    json_logs: LogLines,
) -> None:
    integration = make_integration()

    deliver_due(sessions, [sink_to(receiver.hook_url)], now=clock.now)

    [line] = status_lines(json_logs())
    assert [key for key in line if key != key.lower()] == []
    assert (line["integration_id"], line["to_status"]) == (str(integration.id), "active")
    assert line["from_status"] is None and line["environment_id"] == integration.environment_id
    [delivery] = receiver.deliveries
    assert delivery.json()["data"]["integrationId"] == str(integration.id)
    assert delivery.json()["data"]["toStatus"] == "active"


# -- concurrency and wiring -------------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_deliverers_never_deliver_one_event_twice(
    pg_engine: Engine, clock: ManualClock, receiver: FakeReceiver, client: httpx.Client
) -> None:
    # given many pending events and a receiver slow enough for deliverers to overlap
    sessions = make_sessionmaker(pg_engine)
    create = integration_factory(sessions, clock)
    for _ in range(40):
        create()
    receiver.latency(0.005)
    sinks: list[Sink] = [WebhookSink(receiver.hook_url, secret=SECRET, client=client)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def deliverer() -> None:
        try:
            start.wait()
            deliver_due(sessions, sinks, now=clock.now, limit=3)
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is asserted below
            errors.append(exc)

    # when four deliverers work through the outbox at once
    threads = [threading.Thread(target=deliverer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then every event reached the receiver exactly once
    assert errors == []
    received = receiver.event_ids()
    assert len(received) == 40
    assert len(set(received)) == 40
    with sessions() as session:
        pending = session.scalars(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None)))
        assert pending.all() == []


def test_the_delivery_task_sends_with_the_configured_webhooks(
    *,
    engine: Engine,
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    receiver: FakeReceiver,
    tmp_path: Any,
) -> None:
    # given an app configured with one webhook, on this test's database and clock
    settings = Settings.from_env(
        {
            "SYNCWORKER_DATA_DIR": str(tmp_path),
            "SYNCWORKER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "SYNCWORKER_WEBHOOK_URLS": receiver.hook_url,
            "SYNCWORKER_WEBHOOK_SECRET": SECRET,
        }
    )
    runtime = Runtime(settings, clock)
    app = create_app(settings, runtime=runtime)
    make_integration()

    # when the beat's delivery task body runs
    try:
        report = app.tasks[DELIVER_EVENTS_TASK].run()
    finally:
        runtime.close()

    # then the event went out, signed
    assert report == {"claimed": 1, "delivered": 1, "retrying": 0}
    assert [d.verified for d in receiver.deliveries] == [True]


def test_webhook_urls_must_be_http() -> None:
    env = {"SYNCWORKER_WEBHOOK_URLS": "ftp://example.com/hook", "SYNCWORKER_WEBHOOK_SECRET": "s"}
    with pytest.raises(InvalidValue, match="http"):
        Settings.from_env(env)


def test_without_a_secret_nothing_is_sent_and_the_event_waits(
    sessions: Sessions,
    make_integration: IntegrationFactory,
    clock: ManualClock,
    receiver: FakeReceiver,
    client: httpx.Client,
) -> None:
    make_integration()
    unsigned = WebhookSink(receiver.hook_url, secret=None, client=client)

    report = deliver_pending(sessions, [unsigned], now=clock.now())

    assert report.retrying == 1
    assert receiver.requests == []
    with sessions() as session:
        [row] = session.scalars(select(OutboxEvent)).all()
    assert row.last_error is not None and "WEBHOOK_SECRET is not set" in row.last_error
