"""`/v1/integrations`: list, get, states, the actions, and what each answers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from models.clock import ManualClock
from models.status import Provider, Status, SyncOutcome
from tests.api.conftest import OTHER_WORKSPACE, WORKSPACE, AddIntegration, Api, Sync

SEED_003_FIELDS = {"id", "workspaceId", "provider", "status", "dataLastReceivedAt"}
VIEW_FIELDS = SEED_003_FIELDS | {"createdAt", "updatedAt", "setupStatus", "qaStatus", "lateness"}
SECRET = "sk_test_ApiNeverEchoesThis0001"


def full(api: Api, integration_id: str) -> dict[str, Any]:
    response = api.client.get(
        f"/v1/integrations/{integration_id}/full", headers=api.headers("operator")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def add_body(**fields: object) -> dict[str, object]:
    return {
        "name": "Acme",
        "identifier": "acme-1",
        "provider": "stripe",
        "credentials": {"secret_key": SECRET},
        "filters": {"objects": ["customers"]},
        **fields,
    }


def test_get_one_is_seed_003s_workspace_integration_without_credentials(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration(credentials={"secret_key": SECRET})

    body = api.client.get(f"/v1/integrations/{integration_id}", headers=api.headers(WORKSPACE))

    assert body.status_code == 200
    assert set(body.json()) == VIEW_FIELDS
    assert body.json()["status"] == "connected" and body.json()["provider"] == "stripe"
    assert SECRET not in body.text


def test_the_list_pages_newest_first_through_every_integration_once(
    api: Api, add_integration: AddIntegration, clock: ManualClock
) -> None:
    created = []
    for _ in range(5):
        created.append(add_integration())
        clock.advance(timedelta(minutes=1))
    add_integration(OTHER_WORKSPACE)

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        params: dict[str, Any] = {"limit": 2} | ({"after": cursor} if cursor else {})
        page = api.client.get("/v1/integrations", params=params, headers=api.headers(WORKSPACE))
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["nextCursor"]

    assert seen == created[::-1]
    assert cursor is None


def test_the_list_filters_by_provider_status_and_api_status(
    api: Api, add_integration: AddIntegration
) -> None:
    stripe = add_integration()
    paddle_setup = add_integration(provider="paddle", filters=None)

    def ids(**params: object) -> set[str]:
        page = api.client.get("/v1/integrations", params=params, headers=api.headers("operator"))
        assert page.status_code == 200, page.text
        return {item["id"] for item in page.json()["items"]}

    assert ids(provider="paddle") == {paddle_setup}
    assert ids(provider=["paddle", "stripe"]) == {stripe, paddle_setup}
    assert ids(status="setup") == {paddle_setup}
    assert ids(apiStatus="connected") == {stripe}
    assert ids(apiStatus="not_connected", provider="stripe") == set()


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"provider": "myspace"}, "query.provider.0"),
        ({"status": "happy"}, "query.status.0"),
        ({"apiStatus": "on"}, "query.apiStatus.0"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 501}, "query.limit"),
    ],
)
def test_a_bad_list_filter_is_a_422_naming_it(
    api: Api, params: dict[str, object], named: str
) -> None:
    response = api.client.get("/v1/integrations", params=params, headers=api.headers(WORKSPACE))

    assert response.status_code == 422
    assert response.json()["ok"] is False and named in response.json()["message"]


def test_a_cursor_the_api_did_not_make_is_a_422(api: Api) -> None:
    response = api.client.get(
        "/v1/integrations", params={"after": "bm90LWEtY3Vyc29y"}, headers=api.headers(WORKSPACE)
    )

    assert response.status_code == 422
    assert response.json() == {"ok": False, "message": "cursor is not one this API returned"}


def test_states_report_the_sync_subset_and_the_last_sync(
    api: Api, add_integration: AddIntegration, sync: Sync
) -> None:
    integration_id = add_integration()
    sync(integration_id, SyncOutcome.SUCCEEDED)

    states = api.client.get(
        f"/v1/integrations/{integration_id}/states", headers=api.headers(WORKSPACE)
    ).json()

    assert states["status"] == "connected" and states["setupStatus"] == "completed"
    assert states["lastSyncOutcome"] == "succeeded" and states["lastSyncAt"] is not None
    assert states["qaStatus"] is None
    assert set(states) == {
        "id",
        "status",
        "setupStatus",
        "qaStatus",
        "lastSyncOutcome",
        "lastSyncAt",
        "dataLastReceivedAt",
    }


def test_add_answers_an_action_result_with_the_new_id_in_the_keys_workspace(api: Api) -> None:
    response = api.client.post("/v1/integrations", json=add_body(), headers=api.headers(WORKSPACE))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["ok"] is True and set(body) == {"ok", "message", "id"}
    assert body["message"] == f"integration {body['id']} created in active; sync queued"
    assert full(api, body["id"])["environmentId"] == WORKSPACE
    assert api.published == [(Provider.STRIPE, uuid.UUID(body["id"]))]


@pytest.mark.parametrize(
    ("who", "fields", "status", "message"),
    [
        (WORKSPACE, {"workspaceId": OTHER_WORKSPACE}, 422, "may only create integrations in"),
        ("operator", {}, 422, "workspaceId is required with an operator key"),
        ("operator", {"workspaceId": "ws-nowhere"}, 422, "unknown environment 'ws-nowhere'"),
        (WORKSPACE, {"filters": {"objects": ["planets"]}}, 422, "planets"),
        (WORKSPACE, {"credentials": {"secret_key": "nope"}}, 422, "secret_key must start"),
        (WORKSPACE, {"provider": "myspace"}, 422, "body.provider"),
        (WORKSPACE, {"surprise": 1}, 422, "body.surprise"),
    ],
)
def test_add_refuses_what_it_cannot_create_and_creates_nothing(
    api: Api, who: str, fields: dict[str, object], status: int, message: str
) -> None:
    body = add_body(**fields)
    response = api.client.post("/v1/integrations", json=body, headers=api.headers(who))

    assert response.status_code == status, response.text
    assert response.json()["ok"] is False and message in response.json()["message"]
    listed = api.client.get("/v1/integrations", headers=api.headers("operator")).json()
    assert listed["items"] == []


def test_adding_the_same_identifier_twice_is_a_409(api: Api) -> None:
    first = api.client.post("/v1/integrations", json=add_body(), headers=api.headers(WORKSPACE))
    again = api.client.post("/v1/integrations", json=add_body(), headers=api.headers(WORKSPACE))

    assert first.status_code == 201
    assert again.status_code == 409 and again.json()["ok"] is False


def test_credentials_are_write_only_and_revive_a_broken_integration(
    api: Api, add_integration: AddIntegration, sync: Sync
) -> None:
    integration_id = add_integration()
    sync(integration_id, SyncOutcome.SUCCEEDED)
    sync(integration_id, SyncOutcome.AUTH_FAILED, error="401 from stripe")

    response = api.client.put(
        f"/v1/integrations/{integration_id}/credentials",
        json={"credentials": {"secret_key": SECRET}},
        headers=api.headers(WORKSPACE),
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "ok": True,
        "message": f"integration {integration_id} moved from auth_failing to active; sync queued",
    }
    assert full(api, integration_id)["credentials"] == {"present": True}


def test_configuring_filters_moves_setup_to_active_and_checks_them_with_the_connector(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration(filters=None)
    path = f"/v1/integrations/{integration_id}/filters"

    wrong = api.client.put(
        path, json={"filters": {"objects": ["planets"]}}, headers=api.headers(WORKSPACE)
    )
    right = api.client.put(
        path, json={"filters": {"objects": ["customers"]}}, headers=api.headers(WORKSPACE)
    )

    assert wrong.status_code == 422 and "planets" in wrong.json()["message"]
    assert right.status_code == 200
    assert "moved from setup to active" in right.json()["message"]
    assert full(api, integration_id)["filters"] == {"objects": ["customers"]}


def test_sync_now_queues_a_sync_and_is_a_409_while_paused(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration()
    api.published.clear()
    path = f"/v1/integrations/{integration_id}"

    queued = api.client.post(f"{path}/sync", headers=api.headers(WORKSPACE))
    api.client.post(f"{path}/deactivate", headers=api.headers(WORKSPACE))
    paused = api.client.post(f"{path}/sync", headers=api.headers(WORKSPACE))

    assert queued.status_code == 202
    assert queued.json() == {"ok": True, "message": f"sync of integration {integration_id} queued"}
    assert paused.status_code == 409 and paused.json()["ok"] is False
    assert len(api.published) == 1


def test_deactivate_then_reactivate_round_trips_through_inactive(
    api: Api, add_integration: AddIntegration
) -> None:
    integration_id = add_integration()
    path = f"/v1/integrations/{integration_id}"

    off = api.client.post(f"{path}/deactivate", headers=api.headers(WORKSPACE))
    view = api.client.get(path, headers=api.headers(WORKSPACE)).json()
    on = api.client.post(f"{path}/reactivate", headers=api.headers(WORKSPACE))
    twice = api.client.post(f"{path}/reactivate", headers=api.headers(WORKSPACE))

    assert off.json()["message"].endswith("moved from active to inactive")
    assert view["status"] == "inactive"
    assert on.json()["message"].startswith(f"integration {integration_id} moved from inactive")
    assert twice.status_code == 409 and "reactivate" in twice.json()["message"]


def test_delete_is_soft_final_and_names_the_caller_as_deleted_by(
    api: Api, add_integration: AddIntegration
) -> None:
    by_header, by_key = add_integration(), add_integration()
    headers = api.headers(WORKSPACE)

    api.client.delete(f"/v1/integrations/{by_header}", headers=headers | {"X-Actor": "user-42"})
    api.client.delete(f"/v1/integrations/{by_key}", headers=headers)
    again = api.client.delete(f"/v1/integrations/{by_key}", headers=headers)

    workspace_key_id = api.keys[WORKSPACE].split("_")[1]
    assert full(api, by_header)["deletedBy"] == "user-42"
    assert full(api, by_key)["deletedBy"] == f"api-key:{workspace_key_id}"
    assert full(api, by_key)["status"] == Status.DELETED
    assert again.status_code == 409
    listed = api.client.get("/v1/integrations", headers=headers).json()["items"]
    assert listed == []


@pytest.mark.parametrize("actor", ["system", "x" * 65, "tab\there"])
def test_an_actor_the_audit_trail_cannot_hold_is_a_422_and_nothing_changes(
    api: Api, add_integration: AddIntegration, actor: str
) -> None:
    integration_id = add_integration()

    response = api.client.post(
        f"/v1/integrations/{integration_id}/deactivate",
        headers=api.headers(WORKSPACE) | {"X-Actor": actor},
    )

    assert response.status_code == 422 and response.json()["ok"] is False
    assert full(api, integration_id)["status"] == Status.ACTIVE


def test_operator_routes_show_the_full_dto_history_runs_and_overview(api: Api, in_qa: Any) -> None:
    integration_id = in_qa(error="customers: 500 from the provider")
    op = api.headers("operator")

    resolved = api.client.post(f"/v1/integrations/{integration_id}/resolve-qa", headers=op)
    history = api.client.get(f"/v1/integrations/{integration_id}/history", headers=op).json()
    runs = api.client.get(f"/v1/integrations/{integration_id}/runs", headers=op).json()
    overview = api.client.get("/v1/overview", headers=op)

    assert resolved.json()["message"].startswith(
        f"integration {integration_id} moved from quality_assurance to active"
    )
    assert [change["toStatus"] for change in history] == ["active", "quality_assurance", "active"]
    assert runs[0]["error"] == "customers: 500 from the provider"
    assert full(api, integration_id)["qaStatus"] == "passed"
    assert overview.status_code == 200
    assert overview.json()["integrations"]["byStatus"]["active"] == 1
