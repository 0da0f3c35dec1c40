"""End to end, known fake credentials never surface: not in logs, events, webhooks or CLI.

One integration is created through the CLI with a recognisable secret, synced for real
against the local fake Stripe (once fine, then with the key revoked so the errors flow
through every layer), its status events are delivered to the log and to a signed
webhook receiver, and every operator view is printed. The secret must appear nowhere.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from fakes.stripe import FakeStripe
from fakes.webhooks import FakeReceiver
from models.db import make_sessionmaker
from models.schema import OutboxEvent, SyncRun
from tests.worker.cli.conftest import SECRET_KEY, SECRETS, Invoke, create_stripe
from worker.events import deliver_due
from worker.logs import configure_logging
from worker.webhooks import WebhookSink

WEBHOOK_SECRET = "whsec_e2e_not_a_credential"


def test_credentials_appear_in_no_log_event_webhook_or_cli_output(
    invoke: Invoke,
    credentials_file: Path,
    fake_stripe: FakeStripe,
    engine: Engine,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given an integration created through the CLI with a known secret, synced once
    integration_id = create_stripe(
        invoke, credentials_file, "--filters", '{"objects": ["customers"]}'
    )
    assert invoke("integrations", "sync", integration_id, "--inline").exit_code == 0

    # when the key is revoked and the next sync fails on it
    fake_stripe.revoke(SECRET_KEY)
    failed = invoke("integrations", "sync", integration_id, "--inline", "--json")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["outcome"] == "auth_failed"

    # and every status event goes to the log and to a signed webhook
    configure_logging("json", "INFO")
    sessions = make_sessionmaker(engine)
    with FakeReceiver(WEBHOOK_SECRET) as receiver, httpx.Client() as client:
        sink = WebhookSink(receiver.hook_url, secret=WEBHOOK_SECRET, client=client)
        report = deliver_due(sessions, [sink], now=lambda: datetime.now(UTC))
        bodies = [delivery.body.decode() for delivery in receiver.deliveries]

    # and an operator looks at everything
    views = [
        invoke("integrations", "show", integration_id, "--json"),
        invoke("integrations", "show", integration_id),
        invoke("integrations", "list", "--json"),
        invoke("status", "--json"),
    ]

    # then the events went out, and the secret is nowhere
    assert report.delivered >= 2 and len(bodies) == report.delivered
    assert any('"auth_failing"' in body for body in bodies)
    with sessions() as session:
        stored = [json.dumps(e.payload) for e in session.scalars(select(OutboxEvent))]
        runs = [f"{r.error} {r.warnings}" for r in session.scalars(select(SyncRun))]
    logs = capsys.readouterr()
    everything = [logs.out, logs.err, *bodies, *stored, *runs]
    everything += [v.stdout + v.stderr for v in (*views, failed)]
    for text in everything:
        for secret in SECRETS:
            assert secret not in text
    assert "401" in " ".join(runs)  # the failure itself is on record, just not the key
