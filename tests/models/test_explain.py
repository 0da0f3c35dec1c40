"""Explain (SPEC §11): the status, the rule and event that set it, what comes next and when."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.explain import Timing, explain
from models.health import LatenessRule
from models.schema import Integration, StatusChange, SyncRun
from tests.conftest import IntegrationFactory, incident_row

Sessions = sessionmaker[Session]
INTERVAL = timedelta(minutes=15)


def _explain(sessions: Sessions, integration_id: uuid.UUID, clock: ManualClock) -> dict:  # type: ignore[type-arg]
    with sessions() as session:
        integration = session.get_one(Integration, integration_id)
        return dict(explain(session, integration, Timing(clock.now(), INTERVAL, LatenessRule())))


def test_an_auth_failing_integration_names_the_rule_and_the_time_left_to_escalation(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    since = clock.now()
    integration = make_integration(
        status="auth_failing", auth_failing_since=since, next_sync_at=since + INTERVAL
    )
    with sessions() as session, session.begin():
        session.add(
            StatusChange(
                integration_id=integration.id,
                from_status="active",
                to_status="auth_failing",
                trigger="sync_auth_failed",
                reason="GET /v1/customers: 401",
                actor="system",
                at=since,
            )
        )
        session.add(
            SyncRun(
                integration_id=integration.id,
                started_at=since,
                finished_at=since,
                outcome="auth_failed",
                error="GET /v1/customers:\n401 Unauthorized",
            )
        )
    clock.advance(timedelta(hours=70))

    found = _explain(sessions, integration.id, clock)

    assert found["status"] == "auth_failing"
    assert found["setBy"]["rule"] == "a sync failed on authentication"
    assert found["setBy"]["reason"] == "GET /v1/customers: 401"
    escalation = next(s for s in found["next"] if s["what"].startswith("credentials_invalid"))
    assert escalation["inSeconds"] == 2 * 3600
    assert escalation["at"] == (since + timedelta(hours=72)).isoformat()
    assert found["lastError"] == "GET /v1/customers: 401 Unauthorized"  # one line
    assert found["incident"] is None


def test_a_development_integration_shows_the_14_day_rule_and_an_open_incident(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration(kind="development", next_sync_at=clock.now())
    with sessions() as session, session.begin():
        session.add(
            incident_row(clock.now(), kind="timeout", integrations_seen=10, integrations_failing=10)
        )
    clock.advance(timedelta(days=13))

    found = _explain(sessions, integration.id, clock)

    idle = next(s for s in found["next"] if s["what"].startswith("inactive"))
    assert idle["inSeconds"] == 86_400
    assert found["incident"]["kind"] == "timeout"
    assert found["lateness"] == "overdue"


def test_a_paused_integration_says_why_syncs_are_paused_and_when_it_turns_late(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    paused = make_integration(status="quality_assurance")
    syncing = make_integration(last_success_at=clock.now(), next_sync_at=clock.now() + INTERVAL)

    paused_steps = [s["what"] for s in _explain(sessions, paused.id, clock)["next"]]
    steps = _explain(sessions, syncing.id, clock)["next"]

    assert paused_steps == ["syncs paused: waiting for an operator to resolve quality assurance"]
    assert [(s["what"].split(",")[0], s["inSeconds"]) for s in steps] == [
        ("next sync", 900),
        ("late", 1800),
        ("overdue", 4500),
    ]
