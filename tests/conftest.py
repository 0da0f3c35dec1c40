"""Shared fixtures: databases on SQLite and PostgreSQL, a movable clock, factories.

Service-backed fixtures read their URLs from the environment (TEST_DATABASE_URL,
TEST_REDIS_URL) and skip with a visible reason when unset, so the suite passes on
a bare laptop; CI sets both, so there they always run and fail loudly if the
service is down.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from models import migrate
from models.clock import ManualClock
from models.db import make_engine, make_sessionmaker
from models.integrations import NewIntegration, create_integration, ensure_environment
from models.schema import Base, Integration, ProviderIncident

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def postgres_url() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL-backed test skipped")
    return url


def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("TEST_REDIS_URL is not set: Redis-backed test skipped")
    return url


def _reset_postgres(url: str) -> Engine:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    return engine


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path: Path = tmp_path_factory.mktemp("db") / "test.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    engine = _reset_postgres(postgres_url())
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated database, emptied after each test; every DB test runs on both backends."""
    chosen: Engine = request.getfixturevalue(f"{request.param}_engine")
    yield chosen
    _truncate(chosen)


@pytest.fixture
def pg_engine(postgres_engine: Engine) -> Iterator[Engine]:
    """PostgreSQL only, for tests of row locks and SKIP LOCKED."""
    yield postgres_engine
    _truncate(postgres_engine)


def _truncate(engine: Engine) -> None:
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


IntegrationFactory = Callable[..., Integration]


@pytest.fixture
def make_integration(sessions: sessionmaker[Session], clock: ManualClock) -> IntegrationFactory:
    """Create and commit an integration; returns it detached, with its environment loaded."""
    return integration_factory(sessions, clock)


def integration_factory(sessions: sessionmaker[Session], clock: ManualClock) -> IntegrationFactory:
    def create(
        *,
        status: str | None = None,
        kind: str = "production",
        provider: str = "stripe",
        filters: dict[str, Any] | None = None,
        credentials_sealed: str | None = "sealed-placeholder",
        **fields: Any,
    ) -> Integration:
        env_id = f"env-{kind}"
        with sessions() as session, session.begin():
            ensure_environment(session, env_id, organization_id="org-1", name=kind, kind=kind)
            spec = NewIntegration(
                environment_id=env_id,
                name=fields.pop("name", "Acme"),
                identifier=fields.pop("identifier", f"acme-{uuid.uuid4().hex[:8]}"),
                provider=provider,
                filters=filters if filters is not None else {"objects": ["customers"]},
                credentials_sealed=credentials_sealed,
            )
            change = create_integration(session, spec, now=clock.now())
            integration = session.get_one(Integration, change.integration_id)
            if status is not None:
                integration.status = status
            for name, value in fields.items():
                setattr(integration, name, value)
        return integration

    return create


def incident_row(now: datetime, **fields: Any) -> ProviderIncident:
    """A stored provider incident as the incident sweep writes one: open, on stripe, auth,
    38 of 40 integrations failing in an hour's window; `fields` override any of it."""
    values: dict[str, Any] = {
        "provider": "stripe",
        "kind": "auth",
        "opened_at": now,
        "closed_at": None,
        "window_s": 3600,
        "window_start": now - timedelta(hours=1),
        "integrations_seen": 40,
        "integrations_failing": 38,
        "peak_failing": 38,
        "last_seen": 40,
        "last_failing": 38,
        "evaluated_at": now,
        "backoff": 6.0,
        "clock_held_until": now,
    }
    return ProviderIncident(**(values | fields))
