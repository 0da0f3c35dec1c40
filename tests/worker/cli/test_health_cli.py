"""`syncworker health` (SPEC §11 beat liveness): one line, exit 0 or 1, usable as a probe."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from scheduler.marks import mark, marks, missed_between
from tests.conftest import IntegrationFactory, redis_url
from tests.worker.cli.conftest import Invoke, as_json, one_line_error
from worker.app import create_app
from worker.liveness import expected_every, jobs
from worker.overview import SWEEPS
from worker.publish import SENT_AT_HEADER
from worker.settings import Settings

Sessions = sessionmaker[Session]


def _all_fresh(sessions: Sessions, now: datetime) -> None:
    with sessions() as session, session.begin():
        mark(session, "tick:stripe", now=now)
        for sweep in SWEEPS:
            mark(session, f"sweep:{sweep}", now=now)


def test_missed_runs_are_counted_from_twice_the_period_on() -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    every = timedelta(seconds=15)

    assert missed_between(start, start + every * 2 - timedelta(microseconds=1), every) == 0
    assert missed_between(start, start + every * 2, every) == 1
    assert missed_between(start, start + every * 10, every) == 9
    assert missed_between(start, start + every * 10, None) == 0


def test_a_mark_counts_its_runs_and_the_runs_it_missed(sessions: Sessions) -> None:
    start = datetime(2026, 3, 2, tzinfo=UTC)
    every = timedelta(seconds=15)
    for offset in (0, 15, 30, 90):  # a 60 s gap: three runs missed
        with sessions() as session, session.begin():
            mark(session, "tick:stripe", now=start + timedelta(seconds=offset), every=every)

    with sessions() as session:
        found = marks(session)["tick:stripe"]
    assert (found.runs, found.missed, found.every_s) == (4, 3, 15.0)


def test_each_jobs_period_comes_from_the_beat_schedule_at_the_clocks_speed(
    tmp_path: object,
) -> None:
    settings = Settings.from_env({"SYNCWORKER_DATA_DIR": str(tmp_path)})
    fast = Settings(**{**settings.__dict__, "clock_speed": 60.0})

    assert expected_every(create_app(settings), "tick:stripe") == timedelta(seconds=15)
    assert expected_every(create_app(fast), "tick:stripe") == timedelta(minutes=15)
    assert expected_every(create_app(settings), "sweep:lateness") == timedelta(minutes=1)
    names = {job.name for job in jobs(create_app(settings))}
    assert {f"sweep:{sweep}" for sweep in SWEEPS} <= names


def test_health_is_ok_in_one_line_when_everything_ran_on_time(
    invoke: Invoke, sessions: Sessions
) -> None:
    _all_fresh(sessions, datetime.now(UTC))

    result = invoke("health")

    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("ok: ")


def test_health_fails_when_the_beat_is_silent(invoke: Invoke, sessions: Sessions) -> None:
    _all_fresh(sessions, datetime.now(UTC))
    with sessions() as session, session.begin():
        mark(session, "tick:stripe", now=datetime.now(UTC) - timedelta(minutes=2))

    result = invoke("health")

    assert result.exit_code == 1
    assert result.stdout.startswith("unhealthy: beat silent: last tick 1")
    assert result.stdout.count("\n") == 1


def test_health_fails_when_nothing_ever_ticked(invoke: Invoke) -> None:
    result = invoke("health", "--json")

    assert result.exit_code == 1
    assert "beat silent: no provider tick has ever run" in as_json(result)["problems"]


def test_health_fails_when_a_sweep_is_overdue(invoke: Invoke, sessions: Sessions) -> None:
    now = datetime.now(UTC)
    _all_fresh(sessions, now)
    with sessions() as session, session.begin():
        mark(session, "sweep:auth_escalation", now=now - timedelta(minutes=16))  # every 5 min

    result = invoke("health")

    assert result.exit_code == 1
    assert "sweep:auth_escalation overdue: last ran 960s ago, every 300s" in result.stdout


def test_health_fails_in_one_line_when_the_database_is_unreachable(
    invoke: Invoke, cli_env: dict[str, str]
) -> None:
    cli_env["SYNCWORKER_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"

    result = invoke("health")

    assert result.exit_code == 1
    assert result.stdout.startswith("unhealthy: ") and result.stdout.count("\n") == 1
    assert "database" in result.stdout.lower()


def test_health_fails_when_the_broker_is_unreachable(
    invoke: Invoke, sessions: Sessions, cli_env: dict[str, str]
) -> None:
    _all_fresh(sessions, datetime.now(UTC))
    cli_env["SYNCWORKER_BROKER_URL"] = "redis://127.0.0.1:1/0"

    result = invoke("health")

    assert result.exit_code == 1
    assert "broker unreachable" in result.stdout


def test_health_fails_when_a_queues_oldest_message_waited_too_long(
    invoke: Invoke, sessions: Sessions, cli_env: dict[str, str]
) -> None:
    url = redis_url()
    client = Redis.from_url(url)
    client.flushdb()
    _all_fresh(sessions, datetime.now(UTC))
    cli_env["SYNCWORKER_BROKER_URL"] = url
    old = {"headers": {SENT_AT_HEADER: time.time() - 1200}, "body": ""}
    new = {"headers": {SENT_AT_HEADER: time.time()}, "body": ""}
    client.lpush("sync.stripe", json.dumps(old))  # kombu pushes left: the oldest is last
    client.lpush("sync.stripe", json.dumps(new))
    try:
        failing = invoke("health")
        lenient = invoke("health", "--max-queue-age", "3600")
    finally:
        client.flushdb()
        client.close()

    assert failing.exit_code == 1
    assert "queue sync.stripe: oldest message waiting 120" in failing.stdout
    assert lenient.exit_code == 0


@pytest.mark.parametrize("seconds", ["0", "x"])
def test_a_bad_queue_age_is_refused_by_the_option(invoke: Invoke, seconds: str) -> None:
    assert invoke("health", "--max-queue-age", seconds).exit_code == 2


def test_integrations_explain_says_why_and_what_next(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    integration = make_integration(
        status="auth_failing", auth_failing_since=datetime.now(UTC) - timedelta(hours=71)
    )

    human = invoke("integrations", "explain", str(integration.id))
    found = as_json(invoke("integrations", "explain", str(integration.id), "--json"))

    assert human.exit_code == 0
    first = human.stdout.splitlines()[0]
    assert first.startswith("auth_failing since ") and "data " in first
    assert "set by created" in human.stdout
    assert any(
        line.startswith("  - credentials_invalid, unless") and "(in 59m" in line
        for line in human.stdout.splitlines()
    )
    assert found["status"] == "auth_failing"


def test_explaining_an_unknown_integration_fails_in_one_line(invoke: Invoke) -> None:
    unknown = uuid.uuid4()
    result = invoke("integrations", "explain", str(unknown))

    assert result.exit_code == 1
    assert one_line_error(result) == f"error: integration {unknown} not found"


def test_integrations_resync_answers_in_one_line_and_refuses_a_paused_one_clearly(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    syncing = make_integration()
    paused = make_integration(status="inactive")

    done = invoke("integrations", "resync", str(syncing.id), "--stream", "customers")
    waiting = invoke("integrations", "resync", str(paused.id))

    assert done.exit_code == 0
    assert done.stdout.startswith(f"integration {syncing.id}: ")
    assert "nothing stored to restart" in done.stdout or "restart from scratch" in done.stdout
    assert waiting.exit_code == 0
    assert "syncs are paused (inactive) until it resumes" in waiting.stdout
