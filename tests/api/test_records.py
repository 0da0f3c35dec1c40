"""Synced records by stream, in pages; reading them keeps a development integration alive."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from models.api_keys import Role, create_key
from models.clock import ManualClock
from models.records import store_page
from models.schema import Integration
from models.status import Status, SyncOutcome
from models.time_rules import deactivate_idle_development
from tests.api.conftest import OTHER_WORKSPACE, WORKSPACE, AddIntegration, Api, Sync

DEV_WORKSPACE = "ws-dev"


def store(api: Api, integration_id: str, stream: str, *external_ids: str) -> None:
    with api.runtime.sessions() as session, session.begin():
        store_page(
            session,
            integration_id=uuid.UUID(integration_id),
            run_id=None,
            stream=stream,
            records=[(key, {"id": key, "email": f"{key}@example.com"}) for key in external_ids],
            cursor=None,
            now=api.runtime.clock.now(),
        )


def read(api: Api, integration_id: str, stream: str, who: str, **params: Any) -> Any:
    return api.client.get(
        f"/v1/integrations/{integration_id}/records/{stream}",
        params=params,
        headers=api.headers(who),
    )


def status_of(api: Api, integration_id: str) -> Status:
    with api.runtime.sessions() as session:
        return session.get_one(Integration, uuid.UUID(integration_id)).status_enum


def test_records_page_through_one_stream_by_external_id(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration()
    store(api, integration_id, "customers", "cus_3", "cus_1", "cus_2", "cus_4", "cus_5")
    store(api, integration_id, "invoices", "in_1")

    seen: list[str] = []
    cursor = None
    for _ in range(3):
        page = read(
            api,
            integration_id,
            "customers",
            WORKSPACE,
            limit=2,
            **({"after": cursor} if cursor else {}),
        )
        assert page.status_code == 200, page.text
        seen += [item["externalId"] for item in page.json()["items"]]
        cursor = page.json()["nextCursor"]

    assert seen == ["cus_1", "cus_2", "cus_3", "cus_4", "cus_5"]
    assert cursor is None
    first = read(api, integration_id, "invoices", WORKSPACE).json()["items"][0]
    assert first["stream"] == "invoices" and first["data"] == {
        "id": "in_1",
        "email": "in_1@example.com",
    }


def test_another_workspaces_records_are_404_and_are_not_counted_as_a_request(
    api: Api, add_integration: AddIntegration
) -> None:
    theirs = add_integration(OTHER_WORKSPACE)
    store(api, theirs, "customers", "cus_1")

    response = read(api, theirs, "customers", WORKSPACE)

    assert response.status_code == 404
    with api.runtime.sessions() as session:
        assert session.get_one(Integration, uuid.UUID(theirs)).last_api_request_at is None


def test_reading_records_keeps_a_development_integration_from_the_two_week_rule(
    api: Api, add_integration: AddIntegration, clock: ManualClock, sync: Sync
) -> None:
    # given two development integrations, one whose host application reads its records
    api.operator.ensure_environment(DEV_WORKSPACE, organization_id="org-1", kind="development")
    with api.runtime.sessions() as session, session.begin():
        api.keys[DEV_WORKSPACE] = create_key(
            session, role=Role.WORKSPACE, workspace_id=DEV_WORKSPACE, now=clock.now()
        ).key
    used, idle = add_integration(DEV_WORKSPACE), add_integration(DEV_WORKSPACE)
    sync(used, SyncOutcome.SUCCEEDED)
    sync(idle, SyncOutcome.SUCCEEDED)

    def sweep() -> None:
        with api.runtime.sessions() as session, session.begin():
            deactivate_idle_development(session, now=clock.now())

    # when the host application reads `used`'s records on day 13
    clock.advance(timedelta(days=13))
    assert read(api, used, "customers", DEV_WORKSPACE).status_code == 200

    # then on day 14 only the idle one goes inactive, by the sweep
    clock.advance(timedelta(days=1))
    sweep()
    assert (status_of(api, used), status_of(api, idle)) == (Status.ACTIVE, Status.INACTIVE)

    # and a sync result on day 26 (13 days after the read) keeps it active
    clock.advance(timedelta(days=12))
    sync(used, SyncOutcome.SUCCEEDED)
    sweep()
    assert status_of(api, used) is Status.ACTIVE

    # and 14 days after its last read, with no read since, it goes inactive too
    clock.advance(timedelta(days=1))
    sweep()
    assert status_of(api, used) is Status.INACTIVE
    history = api.client.get(
        f"/v1/integrations/{used}/history", headers=api.headers("operator")
    ).json()
    assert history[0]["reason"] == "dev_inactivity"


def test_a_records_cursor_the_api_did_not_make_is_a_422(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration()

    response = read(api, integration_id, "customers", WORKSPACE, after="eyJub3QiOiAib3VycyJ9")

    assert response.status_code == 422
    assert response.json() == {"ok": False, "message": "cursor is not one this API returned"}
