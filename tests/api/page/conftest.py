"""Fixtures for the integrations page: a browser-like client, sign-in, real sync runs.

The page runs inside the real API app (`tests/api/conftest.py`'s `api`), over the real
database; integrations get their statuses the way production gives them, through the
operator service and real sync runs (`models.sync_runs`), never by writing a status.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from models.clock import ManualClock
from tests.api.conftest import AddIntegration, Api

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(response: Response) -> str:
    """The CSRF token of the first form on a page."""
    found = CSRF.search(response.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def sign_in(client: TestClient, key: str) -> Response:
    """Sign in as a browser does: open the form, post it with its token."""
    form = client.get("/ui/sign-in")
    return client.post(
        "/ui/sign-in",
        data={"key": key, "csrf_token": csrf_of(form), "next": ""},
        follow_redirects=False,
    )


@pytest.fixture
def add_integration(add_integration: AddIntegration, clock: ManualClock) -> AddIntegration:
    """The API tests' factory, a minute apart, so "newest first" has one answer."""

    def create(*args: object, **fields: object) -> str:
        created = add_integration(*args, **fields)
        clock.advance(timedelta(minutes=1))
        return created

    return create


@pytest.fixture
def signed_in(api: Api) -> TestClient:
    """The API's client, signed in to the page with the operator key."""
    response = sign_in(api.client, api.keys["operator"])
    assert response.status_code == 303, response.text
    return api.client


def post_form(client: TestClient, path: str, **fields: str) -> Response:
    """Post the form at `path` with the session's CSRF token, as its button would."""
    token = csrf_of(client.get("/ui/"))
    return client.post(path, data={"csrf_token": token, **fields}, follow_redirects=False)
