"""The health routes (SPEC §11): provider incidents for operator keys."""

from __future__ import annotations

import uuid
from datetime import timedelta

from models.clock import ManualClock
from models.schema import SyncRun
from tests.api.conftest import OTHER_WORKSPACE, WORKSPACE, AddIntegration, Api
from tests.conftest import incident_row


def _incident(api: Api, clock: ManualClock, *, closed: bool) -> None:
    now = clock.now()
    with api.runtime.sessions() as session, session.begin():
        session.add(
            incident_row(
                now - timedelta(hours=2),
                kind="timeout",
                closed_at=now if closed else None,
                integrations_seen=20,
                integrations_failing=15,
            )
        )


def test_an_operator_key_lists_incidents_with_their_window_and_counts(
    api: Api, clock: ManualClock
) -> None:
    _incident(api, clock, closed=True)

    response = api.client.get("/v1/incidents", headers=api.headers("operator"))

    assert response.status_code == 200
    [incident] = response.json()
    assert incident["provider"] == "stripe" and incident["open"] is False
    assert (incident["integrationsSeen"], incident["integrationsFailing"]) == (20, 15)
    assert incident["windowSeconds"] == 3600
    assert incident["closedAt"] == clock.now().isoformat()


def test_a_workspace_key_may_not_list_incidents(api: Api) -> None:
    response = api.client.get("/v1/incidents", headers=api.headers(WORKSPACE))

    assert response.status_code == 403
    assert response.json()["ok"] is False


def test_explain_is_served_to_the_integrations_workspace_and_not_to_another(
    api: Api, add_integration: AddIntegration
) -> None:
    integration = add_integration()

    own = api.client.get(f"/v1/integrations/{integration}/explain", headers=api.headers(WORKSPACE))
    other = api.client.get(
        f"/v1/integrations/{integration}/explain", headers=api.headers(OTHER_WORKSPACE)
    )

    assert own.status_code == 200
    body = own.json()
    assert body["status"] == "active" and body["setBy"]["trigger"] == "created"
    assert body["next"][0]["what"] == "next sync"
    assert other.status_code == 404 and other.json()["ok"] is False


def test_resync_restarts_every_stream_and_queues_a_sync(
    api: Api, add_integration: AddIntegration
) -> None:
    integration = add_integration()

    response = api.client.post(
        f"/v1/integrations/{integration}/resync", headers=api.headers(WORKSPACE)
    )

    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["message"].endswith("; sync queued")
    assert api.published[-1][1] == uuid.UUID(integration)


def test_resync_of_an_unknown_stream_or_a_backfill_without_a_lookback_is_refused(
    api: Api, add_integration: AddIntegration
) -> None:
    integration = add_integration()
    url = f"/v1/integrations/{integration}/resync"

    unknown = api.client.post(url, params={"stream": "planets"}, headers=api.headers(WORKSPACE))
    backfill = api.client.post(url, params={"backfill": "true"}, headers=api.headers(WORKSPACE))

    assert unknown.status_code == 422
    assert "stripe has no stream 'planets'; expected one of: customers" in unknown.json()["message"]
    assert backfill.status_code == 422
    assert "stripe has no backfill lookback window" in backfill.json()["message"]


def test_resync_is_refused_with_409_while_a_sync_runs(
    api: Api, add_integration: AddIntegration, clock: ManualClock
) -> None:
    integration = add_integration()
    with api.runtime.sessions() as session, session.begin():
        session.add(
            SyncRun(
                integration_id=uuid.UUID(integration),
                started_at=clock.now(),
                lease_expires_at=clock.now() + timedelta(seconds=60),
            )
        )

    response = api.client.post(
        f"/v1/integrations/{integration}/resync", headers=api.headers(WORKSPACE)
    )

    assert response.status_code == 409
    assert "is syncing now" in response.json()["message"]
