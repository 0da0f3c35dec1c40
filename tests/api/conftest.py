"""Fixtures for the HTTP face: the real FastAPI app over a real database, keys by role.

`client` is FastAPI's TestClient (httpx through the ASGI app, the real routing,
validation and error handling); syncs the actions ask for are recorded, not sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_api
from models.api_keys import Role, create_key
from models.clock import ManualClock
from models.credentials import Keyring
from models.status import Provider, SyncOutcome
from models.sync_runs import RunStart, SyncResult, finish_run, start_run
from worker.operator import Operator
from worker.runtime import Runtime
from worker.settings import Settings

WORKSPACE = "ws-a"
LEASE = timedelta(minutes=5)
OTHER_WORKSPACE = "ws-b"


@dataclass
class Api:
    """The app under test and what it needs: its runtime, keys, published syncs."""

    client: TestClient
    runtime: Runtime
    operator: Operator
    published: list[tuple[Provider, uuid.UUID]]
    keys: dict[str, str]  # "operator", WORKSPACE, OTHER_WORKSPACE -> the key

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture
def api_settings(engine: Engine, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "SYNCWORKER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
            "SYNCWORKER_DATA_DIR": str(tmp_path),
            "SYNCWORKER_CREDENTIAL_KEYS": f"t:{Keyring.generate_key()}",
        }
    )


@pytest.fixture
def api(api_settings: Settings, clock: ManualClock) -> Iterator[Api]:
    runtime = Runtime(api_settings, clock)
    published: list[tuple[Provider, uuid.UUID]] = []
    operator = Operator(runtime, lambda provider, key: published.append((provider, key)))
    keys: dict[str, str] = {}
    for workspace in (WORKSPACE, OTHER_WORKSPACE):
        operator.ensure_environment(workspace, organization_id="org-1")
    with runtime.sessions() as session, session.begin():
        keys["operator"] = create_key(session, role=Role.OPERATOR, now=clock.now()).key
        for workspace in (WORKSPACE, OTHER_WORKSPACE):
            keys[workspace] = create_key(
                session, role=Role.WORKSPACE, workspace_id=workspace, now=clock.now()
            ).key
    with TestClient(create_api(runtime, operator), raise_server_exceptions=False) as client:
        yield Api(client, runtime, operator, published, keys)
    runtime.close()


AddIntegration = Callable[..., str]


@pytest.fixture
def add_integration(api: Api) -> AddIntegration:
    """Create an integration through the operator service; its id."""

    def create(workspace: str = WORKSPACE, **fields: object) -> str:
        spec: dict[str, object] = {
            "name": "Acme",
            "identifier": f"acme-{uuid.uuid4().hex[:8]}",
            "provider": "stripe",
            "filters": {"objects": ["customers"]},
            **fields,
        }
        created = api.operator.create(environment_id=workspace, actor="test", **spec)  # type: ignore[arg-type]
        return str(created.integration_id)

    return create


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
