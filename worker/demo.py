"""The guided tour: integrations on nine providers, scripted behaviours, an accelerated clock.

`syncworker demo` starts local fakes of the provider APIs, seeds one integration per
behaviour (each on another provider), runs a real worker and beat on the embedded default,
and prints every status change as it happens. One real second is two simulated hours by
default, so the three-day auth escalation lands after about 36 seconds and the two-week
development rule after under three minutes. Steps that need their integration in a
certain state wait for it, so a faster clock (the test's) plays the same story.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from textwrap import shorten
from typing import Any, Final

import click
from celery import Celery
from celery.beat import EmbeddedService
from celery.worker import state as worker_state
from sqlalchemy import select

from models import migrate
from models.clock import AcceleratedClock, Clock
from models.errors import SyncWorkerError
from models.incidents import open_incident
from models.integrations import ensure_environment
from models.notices import (
    CREDENTIALS_RECOVERED_EVENT,
    INCIDENT_CLOSED_EVENT,
    INCIDENT_OPENED_EVENT,
    LATE_EVENT,
    ON_TIME_EVENT,
)
from models.schema import Integration, OutboxEvent, StatusChange, SyncRun
from models.status import API_STATUS, ApiStatus, Provider, Status
from scheduler.beat import Cadence
from worker.app import create_app
from worker.connectors.errors import WebhookRejected
from worker.connectors.webhooks import ingest_webhook
from worker.demo_script import (
    FILTERS,
    FLEET,
    OUTAGE,
    OUTAGE_NAME,
    SCENARIOS,
    Delivery,
    Fakes,
    Step,
    fleet_accounts,
    start_fakes,
)
from worker.logs import configure_logging
from worker.operator import Operator
from worker.publish import CeleryPublisher
from worker.queues import queue_depths
from worker.runtime import Runtime
from worker.settings import Settings

# One real second is this many simulated seconds: two hours.
DEFAULT_SPEED: Final = 7200.0
# The tour ends two days after the dev rule fires, so every status has been shown.
DEFAULT_HOURS: Final = 350.0
# Ticks and sweeps every real second or two: hours of simulated time. Not faster at a faster
# clock: the embedded broker passes a few dozen messages a second, and every tick is nine.
DEMO_CADENCE: Final = Cadence(
    tick=timedelta(seconds=1),
    auth_escalation=timedelta(seconds=2),
    dev_inactivity=timedelta(seconds=2),
    reap=timedelta(seconds=5),
    deliver_events=timedelta(seconds=1),
    lateness=timedelta(seconds=1),
    incidents=timedelta(seconds=1),
    recovery_probes=timedelta(seconds=5),
)
# The demo syncs every six simulated hours: an incident's window must hold a sync of
# each integration, so it spans more than one interval, and on a fast clock (a test's)
# several real seconds, since the worker lags a clock that runs that fast.
DEMO_INCIDENT_WINDOW_S: Final = 8 * 3600
DEMO_INCIDENT_WINDOW_REAL_S: Final = 6
# The health events the tour prints beside the status changes, in words.
NOTICES: Final[dict[str, str]] = {
    INCIDENT_OPENED_EVENT: "provider incident opened",
    INCIDENT_CLOSED_EVENT: "provider incident closed",
    LATE_EVENT: "late: no successful sync for twice its interval",
    ON_TIME_EVENT: "on time again",
    CREDENTIALS_RECOVERED_EVENT: "its stored credentials work again",
}
# A failed sync is retried within four simulated hours (two real seconds by default).
RETRY_CAP_H: Final = 4.0
# Every demo integration syncs every six simulated hours (three real seconds).
DEMO_INTERVAL_S: Final = 6 * 3600
# Request budgets count real seconds while the clock runs thousands of times faster: at the
# providers' real rates one month of App Store reports (60 requests at 0.8/s) would take
# days of the story. The fakes have no limits, so the demo's keys may spend this freely.
DEMO_RATE_PER_S: Final = 1000
# Simulated time stands still while more messages than this wait for or sit with the worker (a busy
# machine would otherwise skip syncs by the simulated hour), and runs again at this many.
HOLD_BACKLOG: Final = 12
RESUME_BACKLOG: Final = 2
# At the end, the worker gets this long (real seconds) to finish what it holds.
DRAIN_TIMEOUT_S: Final = 15.0
# The tour looks for status changes (and due steps) this often, in real seconds.
PRINT_EVERY_S: Final = 0.25
ACTOR: Final = "ops@example.com"
ARROW: Final = "->"
# A status change's trigger and reason are cut to this, so each change stays one line.
WHY_WIDTH: Final = 90
# Whether the tour has shown enough, given the statuses each scenario has moved to so far.
Progress = Callable[[Mapping[str, Sequence[Status]]], bool]
# Something to run beside the tour over its runtime and operator service, for as long as
# the tour lasts (the API package serves the integrations page this way; the worker
# package never imports it).
Beside = Callable[[Runtime, Operator], AbstractContextManager[object]]
PROVIDERS: Final[dict[str, Provider]] = {s.name: s.provider for s in SCENARIOS}


def label(name: str) -> str:
    """A scenario as the story names it: `warnings (shopify)`."""
    return f"{name} ({PROVIDERS[name]})" if name in PROVIDERS else name


LABEL_WIDTH: Final = max(len(label(name)) for name in PROVIDERS)


@dataclass(frozen=True)
class Ending:
    """Where one scenario's integration ended up, and every status it moved to on the way."""

    name: str
    provider: Provider
    status: Status
    api_status: ApiStatus
    reached: tuple[Status, ...]


@dataclass(frozen=True)
class TourSummary:
    """What a tour showed: each scenario's ending, and any bug a fake's handlers hit."""

    endings: tuple[Ending, ...]
    fake_errors: tuple[str, ...] = ()

    @property
    def reached(self) -> frozenset[Status]:
        """Every status some integration moved to during the tour."""
        return frozenset(status for ending in self.endings for status in ending.reached)


@dataclass
class Tour:
    """A running demo: the cast's integration ids and the simulated clock's origin."""

    runtime: Runtime
    operator: Operator
    fakes: Fakes
    started: datetime
    ids: dict[str, str] = field(default_factory=dict)  # scenario name -> integration id
    reached: dict[str, list[Status]] = field(default_factory=dict)  # as printed so far
    synced: set[str] = field(default_factory=set)  # scenarios whose first sync finished
    noticed: set[uuid.UUID] = field(default_factory=set)  # health events printed

    def operator_action(self, action: str, name: str, **kwargs: Any) -> None:
        """Act as an operator would; an action that does not apply is told, not raised."""
        method = getattr(self.operator, action)
        try:
            result = method(self.ids[name], actor=ACTOR, **kwargs)
        except SyncWorkerError as exc:
            self.say(name, f"{action} refused: {exc}")
            return
        if not result.ok:
            self.say(name, result.message)

    def api_request(self, name: str) -> None:
        self.operator.record_api_request(self.ids[name])

    def has_synced(self, name: str) -> bool:
        return name in self.synced

    def incident_open(self, provider: Provider) -> bool:
        with self.runtime.sessions() as session:
            return open_incident(session, provider) is not None

    def webhook(self, name: str, delivery: Delivery, *, secret: str) -> None:
        """Deliver a signed webhook to the integration, as the provider would."""
        # Signed and checked at one instant: on a fast clock the replay window is milliseconds.
        now = self.runtime.clock.now()
        headers, body = delivery(now)
        sessions, integration_id = self.runtime.sessions, self.ids[name]
        try:
            ingest_webhook(
                sessions, integration_id, PROVIDERS[name], headers, body, secret=secret, now=now
            )
        except (WebhookRejected, SyncWorkerError) as exc:
            self.say(name, f"webhook not stored: {exc}")

    def say(self, name: str, message: str) -> None:
        click.echo(f"{self.stamp()}  {label(name)}: {message}")

    def hours(self, at: datetime | None = None) -> float:
        return ((at or self.runtime.clock.now()) - self.started).total_seconds() / 3600

    def stamp(self, at: datetime | None = None) -> str:
        hours = self.hours(at)
        return f"day {int(hours // 24) + 1:>2} {int(hours % 24):02d}:00"


def demo_settings(data_dir: Path, fakes: Fakes, speed: float) -> Settings:
    """The embedded default in `data_dir`, pointed at the fakes, on a fast clock."""
    env = {
        "SYNCWORKER_DATA_DIR": str(data_dir),
        "SYNCWORKER_LOG_LEVEL": "ERROR",
        "SYNCWORKER_ALLOW_LOOPBACK_HOSTS": "true",  # the fakes listen on 127.0.0.1
    }
    for provider, url in fakes.base_urls().items():
        env[f"SYNCWORKER_{provider.value.upper()}_BASE_URL"] = url
        env[f"SYNCWORKER_{provider.value.upper()}_INTERVAL"] = str(DEMO_INTERVAL_S)
        env[f"SYNCWORKER_{provider.value.upper()}_RATE"] = str(DEMO_RATE_PER_S)
        env[f"SYNCWORKER_{provider.value.upper()}_BURST"] = str(DEMO_RATE_PER_S)
    return replace(
        Settings.from_env(env),
        clock_speed=speed,
        max_retries=1,
        max_retry_delay_s=round(RETRY_CAP_H * 3600 / speed),
        worker_concurrency=8,
        incident_window_s=max(DEMO_INCIDENT_WINDOW_S, round(DEMO_INCIDENT_WINDOW_REAL_S * speed)),
    )


def seed(tour: Tour, accounts: dict[str, dict[str, str]]) -> None:
    """Create the cast's environments and integrations, with `accounts`' credentials."""
    with tour.runtime.sessions() as session, session.begin():
        for kind in ("production", "development"):
            ensure_environment(
                session, f"demo-{kind}", organization_id="demo-org", name=f"Demo {kind}", kind=kind
            )
    for scenario in SCENARIOS:
        try:
            created = tour.operator.create(
                environment_id=f"demo-{scenario.environment}",
                name=scenario.name,
                identifier=scenario.name,
                provider=scenario.provider.value,
                credentials=accounts[scenario.name],
                filters=scenario.filters,
                configurations=scenario.configurations,
                actor="demo",
            )
        except SyncWorkerError as exc:
            click.echo(f"{label(scenario.name)}: left out, it could not be created: {exc}")
            continue
        tour.ids[scenario.name] = str(created.integration_id)
    for name in FLEET:
        created = tour.operator.create(
            environment_id="demo-production",
            name=name,
            identifier=name,
            provider=Provider.STRIPE.value,
            credentials=accounts[name],
            filters=FILTERS[Provider.STRIPE],
            actor="demo",
        )
        tour.ids[name] = str(created.integration_id)


def run_tour(
    data_dir: Path,
    *,
    speed: float,
    hours: float,
    until: Progress | None = None,
    beside: Beside | None = None,
) -> TourSummary:
    """Run the whole demo and print what happens; returns when the simulated time is up.

    `until` ends the tour sooner, once it holds for the statuses each scenario has reached
    (a test stops as soon as the story is told, however slow its machine). `beside` is
    entered once the runtime is up, before the cast is seeded, and left when the tour ends.
    """
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
        # Opened before the story starts: generating their keys takes a moment.
        today = runtime.clock.now().date()
        accounts = {s.name: s.account(fakes, today) for s in SCENARIOS} | fleet_accounts(fakes)
        operator = Operator(
            runtime,
            publisher.sync_now,
            queue_depths=lambda: queue_depths(app),
            broker_url=str(app.conf.broker_url),
        )
        tour = Tour(runtime, operator, fakes, runtime.clock.now())
        _intro(speed, hours)
        if beside is not None:
            stack.enter_context(beside(runtime, operator))
        seed(tour, accounts)
        seen = _print_changes(tour, 0)
        # Before the worker starts: these come ahead of each integration's first sync.
        for scenario in SCENARIOS:
            if scenario.on_created is not None and scenario.name in tour.ids:
                _run(tour, scenario.name, scenario.on_created)
        with ExitStack() as running:
            _start_worker_and_beat(app, running)
            backlog = _backlog_of(app)
            seen = _play(tour, hours, seen, until or (lambda _: False), backlog)
        _print_changes(tour, seen)  # what finished while the worker stopped
        endings = _endings(tour)
    summary = TourSummary(endings, _fake_errors(fakes))
    _print_summary(summary)
    return summary


def _intro(speed: float, hours: float) -> None:
    click.echo(
        f"syncworker demo: {len(SCENARIOS)} integrations on {len(set(PROVIDERS.values()))} "
        f"providers and a fleet of {len(FLEET)} on stripe (a provider incident), against "
        f"local fakes; 1 s = {speed / 3600:g} simulated hours, "
        f"{hours / 24:.1f} simulated days (about {hours * 3600 / speed:.0f} s).\n"
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
    # Stopped in reverse: beat first, then the worker once it has nothing in hand, so the
    # embedded broker never has to restore unacknowledged messages (kombu's SQLAlchemy
    # transport can fail to, from several threads at once, and dump them to a file).
    stack.callback(_drain, _backlog_of(app))
    beat = EmbeddedService(app, thread=True, scheduler_cls=app.conf.beat_scheduler)
    beat.start()
    stack.callback(beat.stop)


def _drain(backlog: Callable[[], int]) -> None:
    """Wait (a bounded while) until no message waits and the worker holds none."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if backlog() == 0:
            return
        time.sleep(PRINT_EVERY_S)


def _backlog_of(app: Celery) -> Callable[[], int]:
    """Messages not yet done: waiting on the queues, and taken by the (in-process) worker."""

    def backlog() -> int:
        waiting = sum(depth or 0 for depth in queue_depths(app).values())
        return waiting + len(worker_state.reserved_requests)

    return backlog


def _keep_pace(clock: Clock, backlog: int) -> None:
    """Hold simulated time while the worker is behind; let it run once it has caught up."""
    if not isinstance(clock, AcceleratedClock):
        return
    if backlog > HOLD_BACKLOG:
        clock.hold()
    elif backlog <= RESUME_BACKLOG:
        clock.resume()


def _play(tour: Tour, hours: float, seen: int, until: Progress, backlog: Callable[[], int]) -> int:
    """Run the steps when due and print status changes until `hours`; the last change seen."""
    scripted = [(s.name, step) for s in SCENARIOS if s.name in tour.ids for step in s.steps]
    pending = sorted(scripted + [(OUTAGE_NAME, step) for step in OUTAGE], key=lambda i: i[1].hour)
    stop = threading.Event()
    while tour.hours() < hours and not until(tour.reached):
        ready = [item for item in pending if _ready(tour, *item)]
        pending = [item for item in pending if item not in ready]
        for name, step in ready:
            _run(tour, name, step)
        seen = _print_changes(tour, seen)
        _print_notices(tour)
        _note_syncs(tour)
        _keep_pace(tour.runtime.clock, backlog())
        stop.wait(PRINT_EVERY_S)
    if isinstance(tour.runtime.clock, AcceleratedClock):
        tour.runtime.clock.resume()
    return seen


def _ready(tour: Tour, name: str, step: Step) -> bool:
    """Whether a step is due: its hour has come and its integration is where it waits for."""
    return (
        step.hour <= tour.hours()
        and (not step.after_first_sync or name in tour.synced)
        and (step.after is None or step.after in tour.reached.get(name, ()))
        and (step.when is None or step.when(tour))
    )


def _note_syncs(tour: Tour) -> None:
    names = {v: k for k, v in tour.ids.items()}
    with tour.runtime.sessions() as session:
        finished = session.scalars(
            select(SyncRun.integration_id).where(SyncRun.finished_at.is_not(None)).distinct()
        ).all()
    tour.synced.update(names[str(i)] for i in finished if str(i) in names)


def _run(tour: Tour, name: str, step: Step) -> None:
    if step.text:
        click.secho(f"{tour.stamp()}  ~ {label(name)}: {step.text}", dim=True)
    step.action(tour)


def _print_changes(tour: Tour, after: int) -> int:
    names = {v: k for k, v in tour.ids.items()}
    with tour.runtime.sessions() as session:
        rows = session.scalars(
            select(StatusChange).where(StatusChange.id > after).order_by(StatusChange.id)
        ).all()
    for row in rows:
        name = names.get(str(row.integration_id), str(row.integration_id)[:8])
        tour.reached.setdefault(name, []).append(Status(row.to_status))
        move = f"{row.from_status or 'new'} {ARROW} {row.to_status}"
        why = shorten(
            row.trigger + (f": {row.reason}" if row.reason else ""), WHY_WIDTH, placeholder=" ..."
        )
        click.echo(f"{tour.stamp(row.at)}  {label(name):<{LABEL_WIDTH}} {move:<36} {why}")
    return rows[-1].id if rows else after


def _print_notices(tour: Tour) -> None:
    """Print the health events (incidents, lateness) not printed yet, oldest first."""
    names = {v: k for k, v in tour.ids.items()}
    with tour.runtime.sessions() as session:
        rows = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.kind.in_(list(NOTICES)))
            .order_by(OutboxEvent.created_at)
        ).all()
    for row in rows:
        if row.id in tour.noticed:
            continue
        tour.noticed.add(row.id)
        data = row.payload
        if row.integration_id is None:
            who = str(data.get("provider"))
            detail = f" ({data.get('kind')}: {data.get('integrationsFailing')} of "
            detail += f"{data.get('integrationsSeen')} integrations failing)"
        else:
            who, detail = label(names.get(str(row.integration_id), "?")), ""
        click.echo(f"{tour.stamp(row.created_at)}  {who}: {NOTICES[row.kind]}{detail}")


def _endings(tour: Tour) -> tuple[Ending, ...]:
    """Each scenario's final status, and the statuses it moved to (all printed by now)."""
    with tour.runtime.sessions() as session:
        final = {str(i.id): Status(i.status) for i in session.scalars(select(Integration))}
    endings = []
    for scenario in (s for s in SCENARIOS if s.name in tour.ids):
        status = final[tour.ids[scenario.name]]
        passed = tuple(tour.reached.get(scenario.name, ()))
        endings.append(Ending(scenario.name, scenario.provider, status, API_STATUS[status], passed))
    return tuple(endings)


def _fake_errors(fakes: Fakes) -> tuple[str, ...]:
    errors = ((provider, fake.errors) for provider, fake in fakes.by_provider().items())
    return tuple(f"{provider}: {exc!r}" for provider, found in errors for exc in found)


def _print_summary(summary: TourSummary) -> None:
    click.echo("\nwhere everything ended up:")
    for ending in summary.endings:
        click.echo(
            f"  {label(ending.name):<{LABEL_WIDTH}} {ending.status:<20} API: {ending.api_status}"
        )
    for error in summary.fake_errors:
        click.echo(f"a fake provider's handler failed (a bug in the fake): {error}")
