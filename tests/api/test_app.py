"""The API's frame: keys are required and checked, every error has one shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter

from api.app import MAX_JSON_BODY_BYTES
from tests.api.conftest import OTHER_WORKSPACE, WORKSPACE, AddIntegration, Api


def test_a_request_without_a_key_is_401_with_a_bearer_challenge(
    api: Api, add_integration: AddIntegration
) -> None:
    response = api.client.get(f"/v1/integrations/{add_integration()}")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "ok": False,
        "message": "an API key is required: Authorization: Bearer <key>",
    }


@pytest.mark.parametrize("key", ["", "swk_nope", "Bearer", "swk_000000000000_" + "A" * 43])
def test_a_key_that_does_not_verify_is_401(
    api: Api, add_integration: AddIntegration, key: str
) -> None:
    response = api.client.get(
        f"/v1/integrations/{add_integration()}", headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status_code == 401
    assert response.json()["ok"] is False


def test_a_workspace_key_sees_its_own_integration_and_not_anothers(
    api: Api, add_integration: AddIntegration
) -> None:
    mine, theirs = add_integration(WORKSPACE), add_integration(OTHER_WORKSPACE)

    own = api.client.get(f"/v1/integrations/{mine}", headers=api.headers(WORKSPACE))
    other = api.client.get(f"/v1/integrations/{theirs}", headers=api.headers(WORKSPACE))
    by_operator = api.client.get(f"/v1/integrations/{theirs}", headers=api.headers("operator"))

    assert own.status_code == 200 and own.json()["workspaceId"] == WORKSPACE
    assert other.status_code == 404
    assert other.json() == {"ok": False, "message": f"integration {theirs} not found"}
    assert by_operator.status_code == 200


def test_an_unexpected_error_is_a_500_without_a_traceback(api: Api) -> None:
    router = APIRouter()

    @router.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals sk_test_123")

    api.client.app.include_router(router)  # type: ignore[attr-defined]
    response = api.client.get("/v1/boom")

    assert response.status_code == 500
    assert response.json() == {
        "ok": False,
        "message": "internal error: the server log has the details",
    }
    assert "sk_test_123" not in response.text


def test_openapi_and_the_docs_page_are_served(api: Api) -> None:
    assert api.client.get("/openapi.json").json()["info"]["title"] == "syncworker"
    assert "swagger" in api.client.get("/docs").text.lower()


def test_a_body_past_the_cap_is_refused_with_413_before_the_key_is_checked(api: Api) -> None:
    # a request with no key cannot make the server hold an unbounded body
    huge = b'{"name": "' + b"x" * (MAX_JSON_BODY_BYTES + 1) + b'"}'
    response = api.client.post(
        "/v1/integrations", content=huge, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["ok"] is False


def test_a_streamed_body_past_the_cap_is_refused_with_413_in_the_one_shape(api: Api) -> None:
    # chunked: no Content-Length to refuse up front, so the read itself stops at the cap
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(MAX_JSON_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    response = api.client.post(
        "/v1/integrations", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json() == {
        "ok": False,
        "message": f"the request body is larger than {MAX_JSON_BODY_BYTES} bytes",
    }
