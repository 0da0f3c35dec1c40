"""Who may do what, on every route: enumerated from the app, so a new route needs a case.

- no key: 401 everywhere but the webhook receiver (the provider's signature is its key);
- a workspace key on another workspace's integration: 404, as if it did not exist, and
  nothing changes;
- a workspace key on an operator-only route: 403, even on its own integration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from models.queries import IntegrationQuery
from tests.api.conftest import OTHER_WORKSPACE, WORKSPACE, AddIntegration, Api

Scope = Literal["integration", "collection", "operator", "public"]
ONE = "/v1/integrations/{integration_id}"


@dataclass(frozen=True)
class Case:
    """How a route is guarded, and a request body that would act if it were let through."""

    scope: Scope
    body: dict[str, Any] | None = field(default=None)


CASES: Final[dict[tuple[str, str], Case]] = {
    ("GET", "/v1/integrations"): Case("collection"),
    ("POST", "/v1/integrations"): Case(
        "collection",
        {
            "workspaceId": OTHER_WORKSPACE,
            "name": "Intruder",
            "identifier": "intruder",
            "provider": "stripe",
            "filters": {"objects": ["customers"]},
        },
    ),
    ("GET", ONE): Case("integration"),
    ("DELETE", ONE): Case("integration"),
    ("GET", f"{ONE}/states"): Case("integration"),
    ("PUT", f"{ONE}/credentials"): Case("integration", {"credentials": {"secret_key": "sk_x"}}),
    ("PUT", f"{ONE}/filters"): Case("integration", {"filters": {"objects": ["invoices"]}}),
    ("POST", f"{ONE}/sync"): Case("integration"),
    ("POST", f"{ONE}/deactivate"): Case("integration"),
    ("POST", f"{ONE}/reactivate"): Case("integration"),
    ("GET", f"{ONE}/records/{{stream}}"): Case("integration"),
    ("POST", f"{ONE}/resolve-qa"): Case("operator"),
    ("GET", f"{ONE}/full"): Case("operator"),
    ("GET", f"{ONE}/history"): Case("operator"),
    ("GET", f"{ONE}/runs"): Case("operator"),
    ("GET", "/v1/overview"): Case("operator"),
    ("GET", f"{ONE}/explain"): Case("integration"),
    ("POST", f"{ONE}/resync"): Case("integration"),
    ("GET", "/v1/incidents"): Case("operator"),
    ("POST", "/v1/webhooks/{provider}/{integration_id}"): Case("public"),
}
# Not the API's: the schema, its docs page, the redirect to the page, and the page itself
# (an operator's session, tested in tests/api/page/).
EXEMPT: Final = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/", "/ui"}


def routes(api: Api) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, included routers' routes flattened."""
    found = set()
    for route in iter_route_contexts(api.client.app.routes):  # type: ignore[attr-defined]
        path = route.path or ""
        if path in EXEMPT:
            continue
        original = route.original_route
        assert isinstance(original, APIRoute), f"{path}: a kind of route this test cannot check"
        found |= {(method, path) for method in (route.methods or set()) - {"HEAD"}}
    return found


def of(scope: Scope) -> list[tuple[str, str]]:
    return [key for key, case in CASES.items() if case.scope == scope]


def url(path: str, integration_id: str) -> str:
    return path.format(integration_id=integration_id, stream="customers", provider="stripe")


def world(api: Api) -> Any:
    """Everything a request could change: every integration in full, its history, syncs."""
    query = IntegrationQuery(include_deleted=True)
    integrations = api.operator.list_integrations(query, view="dto").items
    history = {i["id"]: api.operator.history(i["id"]) for i in integrations}
    return integrations, history, list(api.published)


def send(api: Api, method: str, path: str, who: str | None, target: str) -> Any:
    case = CASES[(method, path)]
    headers = api.headers(who) if who else {}
    return api.client.request(method, url(path, target), json=case.body, headers=headers)


def test_every_route_has_a_case(api: Api) -> None:
    assert routes(api) == set(CASES)


@pytest.mark.parametrize(("method", "path"), of("integration") + of("operator") + of("collection"))
def test_no_key_is_401_and_changes_nothing(
    api: Api, add_integration: AddIntegration, method: str, path: str
) -> None:
    target = add_integration()
    before = world(api)

    response = send(api, method, path, None, target)

    assert response.status_code == 401
    assert response.json()["ok"] is False
    assert world(api) == before


@pytest.mark.parametrize(("method", "path"), of("integration"))
def test_a_workspace_key_on_another_workspaces_integration_is_404_and_changes_nothing(
    api: Api, add_integration: AddIntegration, method: str, path: str
) -> None:
    theirs = add_integration(OTHER_WORKSPACE)
    before = world(api)

    response = send(api, method, path, WORKSPACE, theirs)

    assert response.status_code == 404, response.text
    assert response.json() == {"ok": False, "message": f"integration {theirs} not found"}
    assert world(api) == before


@pytest.mark.parametrize(("method", "path"), of("integration"))
def test_the_owning_workspace_key_is_let_through(
    api: Api, add_integration: AddIntegration, method: str, path: str
) -> None:
    mine = add_integration(WORKSPACE)

    response = send(api, method, path, WORKSPACE, mine)

    assert response.status_code not in (401, 403, 404), response.text


@pytest.mark.parametrize(("method", "path"), of("operator"))
def test_a_workspace_key_on_an_operator_route_is_403_and_changes_nothing(
    api: Api, add_integration: AddIntegration, method: str, path: str
) -> None:
    mine = add_integration(WORKSPACE)

    refused = send(api, method, path, WORKSPACE, mine)
    allowed = send(api, method, path, "operator", mine)

    assert refused.status_code == 403
    assert refused.json() == {"ok": False, "message": "this needs an operator key"}
    assert allowed.status_code not in (401, 403, 404), allowed.text


@pytest.mark.parametrize(("method", "path"), of("public"))
def test_a_public_route_needs_no_key_and_a_key_opens_nothing_more(
    api: Api, add_integration: AddIntegration, method: str, path: str
) -> None:
    target = add_integration()
    before = world(api)

    anonymous = send(api, method, path, None, target)
    with_key = send(api, method, path, "operator", target)

    assert anonymous.status_code not in (401, 403)
    assert with_key.status_code == anonymous.status_code
    assert world(api) == before


def test_a_workspace_key_lists_its_own_workspace_only(
    api: Api, add_integration: AddIntegration
) -> None:
    mine, theirs = add_integration(WORKSPACE), add_integration(OTHER_WORKSPACE)

    page = send(api, "GET", "/v1/integrations", WORKSPACE, mine).json()
    everything = send(api, "GET", "/v1/integrations", "operator", mine).json()

    assert [item["id"] for item in page["items"]] == [mine]
    assert {item["id"] for item in everything["items"]} == {mine, theirs}


def test_a_workspace_key_cannot_add_to_another_workspace(api: Api) -> None:
    before = world(api)

    response = send(api, "POST", "/v1/integrations", WORKSPACE, "")

    assert response.status_code == 422
    assert response.json() == {
        "ok": False,
        "message": f"this key may only create integrations in {WORKSPACE}",
    }
    assert world(api) == before
