"""Fixtures for the integrations page: a browser-like client, sign-in, real sync runs.

The page runs inside the real API app (`tests/api/conftest.py`'s `api`), over the real
database; integrations get their statuses the way production gives them, through the
operator service and real sync runs (`models.sync_runs`), never by writing a status.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from models.clock import ManualClock
from models.status import SyncOutcome
from models.sync_runs import RunStart, SyncResult, finish_run, start_run
from tests.api.conftest import AddIntegration, Api

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LEASE = timedelta(minutes=5)


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


Sync = Callable[..., None]


@pytest.fixture
def sync(api: Api) -> Sync:
    """Run one sync attempt to its end with the given result, as a worker would."""

    def run(integration_id: str, outcome: SyncOutcome, **result: object) -> None:
        runtime = api.runtime
        with runtime.sessions() as session, session.begin():
            started = start_run(
                session,
                integration_id,
                task_id=uuid.uuid4().hex,
                now=runtime.clock.now(),
                lease=LEASE,
            )
            assert isinstance(started, RunStart), started
            finish_run(
                session,
                started.run_id,
                SyncResult(outcome, **result),  # type: ignore[arg-type]
                now=runtime.clock.now(),
            )

    return run


@pytest.fixture
def in_qa(add_integration: AddIntegration, sync: Sync) -> Callable[..., str]:
    """An integration whose first sync failed, so it waits in quality assurance."""

    def create(error: str = "customers: 500 from the provider", **fields: object) -> str:
        integration_id = add_integration(**fields)
        sync(integration_id, SyncOutcome.FAILED, error=error)
        return integration_id

    return create
