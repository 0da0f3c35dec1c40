"""The page's buttons: each posts with the session's CSRF token, acts through the operator
service, and shows its answer or its refusal once on the integration's page."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from models.status import Status
from tests.api.conftest import AddIntegration, Api
from tests.api.page.conftest import csrf_of, post_form, sign_in


def _flashes(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<p class="flash flash-(ok|refused)" role="status">([^<]*)</p>', page)


def _status(api: Api, integration_id: str) -> str:
    return api.operator.get(integration_id, "dto")["status"]


def test_resolving_qa_makes_the_integration_active_and_queues_its_sync(
    api: Api, signed_in: TestClient, in_qa: Callable[..., str]
) -> None:
    integration_id = in_qa()
    api.published.clear()  # the creation's first sync

    response = post_form(signed_in, f"/ui/integrations/{integration_id}/resolve-qa")
    page = signed_in.get(response.headers["location"]).text

    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/integrations/{integration_id}"
    assert _status(api, integration_id) == Status.ACTIVE
    assert [str(key) for _, key in api.published] == [integration_id]
    assert _flashes(page) == [
        (
            "ok",
            f"integration {integration_id} moved from quality_assurance to active; sync queued",
        )
    ]
    assert _flashes(signed_in.get(f"/ui/integrations/{integration_id}").text) == []  # once


def test_the_audit_trail_names_the_operator_key_that_acted(
    api: Api, signed_in: TestClient, in_qa: Callable[..., str]
) -> None:
    integration_id = in_qa()

    post_form(signed_in, f"/ui/integrations/{integration_id}/resolve-qa")

    key_id = api.keys["operator"].split("_")[1]
    assert api.operator.history(integration_id)[0]["actor"] == f"key:{key_id}"


def test_an_action_that_does_not_apply_shows_the_refusal_and_changes_nothing(
    api: Api, signed_in: TestClient, add_integration: AddIntegration
) -> None:
    integration_id = add_integration()

    response = post_form(signed_in, f"/ui/integrations/{integration_id}/resolve-qa")
    page = signed_in.get(response.headers["location"]).text

    assert _status(api, integration_id) == Status.ACTIVE
    assert _flashes(page) == [
        ("refused", f"integration {integration_id} is active: trigger resolve_qa does not apply")
    ]


@pytest.mark.parametrize(
    ("steps", "final", "published"),
    [
        (["sync-now"], Status.ACTIVE, 1),
        (["deactivate"], Status.INACTIVE, 0),
        (["deactivate", "reactivate"], Status.ACTIVE, 1),
        (["deactivate", "sync-now"], Status.INACTIVE, 0),
    ],
)
def test_sync_now_deactivate_and_reactivate_act_through_the_operator_service(
    api: Api,
    signed_in: TestClient,
    *,
    add_integration: AddIntegration,
    steps: list[str],
    final: Status,
    published: int,
) -> None:
    integration_id = add_integration()
    api.published.clear()  # the creation's first sync

    for step in steps:
        response = post_form(signed_in, f"/ui/integrations/{integration_id}/{step}")
        assert response.status_code == 303

    assert _status(api, integration_id) == final
    assert len(api.published) == published


def test_sync_now_while_paused_shows_that_syncs_are_paused(
    signed_in: TestClient, add_integration: AddIntegration
) -> None:
    integration_id = add_integration()
    post_form(signed_in, f"/ui/integrations/{integration_id}/deactivate")

    post_form(signed_in, f"/ui/integrations/{integration_id}/sync-now")
    page = signed_in.get(f"/ui/integrations/{integration_id}").text

    assert ("refused", f"integration {integration_id} is inactive: syncs are paused") in _flashes(
        page
    )


def test_delete_asks_for_the_identifier_and_refuses_without_it(
    api: Api, signed_in: TestClient, add_integration: AddIntegration
) -> None:
    integration_id = add_integration(identifier="acme-main")
    confirmation = signed_in.get(f"/ui/integrations/{integration_id}/delete")

    response = post_form(signed_in, f"/ui/integrations/{integration_id}/delete", confirm="acme")
    page = signed_in.get(response.headers["location"]).text

    assert "Type the identifier <code>acme-main</code> to confirm" in confirmation.text
    assert response.headers["location"] == f"/ui/integrations/{integration_id}/delete"
    assert _status(api, integration_id) == Status.ACTIVE
    assert _flashes(page) == [
        ("refused", "not deleted: type the identifier &#39;acme-main&#39; to confirm")
    ]


def test_delete_with_the_identifier_deletes_and_names_the_key_as_deleted_by(
    api: Api, signed_in: TestClient, add_integration: AddIntegration
) -> None:
    integration_id = add_integration(identifier="acme-main")

    post_form(signed_in, f"/ui/integrations/{integration_id}/delete", confirm="acme-main")
    page = signed_in.get(f"/ui/integrations/{integration_id}").text

    dto = api.operator.get(integration_id, "dto")
    assert dto["status"] == Status.DELETED
    assert dto["deletedBy"] == f"key:{api.keys['operator'].split('_')[1]}"
    assert ("ok", f"integration {integration_id} moved from active to deleted") in _flashes(page)
    assert 'name="action"' not in page and "/delete" not in page  # nothing left to press


def test_an_unknown_action_is_a_404_page(
    signed_in: TestClient, add_integration: AddIntegration
) -> None:
    response = post_form(signed_in, f"/ui/integrations/{add_integration()}/explode")

    assert response.status_code == 404
    assert "no action &#39;explode&#39;" in response.text


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_an_action_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    api: Api, signed_in: TestClient, in_qa: Callable[..., str], token: str | None
) -> None:
    integration_id = in_qa()
    api.published.clear()  # the creation's first sync
    form = {} if token is None else {"csrf_token": token}

    response = signed_in.post(
        f"/ui/integrations/{integration_id}/resolve-qa", data=form, follow_redirects=False
    )

    assert response.status_code == 403
    assert "CSRF token is missing or stale" in response.text
    assert _status(api, integration_id) == Status.QUALITY_ASSURANCE
    assert api.published == []


def test_another_sessions_csrf_token_does_not_pass(
    api: Api, signed_in: TestClient, in_qa: Callable[..., str]
) -> None:
    integration_id = in_qa()
    other = TestClient(signed_in.app)
    sign_in(other, api.keys["operator"])
    their_token = csrf_of(other.get("/ui/"))

    response = signed_in.post(
        f"/ui/integrations/{integration_id}/resolve-qa",
        data={"csrf_token": their_token},
        follow_redirects=False,
    )

    assert response.status_code == 403
    assert _status(api, integration_id) == Status.QUALITY_ASSURANCE


def test_an_action_posted_without_signing_in_is_sent_to_sign_in(
    api: Api, in_qa: Callable[..., str]
) -> None:
    integration_id = in_qa()
    token = csrf_of(api.client.get("/ui/sign-in"))

    response = api.client.post(
        f"/ui/integrations/{integration_id}/resolve-qa",
        data={"csrf_token": token},
        follow_redirects=False,
    )

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/sign-in"
    assert _status(api, integration_id) == Status.QUALITY_ASSURANCE
