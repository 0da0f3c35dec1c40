"""The guided tour: integrations with scripted behaviours on an accelerated clock.

`syncworker demo` starts local fakes of the provider APIs, seeds one integration
per behaviour, runs a real worker and beat on the embedded default, and prints
every status change as it happens. One real second is two simulated hours by
default, so the three-day auth escalation lands after about 36 seconds and the
two-week development rule after under three minutes.
"""

from __future__ import annotations

import shutil
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import click
from celery import Celery
from celery.beat import EmbeddedService
from sqlalchemy import select

from models import migrate
from models.integrations import ensure_environment
from models.schema import Integration, StatusChange
from models.status import API_STATUS, Status
from scheduler.beat import Cadence
from worker.celery import create_app
from worker.demo_script import SCENARIOS, Fakes, start_fakes
from worker.logs import configure_logging
from worker.operator import Operator
from worker.publish import CeleryPublisher
from worker.runtime import Runtime
from worker.settings import Settings

# One real second is this many simulated seconds: two hours.
DEFAULT_SPEED: Final = 7200.0
# The tour ends two days after the dev rule fires, so every status has been shown.
DEFAULT_HOURS: Final = 350.0
# Ticks and sweeps every real second or two: hours of simulated time.
DEMO_CADENCE: Final = Cadence(
    tick=timedelta(seconds=1),
    auth_escalation=timedelta(seconds=2),
    dev_inactivity=timedelta(seconds=2),
    reap=timedelta(seconds=5),
    deliver_events=timedelta(seconds=1),
)
# Every demo integration syncs every six simulated hours (three real seconds).
DEMO_INTERVAL_S: Final = 6 * 3600
ARROW: Final = "->"


@dataclass
class Tour:
    """A running demo: the cast's integration ids and the simulated clock's origin."""

    runtime: Runtime
    operator: Operator
    fakes: Fakes
    started: datetime
    ids: dict[str, str] = field(default_factory=dict)  # scenario name -> integration id

    def integration_id(self, name: str) -> str:
        return self.ids[name]

    def operator_action(self, action: str, name: str, **kwargs: Any) -> None:
        method = getattr(self.operator, action)
        actor = "ops@example.com"
        result = method(self.ids[name], actor=actor, **kwargs)
        if not result.ok:
            click.echo(f"{self.stamp()}  {name}: {result.message}")

    def api_request(self, name: str) -> None:
        self.operator.record_api_request(self.ids[name])

    def hours(self, at: datetime | None = None) -> float:
        return ((at or self.runtime.clock.now()) - self.started).total_seconds() / 3600

    def stamp(self, at: datetime | None = None) -> str:
        hours = self.hours(at)
        return f"day {int(hours // 24) + 1:>2} {int(hours % 24):02d}:00"


def demo_settings(data_dir: Path, fakes: Fakes, speed: float) -> Settings:
    """The embedded default in `data_dir`, pointed at the fakes, on a fast clock."""
    env = {"SYNCWORKER_DATA_DIR": str(data_dir), "SYNCWORKER_LOG_LEVEL": "ERROR"}
    for provider, url in fakes.base_urls().items():
        env[f"SYNCWORKER_{provider.value.upper()}_BASE_URL"] = url
        env[f"SYNCWORKER_{provider.value.upper()}_INTERVAL"] = str(DEMO_INTERVAL_S)
    return replace(
        Settings.from_env(env),
        clock_speed=speed,
        max_retries=1,
        max_retry_delay_s=2,
        worker_concurrency=8,
    )


def seed(tour: Tour) -> None:
    """Create the cast's environments and integrations."""
    with tour.runtime.sessions() as session, session.begin():
        for kind in ("production", "development"):
            ensure_environment(
                session, f"demo-{kind}", organization_id="demo-org", name=f"Demo {kind}", kind=kind
            )
    for scenario in SCENARIOS:
        created = tour.operator.create(
            environment_id=f"demo-{scenario.environment}",
            name=scenario.name,
            identifier=scenario.name,
            provider=scenario.provider.value,
            credentials=scenario.credentials,
            filters=scenario.filters,
            actor="demo",
        )
        tour.ids[scenario.name] = str(created.integration_id)


def run_tour(data_dir: Path, *, speed: float, hours: float) -> None:
    """Run the whole demo and print what happens; returns when the simulated time is up."""
    shutil.rmtree(data_dir, ignore_errors=True)
    # The tour prints status changes itself; only errors are worth a log line here.
    configure_logging("console", "ERROR")
    with ExitStack() as stack:
        fakes = start_fakes(stack)
        settings = demo_settings(data_dir, fakes, speed)
        runtime = Runtime.from_settings(settings)
        stack.callback(runtime.close)
        migrate.upgrade(runtime.engine)
        app = create_app(settings, cadence=DEMO_CADENCE, runtime=runtime)
        publisher = CeleryPublisher(app, settings.providers)
        tour = Tour(runtime, Operator(runtime, publisher.sync_now), fakes, runtime.clock.now())
        _intro(speed, hours)
        seed(tour)
        _start_worker_and_beat(app, stack)
        _play(tour, hours)
        _summary(tour)


def _intro(speed: float, hours: float) -> None:
    click.echo(
        f"syncworker demo: {len(SCENARIOS)} integrations against local fake providers; "
        f"1 s = {speed / 3600:g} simulated hours, {hours / 24:.1f} simulated days "
        f"(about {hours * 3600 / speed:.0f} s).\n"
    )


def _start_worker_and_beat(app: Celery, stack: ExitStack) -> None:
    # Pool threads resolve task names through the default app (as `celery worker` sets up).
    app.set_current()
    app.set_default()
    queues = [q.name for q in app.conf.task_queues]
    worker = app.WorkController(
        pool="threads",
        concurrency=8,
        queues=queues,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="demo-worker", daemon=True)
    thread.start()
    stack.callback(thread.join, 10)
    stack.callback(worker.stop)
    beat = EmbeddedService(app, thread=True)
    beat.start()
    stack.callback(beat.stop)


def _play(tour: Tour, hours: float) -> None:
    """Run the scenarios' steps at their hours and print status changes until `hours`."""
    pending = sorted(
        ((hour, text, action) for s in SCENARIOS for hour, text, action in s.steps),
        key=lambda step: step[0],
    )
    seen = 0
    stop = threading.Event()
    while tour.hours() < hours:
        while pending and pending[0][0] <= tour.hours():
            _, text, action = pending.pop(0)
            if text:
                click.secho(f"{tour.stamp()}  ~ {text}", dim=True)
            action(tour)
        seen = _print_changes(tour, seen)
        stop.wait(0.25)
    _print_changes(tour, seen)


def _print_changes(tour: Tour, after: int) -> int:
    names = {v: k for k, v in tour.ids.items()}
    with tour.runtime.sessions() as session:
        rows = session.scalars(
            select(StatusChange).where(StatusChange.id > after).order_by(StatusChange.id)
        ).all()
    for row in rows:
        name = names.get(str(row.integration_id), str(row.integration_id)[:8])
        move = f"{row.from_status or 'new'} {ARROW} {row.to_status}"
        why = row.trigger + (f": {row.reason}" if row.reason else "")
        click.echo(f"{tour.stamp(row.at)}  {name:<18} {move:<40} {why[:90]}")
    return rows[-1].id if rows else after


def _summary(tour: Tour) -> None:
    click.echo("\nwhere everything ended up:")
    with tour.runtime.sessions() as session:
        integrations = session.scalars(select(Integration).order_by(Integration.created_at)).all()
    names = {v: k for k, v in tour.ids.items()}
    for integration in integrations:
        api = API_STATUS[Status(integration.status)].value
        click.echo(f"  {names[str(integration.id)]:<18} {integration.status:<20} API: {api}")
