"""Names, keys and JSON documents are checked at the model's door: one line, nothing written.

Every database test runs on SQLite (which would silently keep an over-long value) and on
PostgreSQL (which would refuse it mid-transaction with a driver error).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.errors import IntegrationNotFound, InvalidValue
from models.integrations import (
    NewIntegration,
    configure_filters,
    create_integration,
    deactivate,
    ensure_environment,
)
from models.schema import Environment, Integration, StatusChange
from tests.conftest import IntegrationFactory


def spec(**fields: Any) -> NewIntegration:
    values: dict[str, Any] = {
        "environment_id": "env-1",
        "name": "Acme",
        "identifier": "acme",
        "provider": "stripe",
        **fields,
    }
    return NewIntegration(**values)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "x" * 201}, "name must be at most 200 characters, got 201"),
        ({"name": "   "}, "name must not be blank"),
        ({"name": " Acme"}, "must not be blank or start or end with spaces"),
        ({"name": "Acme\x1b[31m"}, "name must be printable text"),
        ({"identifier": "i" * 201}, "identifier must be at most 200 characters"),
        ({"identifier": "acme shop"}, "identifier must be non-empty text without spaces"),
        ({"identifier": ""}, "identifier must be non-empty text without spaces"),
        ({"environment_id": "e" * 65}, "environment id must be at most 64 characters"),
        ({"environment_id": 7}, "environment id must be text, not int"),
        ({"filters": {"objects": math.nan}}, "filters must not hold NaN or Infinity"),
        ({"filters": {"x": math.inf}}, "filters must not hold NaN or Infinity"),
        ({"filters": {"objects": nested(11)}}, "filters is nested more than 10 levels deep"),
        ({"filters": {1: "customers"}}, "filters: object keys must be text"),
        ({"filters": {"objects": {"customers"}}}, "filters must be JSON, not set"),
        ({"filters": {"objects": ["x" * 70_000]}}, "filters must be at most 64 KiB of JSON"),
        ({"configurations": {"a": math.nan}}, "configurations must not hold NaN"),
        ({"conditions": (nested(12),)}, "conditions is nested more than 10 levels deep"),
    ],
)
def test_a_new_integration_refuses_what_its_columns_or_json_cannot_hold(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidValue, match=message.replace("[", r"\[")):
        spec(**fields)


def test_names_at_the_column_limits_are_stored_whole(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session, session.begin():
        ensure_environment(
            session, "e" * 64, organization_id="o" * 64, name="n" * 200, kind="production"
        )
        change = create_integration(
            session,
            spec(environment_id="e" * 64, name="N" * 200, identifier="i" * 200),
            now=clock.now(),
            actor="a" * 64,
        )
    with sessions() as session:
        stored = session.get_one(Integration, change.integration_id)
        assert (len(stored.name), len(stored.identifier)) == (200, 200)


@pytest.mark.parametrize(
    ("env_id", "organization", "name", "message"),
    [
        ("e" * 65, "org", "env", "environment id must be at most 64 characters"),
        ("env", "o" * 65, "env", "organization id must be at most 64 characters"),
        ("env", "org", "n" * 201, "environment name must be at most 200 characters"),
        ("env one", "org", "env", "environment id must be non-empty text without spaces"),
    ],
)
def test_a_new_environment_refuses_over_long_or_spaced_ids_and_stores_nothing(
    sessions: sessionmaker[Session], env_id: str, organization: str, name: str, message: str
) -> None:
    with pytest.raises(InvalidValue, match=message), sessions() as session, session.begin():
        ensure_environment(
            session, env_id, organization_id=organization, name=name, kind="production"
        )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Environment)) == 0


def test_an_over_long_actor_is_refused_and_nothing_changes(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration()

    too_long = "actor must be at most 64 characters, got 65"
    with pytest.raises(InvalidValue, match=too_long), sessions() as session, session.begin():
        deactivate(session, integration.id, now=clock.now(), actor="u" * 65)

    with sessions() as session:
        assert session.get_one(Integration, integration.id).status == "active"
        changes = session.scalars(
            select(StatusChange).where(StatusChange.integration_id == integration.id)
        ).all()
        assert [c.trigger for c in changes] == ["created"]


def test_filters_that_are_not_plain_json_are_refused_and_the_old_ones_kept(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(filters={"objects": ["customers"]})

    with pytest.raises(InvalidValue, match="NaN"), sessions() as session, session.begin():
        configure_filters(session, integration.id, {"objects": [math.nan]}, now=clock.now())

    with sessions() as session:
        assert session.get_one(Integration, integration.id).filters == {"objects": ["customers"]}


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("x" * 5000, "integration " + repr("x" * 64) + "... not found"),
        ("abc\x1b[2J", "integration 'abc\\x1b[2J' not found"),
        ("not-a-uuid", "integration not-a-uuid not found"),
    ],
)
def test_a_bad_integration_id_is_quoted_short_and_escaped(given: str, shown: str) -> None:
    assert str(IntegrationNotFound(given)) == shown
