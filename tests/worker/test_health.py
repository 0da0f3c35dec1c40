"""The health sweeps as the worker runs them (SPEC §11): events, marks and metrics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, select

from models.clock import ManualClock
from models.notices import INCIDENT_OPENED_EVENT, LATE_EVENT
from models.schema import OutboxEvent, SyncRun
from scheduler.marks import mark, marks
from tests.conftest import IntegrationFactory
from tests.worker.conftest import LogLines, worker_settings
from worker.app import create_app
from worker.events import Event, LogSink, notifies
from worker.health import INCIDENTS_SWEEP, LATENESS_SWEEP, run_incident_sweep, run_lateness_sweep
from worker.liveness import LivenessCollector
from worker.runtime import Runtime
from worker.settings import Settings


@pytest.fixture
def runtime(engine: Engine, tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    settings = worker_settings(
        engine, tmp_path, SYNCWORKER_LATE_AFTER="3", SYNCWORKER_OVERDUE_AFTER="4"
    )
    runtime = Runtime(settings, clock)
    yield runtime
    runtime.close()


def _gauge(provider: str, lateness: str) -> float | None:
    return REGISTRY.get_sample_value(
        "syncworker_integrations_lateness", {"provider": provider, "lateness": lateness}
    )


def test_the_lateness_sweep_uses_the_configured_thresholds_and_sets_the_metric(
    runtime: Runtime, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    # given stripe (15-minute interval) with LATE_AFTER=3: late only past 45 minutes
    make_integration(last_success_at=clock.now())
    clock.advance(timedelta(minutes=45))

    run_lateness_sweep(runtime)
    assert _gauge("stripe", "late") == 0
    assert _gauge("stripe", "on_time") == 1

    clock.advance(timedelta(minutes=1))
    report = run_lateness_sweep(runtime)

    assert report.announced_late == 1
    assert _gauge("stripe", "late") == 1
    with runtime.sessions() as session:
        kinds = list(
            session.scalars(
                select(OutboxEvent.kind).where(OutboxEvent.kind != "integration.status_changed")
            )
        )
        assert marks(session)[LATENESS_SWEEP].at == clock.now()
    assert kinds == [LATE_EVENT]


def test_late_after_must_be_below_overdue_after(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="SYNCWORKER_LATE_AFTER"):
        Settings.from_env(
            {
                "SYNCWORKER_DATA_DIR": str(tmp_path),
                "SYNCWORKER_LATE_AFTER": "5",
                "SYNCWORKER_OVERDUE_AFTER": "5",
            }
        )


def test_the_incident_sweep_opens_an_incident_marks_its_run_and_sets_the_metric(
    runtime: Runtime, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    with runtime.sessions() as session, session.begin():
        for _ in range(10):
            integration = make_integration(provider="paddle")
            session.add(
                SyncRun(
                    integration_id=integration.id,
                    started_at=clock.now(),
                    finished_at=clock.now(),
                    outcome="failed",
                    error="gave up after retries: GET /x: ReadTimeout",
                    failure_kind="timeout",
                )
            )

    [change] = run_incident_sweep(runtime)

    assert change.opened and change.provider.value == "paddle"
    sample = REGISTRY.get_sample_value
    assert sample("syncworker_provider_incident_open", {"provider": "paddle"}) == 1
    assert sample("syncworker_provider_incident_open", {"provider": "stripe"}) == 0
    with runtime.sessions() as session:
        assert marks(session)[INCIDENTS_SWEEP].detail == {"changed": 1}


def test_the_log_sink_writes_provider_incidents_at_warning(
    json_logs: LogLines, clock: ManualClock
) -> None:
    LogSink().send(Event(uuid.uuid4(), INCIDENT_OPENED_EVENT, clock.now(), {"provider": "paddle"}))

    [line] = [line for line in json_logs() if line.get("event") == INCIDENT_OPENED_EVENT]
    assert line["level"] == "warning" and line["provider"] == "paddle"


@pytest.mark.parametrize(
    ("status", "told"),
    [("active", True), ("sync_warnings", True), ("auth_failing", False), ("sync_failing", False)],
)
def test_a_late_event_notifies_only_where_the_status_looks_healthy(status: str, told: bool) -> None:
    assert notifies(LATE_EVENT, {"status": status}) is told


def test_incidents_and_the_statuses_a_team_acts_on_notify() -> None:
    assert notifies(INCIDENT_OPENED_EVENT, {"provider": "stripe"})
    assert notifies("integration.status_changed", {"toStatus": "credentials_invalid"})
    assert not notifies("integration.status_changed", {"toStatus": "auth_failing"})
    assert not notifies("integration.on_time", {"status": "active"})


def test_the_liveness_collector_serves_runs_missed_runs_and_ages_per_job(
    runtime: Runtime, clock: ManualClock
) -> None:
    every = timedelta(seconds=15)
    for _ in range(2):
        with runtime.sessions() as session, session.begin():
            mark(session, "tick:stripe", now=clock.now(), every=every)
        clock.advance(every * 3)
    app = create_app(runtime.settings, runtime=runtime)

    families = {f.name: f for f in LivenessCollector(runtime, app).collect()}

    def value(name: str) -> float:
        [sample] = [s for s in families[name].samples if s.labels.get("job") == "tick:stripe"]
        return sample.value

    assert value("syncworker_beat_runs") == 2
    assert {families[n].type for n in ("syncworker_beat_runs", "syncworker_beat_missed_runs")} == {
        "counter"
    }
    assert value("syncworker_beat_missed_runs") == 2
    assert value("syncworker_beat_last_run_age_seconds") == 45
    assert value("syncworker_beat_expected_every_seconds") == 15
    assert families["syncworker_database_up"].samples[0].value == 1
    assert families["syncworker_broker_up"].samples[0].value == 1  # the embedded broker


def test_the_liveness_collector_reads_at_most_once_per_ttl(
    runtime: Runtime, clock: ManualClock
) -> None:
    every = timedelta(seconds=15)
    app = create_app(runtime.settings, runtime=runtime)
    wall = [0.0]
    collector = LivenessCollector(runtime, app, ttl_s=10, monotonic=lambda: wall[0])

    def runs() -> float:
        families = {f.name: f for f in collector.collect()}
        return sum(s.value for s in families["syncworker_beat_runs"].samples)

    def tick() -> None:
        with runtime.sessions() as session, session.begin():
            mark(session, "tick:stripe", now=clock.now(), every=every)

    tick()
    assert runs() == 1
    tick()
    wall[0] = 9.9
    assert runs() == 1  # a scrape within the TTL reads nothing
    wall[0] = 10.0
    assert runs() == 2
