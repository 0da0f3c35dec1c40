"""Webhook ingestion: signed deliveries stored once, everything else refused and not stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fakes.superwall import WEBHOOK_SECRET, event, webhook
from models.clock import ManualClock
from models.errors import IntegrationNotFound
from models.schema import Integration, SyncedRecord
from models.status import Provider
from tests.conftest import IntegrationFactory
from worker.connectors.errors import ConfigurationError, WebhookRejected
from worker.connectors.webhooks import accept_webhook, ingest_webhook

RC_AUTH = "Bearer rc-webhook-7f1d2c9e4b"


def stored(sessions: sessionmaker[Session], integration_id: uuid.UUID) -> dict[str, Any]:
    with sessions() as session:
        rows = session.scalars(
            select(SyncedRecord).where(SyncedRecord.integration_id == integration_id)
        ).all()
        return {f"{row.kind}/{row.external_id}": row.data for row in rows}


def last_received(sessions: sessionmaker[Session], integration_id: uuid.UUID) -> object:
    with sessions() as session:
        return session.get_one(Integration, integration_id).data_last_received_at


def revenuecat_event(event_id: str) -> bytes:
    body = {"api_version": "1.0", "event": {"id": event_id, "type": "RENEWAL", "app_user_id": "u1"}}
    return json.dumps(body).encode()


def test_a_signed_superwall_delivery_is_parsed_into_its_event(clock: ManualClock) -> None:
    now = clock.now()
    body = event("42fc6339:renewal")
    records = accept_webhook(
        Provider.SUPERWALL, webhook(body, sent_at=now), body, secret=WEBHOOK_SECRET, now=now
    )
    assert [(key, data["type"]) for key, data in records] == [("42fc6339:renewal", "renewal")]


def test_a_valid_delivery_is_stored_and_marks_data_received(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(provider="superwall")
    body = event("evt-1:initial_purchase", "initial_purchase")
    headers = webhook(body, sent_at=clock.now() - timedelta(seconds=30))
    count = ingest_webhook(
        sessions,
        integration.id,
        Provider.SUPERWALL,
        headers,
        body,
        secret=WEBHOOK_SECRET,
        now=clock.now(),
    )
    assert count == 1
    assert stored(sessions, integration.id)["events/evt-1:initial_purchase"]["projectId"] == 3827
    assert last_received(sessions, integration.id) == clock.now()


def test_a_redelivered_event_is_stored_once(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(provider="superwall")
    body = event("evt-dup:renewal")
    for attempt in range(2):  # Svix retries with a new timestamp, same event
        clock.advance(timedelta(minutes=1))
        headers = webhook(body, sent_at=clock.now(), message_id=f"msg_{attempt}")
        ingest_webhook(
            sessions,
            integration.id,
            Provider.SUPERWALL,
            headers,
            body,
            secret=WEBHOOK_SECRET,
            now=clock.now(),
        )
    assert list(stored(sessions, integration.id)) == ["events/evt-dup:renewal"]
    assert last_received(sessions, integration.id) == clock.now()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("signature", "signature does not match"),
        ("body", "signature does not match"),
        ("secret", "signature does not match"),
        ("old", "timestamp is more than 5 minutes off (a replay?)"),
        ("future", "timestamp is more than 5 minutes off (a replay?)"),
        ("headers", "svix-id, svix-timestamp and svix-signature are required"),
        ("not json", "body is not valid JSON"),
        ("no id", "event has no id (data.id)"),
        ("not an event", "body is not an event"),
    ],
)
def test_a_bad_delivery_is_rejected_and_nothing_is_stored(
    sessions: sessionmaker[Session],
    make_integration: IntegrationFactory,
    clock: ManualClock,
    tamper: str,
    message: str,
) -> None:
    integration = make_integration(provider="superwall")
    body, sent_at, secret = event("evt-x:renewal"), clock.now(), WEBHOOK_SECRET
    if tamper == "not json":
        body = b"{'type': renewal"
    elif tamper == "no id":
        body = json.dumps({"object": "event", "type": "renewal", "data": {}}).encode()
    elif tamper == "not an event":
        body = b"[1, 2, 3]"
    elif tamper in ("old", "future"):
        sent_at += timedelta(minutes=-10 if tamper == "old" else 10)
    elif tamper == "secret":
        secret = "whsec_" + "QUJD" * 8
    headers = webhook(body, sent_at=sent_at)
    if tamper == "signature":
        headers["svix-signature"] = "v1," + "A" * 44
    elif tamper == "body":
        body = body.replace(b"9.99", b"0.01")
    elif tamper == "headers":
        del headers["svix-id"]
    with pytest.raises(WebhookRejected, match=re.escape(message)):
        ingest_webhook(
            sessions,
            integration.id,
            Provider.SUPERWALL,
            headers,
            body,
            secret=secret,
            now=clock.now(),
        )
    assert stored(sessions, integration.id) == {}
    assert last_received(sessions, integration.id) is None


def test_a_rotated_secret_accepts_any_matching_v1_signature(clock: ManualClock) -> None:
    body = event("evt-rot:renewal")
    headers = webhook(body, sent_at=clock.now())
    headers["svix-signature"] = "v1,bm90IGl0 v2,ignored " + headers["svix-signature"]
    records = accept_webhook(
        Provider.SUPERWALL, headers, body, secret=WEBHOOK_SECRET, now=clock.now()
    )
    assert records[0][0] == "evt-rot:renewal"


def test_unbranded_standard_webhook_headers_are_accepted(clock: ManualClock) -> None:
    body = event("evt-std:renewal")
    headers = {
        k.replace("svix-", "webhook-"): v for k, v in webhook(body, sent_at=clock.now()).items()
    }
    records = accept_webhook(
        Provider.SUPERWALL, headers, body, secret=WEBHOOK_SECRET, now=clock.now()
    )
    assert records[0][0] == "evt-std:renewal"


def test_a_revenuecat_delivery_with_the_configured_authorization_is_stored(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(provider="revenuecat")
    body = revenuecat_event("12345678-1234-1234-1234-123456789012")
    for _ in range(2):
        ingest_webhook(
            sessions,
            integration.id,
            Provider.REVENUECAT,
            {"Authorization": RC_AUTH},
            body,
            secret=RC_AUTH,
            now=clock.now(),
        )
    records = stored(sessions, integration.id)
    assert list(records) == ["events/12345678-1234-1234-1234-123456789012"]
    assert records["events/12345678-1234-1234-1234-123456789012"]["api_version"] == "1.0"
    assert last_received(sessions, integration.id) == clock.now()


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({"Authorization": "Bearer guess"}, revenuecat_event("e1"), "authorization header"),
        ({}, revenuecat_event("e1"), "authorization header does not match"),
        ({"Authorization": RC_AUTH}, b'{"event": {"type": "TEST"}}', r"no id \(event.id\)"),
        ({"Authorization": RC_AUTH}, b'{"api_version": "1.0"}', "not an event"),
    ],
)
def test_a_bad_revenuecat_delivery_is_rejected_and_nothing_is_stored(
    sessions: sessionmaker[Session],
    make_integration: IntegrationFactory,
    clock: ManualClock,
    *,
    headers: dict[str, str],
    body: bytes,
    message: str,
) -> None:
    integration = make_integration(provider="revenuecat")
    with pytest.raises(WebhookRejected, match=message):
        ingest_webhook(
            sessions,
            integration.id,
            Provider.REVENUECAT,
            headers,
            body,
            secret=RC_AUTH,
            now=clock.now(),
        )
    assert stored(sessions, integration.id) == {}


def test_a_delivery_for_another_providers_integration_is_rejected(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(provider="stripe")
    body = event("evt-y:renewal")
    with pytest.raises(WebhookRejected, match="is a stripe one"):
        ingest_webhook(
            sessions,
            integration.id,
            Provider.SUPERWALL,
            webhook(body, sent_at=clock.now()),
            body,
            secret=WEBHOOK_SECRET,
            now=clock.now(),
        )
    assert stored(sessions, integration.id) == {}


def test_a_delivery_for_a_missing_integration_is_not_found(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    body = event("evt-z:renewal")
    with pytest.raises(IntegrationNotFound):
        ingest_webhook(
            sessions,
            uuid.uuid4(),
            Provider.SUPERWALL,
            webhook(body, sent_at=clock.now()),
            body,
            secret=WEBHOOK_SECRET,
            now=clock.now(),
        )


def test_providers_without_webhook_support_are_rejected(clock: ManualClock) -> None:
    with pytest.raises(WebhookRejected, match="stripe webhooks: not supported"):
        accept_webhook(Provider.STRIPE, {}, b"{}", secret="x", now=clock.now())


def test_secrets_never_reach_a_message_or_a_log(
    sessions: sessionmaker[Session],
    make_integration: IntegrationFactory,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    integration = make_integration(provider="revenuecat")
    messages = []
    for sent in ("Bearer guess", RC_AUTH):
        try:
            ingest_webhook(
                sessions,
                integration.id,
                Provider.REVENUECAT,
                {"Authorization": sent},
                revenuecat_event("e2"),
                secret=RC_AUTH,
                now=clock.now(),
            )
        except WebhookRejected as exc:
            messages.append(str(exc))
    assert messages and not [m for m in [*messages, caplog.text] if "rc-webhook" in m]


# -- hostile headers and empty secrets --------------------------------------------------------


def empty_key_headers(body: bytes, stamp: str, message_id: str = "msg_1") -> dict[str, str]:
    """Svix headers signed with an empty key: a signature anyone can make."""
    digest = hmac.new(b"", f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "svix-id": message_id,
        "svix-timestamp": stamp,
        "svix-signature": "v1," + base64.b64encode(digest).decode(),
    }


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_===="])
def test_a_superwall_signature_made_with_an_empty_secret_is_a_configuration_error(
    clock: ManualClock, secret: str
) -> None:
    body = event("evt-forged:renewal")
    headers = empty_key_headers(body, str(int(clock.now().timestamp())))

    with pytest.raises(ConfigurationError, match="signing secret"):
        accept_webhook(Provider.SUPERWALL, headers, body, secret=secret, now=clock.now())


def test_revenuecat_with_an_empty_secret_is_a_configuration_error(clock: ManualClock) -> None:
    body = revenuecat_event("e1")

    with pytest.raises(ConfigurationError, match="signing secret is empty"):
        accept_webhook(Provider.REVENUECAT, {"Authorization": ""}, body, secret="", now=clock.now())


@pytest.mark.parametrize(
    "change",
    [
        {"svix-timestamp": "9" * 400},
        {"svix-timestamp": "9" * 5000},
        {"svix-timestamp": "\u0661\u0667\u0665\u0664"},
        {"svix-timestamp": "-1"},
        {"svix-timestamp": "1_754_067_715"},
        {"svix-signature": "v1,\u00e9\u00e9\u00e9"},
        {"svix-signature": "v1," + "A" * 5000},
        {"svix-id": "m" * 10_000},
        {"svix-id": ["msg_1"]},
        {"svix-signature": b"v1,abc"},
    ],
)
def test_any_hostile_svix_header_is_a_rejection(clock: ManualClock, change: dict[str, Any]) -> None:
    body = event("evt-hostile:renewal")
    headers: dict[str, Any] = {**webhook(body, sent_at=clock.now()), **change}

    with pytest.raises(WebhookRejected):
        accept_webhook(Provider.SUPERWALL, headers, body, secret=WEBHOOK_SECRET, now=clock.now())


@pytest.mark.parametrize("value", ["Bearer \u00e9\u00e9", b"Bearer x", ["Bearer x"], None])
def test_any_hostile_revenuecat_header_is_a_rejection(clock: ManualClock, value: Any) -> None:
    with pytest.raises(WebhookRejected):
        accept_webhook(
            Provider.REVENUECAT,
            {"Authorization": value},
            revenuecat_event("e1"),
            secret=RC_AUTH,
            now=clock.now(),
        )
