"""The health sweeps (SPEC §11) as the worker runs them: lateness and provider incidents.

Each runs on the runtime's clock in one short transaction per step, records a
scheduler mark for the overview and beat liveness, and updates its metrics:

- `syncworker_integrations_lateness{provider,lateness}`: integrations judged by the
  latest lateness sweep (`models.health`);
- `syncworker_provider_incident_open{provider}`: 1 while the provider has an open
  incident (`scheduler.incidents`).

`register` defines their beat tasks on a Celery app, with those of the recovery probes
(`worker.recovery`) and the daily report backfill (`scheduler.backfill`); the tasks
hold no rule themselves.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import structlog
from celery import Celery
from prometheus_client import Gauge

from models.health import Lateness, LatenessReport, sweep_lateness
from models.incidents import open_incidents
from models.status import Provider
from scheduler.backfill import backfill_reports
from scheduler.beat import (
    INCIDENTS_TASK,
    LATENESS_TASK,
    RECOVERY_PROBES_TASK,
    REPORT_BACKFILL_TASK,
)
from scheduler.incidents import IncidentChange, covered_providers, evaluate
from scheduler.marks import mark
from worker.liveness import expected_every
from worker.recovery import ProbeResult, run_recovery_probes
from worker.runtime import Runtime, publisher_of, runtime_of

log = structlog.get_logger(__name__)

LATENESS_SWEEP: Final = "sweep:lateness"
RECOVERY_SWEEP: Final = "sweep:recovery_probes"
BACKFILL_SWEEP: Final = "sweep:report_backfill"
INCIDENTS_SWEEP: Final = "sweep:incidents"

LATENESS: Final = Gauge(
    "syncworker_integrations_lateness",
    "Integrations expected to have fresh data, by provider and lateness (latest sweep)",
    ["provider", "lateness"],
    multiprocess_mode="mostrecent",
)
INCIDENT_OPEN: Final = Gauge(
    "syncworker_provider_incident_open",
    "1 while the provider has an open incident, else 0",
    ["provider"],
    multiprocess_mode="mostrecent",
)


def run_lateness_sweep(runtime: Runtime, every: timedelta | None = None) -> LatenessReport:
    """Judge every integration's lateness and announce the changes (SPEC §11).

    `every` is how often the beat runs it, for its liveness mark.
    """
    settings = runtime.settings
    rule = settings.lateness_rule()
    intervals = settings.intervals()
    grace = {provider: interval * rule.late_after for provider, interval in intervals.items()}
    now = runtime.clock.now()
    with runtime.sessions() as session, session.begin():
        covered = covered_providers(session, now=now, grace=grace)
        report = sweep_lateness(session, now=now, rule=rule, intervals=intervals, covered=covered)
        mark(
            session,
            LATENESS_SWEEP,
            now=now,
            every=every,
            late=report.announced_late,
            on_time=report.announced_on_time,
        )
    for provider in Provider:
        for flag in Lateness:
            LATENESS.labels(provider.value, flag.value).set(report.counts.get((provider, flag), 0))
    if report.announced_late or report.announced_on_time:
        log.info("lateness.swept", late=report.announced_late, on_time=report.announced_on_time)
    return report


def run_incident_sweep(runtime: Runtime, every: timedelta | None = None) -> list[IncidentChange]:
    """Open or close each provider's incident from its latest attempts (SPEC §11)."""
    settings = runtime.settings
    rule = settings.incident_rule()
    changes: list[IncidentChange] = []
    for provider, policy in settings.providers.items():
        with runtime.sessions() as session, session.begin():
            change = evaluate(
                session, provider, now=runtime.clock.now(), rule=rule, interval=policy.interval
            )
        if change is not None:
            changes.append(change)
            event = "incident.opened" if change.opened else "incident.closed"
            log.warning(event, provider=provider.value, incident_id=change.incident_id)
    with runtime.sessions() as session, session.begin():
        now = runtime.clock.now()
        mark(session, INCIDENTS_SWEEP, now=now, every=every, changed=len(changes))
        open_now = {incident.provider for incident in open_incidents(session)}
    for provider in Provider:
        INCIDENT_OPEN.labels(provider.value).set(1 if provider.value in open_now else 0)
    return changes


def run_report_backfill(runtime: Runtime, every: timedelta | None = None) -> int:
    """Rewind every report provider's cursors by its lookback window, batch by batch."""
    total, after = 0, None
    while True:
        with runtime.sessions() as session, session.begin():
            batch = backfill_reports(
                session, runtime.settings.providers, now=runtime.clock.now(), after=after
            )
        total += len(batch.rewound)
        if batch.last is None:
            break
        after = batch.last
    with runtime.sessions() as session, session.begin():
        mark(session, BACKFILL_SWEEP, now=runtime.clock.now(), every=every, changed=total)
    return total


def register(app: Celery) -> None:
    """Define the health sweeps on `app` under the names the beat schedule uses."""

    @app.task(name=LATENESS_TASK, shared=False)
    def sweep_lateness_task() -> dict[str, int]:
        report = run_lateness_sweep(runtime_of(app), expected_every(app, LATENESS_SWEEP))
        return {"late": report.announced_late, "on_time": report.announced_on_time}

    @app.task(name=RECOVERY_PROBES_TASK, shared=False)
    def sweep_recovery_probes_task() -> dict[str, int]:
        runtime = runtime_of(app)
        probed = run_recovery_probes(runtime)
        publisher = publisher_of(app)
        for done in probed:  # each change is committed: queue the recovered ones' syncs
            if done.change is not None and done.change.sync_now:
                publisher.sync_now(done.provider, done.integration_id)
        with runtime.sessions() as session, session.begin():
            now = runtime.clock.now()
            every = expected_every(app, RECOVERY_SWEEP)
            mark(session, RECOVERY_SWEEP, now=now, every=every, changed=len(probed))
        works = sum(done.result is ProbeResult.WORKS for done in probed)
        return {"probed": len(probed), "works": works}

    @app.task(name=REPORT_BACKFILL_TASK, shared=False)
    def sweep_report_backfill_task() -> int:
        runtime = runtime_of(app)
        return run_report_backfill(runtime, expected_every(app, BACKFILL_SWEEP))

    @app.task(name=INCIDENTS_TASK, shared=False)
    def sweep_incidents_task() -> int:
        return len(run_incident_sweep(runtime_of(app), expected_every(app, INCIDENTS_SWEEP)))
