"""The webhook receiver: signed deliveries stored once and answered 2xx after the commit;
anything else refused with 4xx and nothing stored; bodies bounded, streamed."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Final

import pytest
from sqlalchemy import Engine

from api.serving import BackgroundServer
from fakes.superwall import WEBHOOK_SECRET, event, webhook
from models.credentials import Keyring
from tests.api.conftest import OTHER_WORKSPACE, AddIntegration, Api
from worker.settings import Settings

RC_AUTH: Final = "Bearer rc-hook-5d1c0e77a2"
CAP: Final = 4096
SUPERWALL: Final = {"api_key": "sk_superwall_org_1", "webhook_secret": WEBHOOK_SECRET}
REVENUECAT: Final = {"secret_key": "sk_rc_1", "project_id": "proj1", "webhook_secret": RC_AUTH}


@pytest.fixture
def api_settings(engine: Engine, tmp_path: Path) -> Settings:
    """The API's settings with a small webhook body cap."""
    return Settings.from_env(
        {
            "SYNCWORKER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "SYNCWORKER_DATA_DIR": str(tmp_path),
            "SYNCWORKER_CREDENTIAL_KEYS": f"t:{Keyring.generate_key()}",
            "SYNCWORKER_API_WEBHOOK_MAX_BYTES": str(CAP),
        }
    )


def superwall(add_integration: AddIntegration, **fields: Any) -> str:
    spec = {"provider": "superwall", "credentials": SUPERWALL, "filters": {"objects": ["events"]}}
    return add_integration(**(spec | fields))


def events(api: Api, integration_id: str) -> list[str]:
    page = api.client.get(
        f"/v1/integrations/{integration_id}/records/events", headers=api.headers("operator")
    )
    return [item["externalId"] for item in page.json()["items"]]


def deliver(api: Api, integration_id: str, body: bytes, headers: dict[str, str]) -> Any:
    return api.client.post(
        f"/v1/webhooks/superwall/{integration_id}", content=body, headers=headers
    )


def test_a_signed_superwall_delivery_is_stored_once_and_answered_after_the_commit(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = superwall(add_integration)
    body = event("evt-1:renewal")

    first = deliver(api, integration_id, body, webhook(body, sent_at=api.runtime.clock.now()))
    retried = deliver(
        api, integration_id, body, webhook(body, sent_at=api.runtime.clock.now(), message_id="m2")
    )

    assert first.status_code == 200
    assert first.json() == {"ok": True, "message": "1 event(s) stored"}
    assert retried.status_code == 200
    assert events(api, integration_id) == ["evt-1:renewal"]
    view = api.client.get(f"/v1/integrations/{integration_id}", headers=api.headers("operator"))
    assert view.json()["dataLastReceivedAt"] == api.runtime.clock.now().isoformat()


def test_a_revenuecat_delivery_needs_its_authorization_header(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration(provider="revenuecat", credentials=REVENUECAT, filters=None)
    body = json.dumps({"api_version": "1.0", "event": {"id": "rc-1", "type": "RENEWAL"}})
    path = f"/v1/webhooks/revenuecat/{integration_id}"

    wrong = api.client.post(path, content=body, headers={"Authorization": "Bearer guess"})
    right = api.client.post(path, content=body, headers={"Authorization": RC_AUTH})

    assert wrong.status_code == 400
    assert wrong.json() == {
        "ok": False,
        "message": "revenuecat webhooks: authorization header does not match",
    }
    assert right.status_code == 200
    assert events(api, integration_id) == ["rc-1"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ("signature", "superwall webhooks: signature does not match"),
        ("replay", "superwall webhooks: timestamp is more than 5 minutes off (a replay?)"),
        ("unsigned", "superwall webhooks: svix-id, svix-timestamp and svix-signature are required"),
        ("not json", "superwall webhooks: body is not valid JSON"),
        (
            "api key only",
            "superwall webhooks: svix-id, svix-timestamp and svix-signature are required",
        ),
    ],
)
def test_a_delivery_that_does_not_verify_is_400_and_stores_nothing(
    api: Api, add_integration: AddIntegration, tamper: str, message: str
) -> None:
    integration_id = superwall(add_integration)
    body = event("evt-1:renewal")
    now = api.runtime.clock.now()
    headers = webhook(body, sent_at=now)
    if tamper == "signature":
        body = body.replace(b"9.99", b"0.01")
    elif tamper == "replay":
        headers = webhook(body, sent_at=now.replace(hour=now.hour - 1))
    elif tamper == "unsigned":
        headers = {}
    elif tamper == "not json":
        body = b"{not json"
        headers = webhook(body, sent_at=now)
    else:
        headers = api.headers("operator")

    response = deliver(api, integration_id, body, headers)

    assert response.status_code == 400
    assert response.json() == {"ok": False, "message": message}
    assert events(api, integration_id) == []


def test_an_integration_without_a_webhook_secret_refuses_deliveries(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = superwall(add_integration, credentials={"api_key": "sk_superwall_org_1"})
    body = event("evt-1:renewal")

    response = deliver(api, integration_id, body, webhook(body, sent_at=api.runtime.clock.now()))

    assert response.status_code == 400
    assert response.json()["message"] == (
        f"superwall webhooks: integration {integration_id} has no webhook_secret among its "
        "credentials"
    )
    assert events(api, integration_id) == []


def test_a_webhook_secret_is_checked_when_it_is_set(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = superwall(add_integration)

    response = api.client.put(
        f"/v1/integrations/{integration_id}/credentials",
        json={"credentials": {"api_key": "sk_superwall_org_1", "webhook_secret": "whsec_%%%"}},
        headers=api.headers("operator"),
    )

    assert response.status_code == 422
    assert response.json()["message"] == (
        "superwall credentials: webhook_secret is not whsec_<base64>"
    )


def test_unknown_deleted_or_mismatched_targets_are_404(
    api: Api, add_integration: AddIntegration
) -> None:
    mine = superwall(add_integration)
    stripe = add_integration()
    deleted = superwall(add_integration, workspace=OTHER_WORKSPACE)
    api.operator.delete(deleted, actor="test")
    body = event("evt-1:renewal")
    headers = webhook(body, sent_at=api.runtime.clock.now())

    answers = {
        "stripe receiver": api.client.post(f"/v1/webhooks/stripe/{stripe}", content=body),
        "other provider's": deliver(api, stripe, body, headers),
        "deleted": deliver(api, deleted, body, headers),
        "no such id": deliver(api, "5f0c1f9e-0000-4000-8000-000000000000", body, headers),
        "not an id": deliver(api, "nope", body, headers),
    }

    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 404)
    assert answers["stripe receiver"].json()["message"] == (
        "no webhook receiver for stripe; there is one for revenuecat, superwall"
    )
    assert events(api, mine) == []


def test_a_body_past_the_cap_is_413_and_stores_nothing(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = superwall(add_integration)
    body = event("evt-1:renewal")[:-1] + b', "pad": "' + b"x" * CAP + b'"}'

    response = deliver(api, integration_id, body, webhook(body, sent_at=api.runtime.clock.now()))

    assert response.status_code == 413
    assert response.json() == {
        "ok": False,
        "message": f"the webhook body is larger than {CAP} bytes",
    }
    assert events(api, integration_id) == []


def test_a_streamed_body_is_refused_at_the_cap_before_the_rest_is_sent(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = superwall(add_integration)
    with BackgroundServer(api.client.app) as server:  # type: ignore[arg-type]
        host, port = server.url.removeprefix("http://").split(":")
        # given a chunked upload far longer than the cap, sent in part only
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                f"POST /v1/webhooks/superwall/{integration_id} HTTP/1.1\r\nHost: x\r\n"
                "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n".encode()
            )
            chunk = b"x" * 1024
            for _ in range(CAP // 1024 + 2):
                conn.sendall(b"400\r\n" + chunk + b"\r\n")
            # when the client waits with the rest (and the final chunk) unsent
            answer = conn.recv(4096)
        # then the server has already answered 413
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        # and a declared length past the cap is refused with no body read at all
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                f"POST /v1/webhooks/superwall/{integration_id} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {100 * CAP}\r\n\r\n".encode()
            )
            assert conn.recv(4096).startswith(b"HTTP/1.1 413")
