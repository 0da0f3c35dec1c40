"""A provider outage against 1,000 integrations: one incident, not 1,000 alarms.

    .venv/bin/python benchmarks/incident.py [--postgres-url URL] [--quick]

One provider (Stripe, its fake over real HTTP on loopback), 1,000 integrations each
with its own key, on an accelerated clock (`ManualClock`, moved in steps): a normal
day, then the provider answers 401 to every key for four simulated days, then
recovers; meanwhile 10 of the keys are genuinely revoked from the outage on. The run
goes on to day 10, past the 72 hours the revoked keys need to expire after recovery.

Each step runs what the beat runs, on the production code paths: the provider's
dispatch tick (`scheduler.dispatch`), the syncs it published (`worker.sync`, eight at
a time, through the runtime's connector, budget and leases), the incident and
lateness sweeps (`worker.health`) and the 72-hour escalation. The baseline is the same
run's normal day: provider requests per simulated day before the outage, against the
same figure during it (the ratio the backoff must keep below 0.25).

Notifications are the outbox events a team is told about (`worker.events.notifies`):
status changes to QA or credentials_invalid, provider incidents, and lateness where the
status looks healthy. The PostgreSQL database's `public` schema is DROPPED and
recreated: never point it at a database you care about. Without a URL it runs on a
temporary SQLite file. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_database import fresh_postgres_schema  # a sibling: the scripts run as files
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fakes.stripe import FakeStripe
from models import migrate
from models.clock import ManualClock
from models.credentials import Keyring
from models.db import make_engine
from models.integrations import NewIntegration, create_integration, ensure_environment
from models.schema import Integration, OutboxEvent, ProviderIncident, StatusChange
from models.status import Provider, Status
from models.time_rules import escalate_auth_failures
from scheduler.dispatch import dispatch_tick
from scheduler.providers import ProviderPolicy
from worker.events import notifies
from worker.health import run_incident_sweep, run_lateness_sweep
from worker.logs import configure_logging
from worker.runtime import Runtime
from worker.settings import Settings
from worker.sync import sync_integration

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ENVIRONMENT = "env-bench"


@dataclass(frozen=True)
class Scale:
    integrations: int
    revoked: int
    days: int
    outage_from_day: int
    outage_days: int
    interval: timedelta  # the provider's sync interval (Stripe's override)
    step: timedelta  # how far the clock moves per beat step
    workers: int = 8


FULL = Scale(1000, 10, 10, 1, 4, timedelta(hours=6), timedelta(minutes=10))
QUICK = Scale(100, 10, 9, 1, 4, timedelta(hours=6), timedelta(minutes=20))


@dataclass
class Collector:
    """The publisher the dispatch tick hands its claimed ids to."""

    ids: list[uuid.UUID] = field(default_factory=list)

    def publish(self, policy: ProviderPolicy, integration_ids: Sequence[uuid.UUID]) -> None:
        self.ids.extend(integration_ids)

    def take(self) -> list[uuid.UUID]:
        taken, self.ids = self.ids, []
        return taken


def _database(postgres_url: str | None, folder: Path) -> str:
    if postgres_url:
        fresh_postgres_schema(postgres_url).dispose()
        return postgres_url
    url = f"sqlite:///{folder / 'incident.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def _runtime(url: str, folder: Path, fake: FakeStripe, scale: Scale) -> Runtime:
    settings = Settings.from_env(
        {
            "SYNCWORKER_DATABASE_URL": url,
            "SYNCWORKER_DATA_DIR": str(folder),
            "SYNCWORKER_CREDENTIAL_KEYS": f"bench:{Keyring.generate_key()}",
            "SYNCWORKER_STRIPE_INTERVAL": str(int(scale.interval.total_seconds())),
            "SYNCWORKER_STRIPE_BASE_URL": fake.url,
        }
    )
    return Runtime(settings, ManualClock(T0), slots=scale.workers)


def _populate(runtime: Runtime, fake: FakeStripe, scale: Scale) -> list[str]:
    """Established integrations, one key each; the keys, in integration order."""
    keys = [f"sk_test_bench{n:05d}" for n in range(scale.integrations)]
    now = runtime.clock.now()
    with runtime.sessions() as session, session.begin():
        ensure_environment(
            session, ENVIRONMENT, organization_id="org", name="bench", kind="production"
        )
        for n, key in enumerate(keys):
            fake.add_account(key, customers=1)
            spec = NewIntegration(
                environment_id=ENVIRONMENT,
                name=f"Customer {n}",
                identifier=f"customer-{n}",
                provider=Provider.STRIPE.value,
                credentials_sealed=runtime.keyring.seal({"secret_key": key}),
                filters={"objects": ["customers"]},
            )
            change = create_integration(session, spec, now=now)
            integration = session.get_one(Integration, change.integration_id)
            integration.first_sync_finished_at = now - DAY  # past QA: established customers
            integration.last_success_at = now
            # A real fleet was created over time: its syncs are spread over the interval.
            integration.next_sync_at = now + scale.interval * n / scale.integrations
    return keys


def _step(runtime: Runtime, collector: Collector, pool: ThreadPoolExecutor) -> int:
    """One beat step: dispatch, run the published syncs, then the sweeps. Syncs run."""
    policy = runtime.settings.providers[Provider.STRIPE]
    dispatch_tick(runtime.sessions, collector, policy, now=runtime.clock.now)
    due = collector.take()
    services = runtime.sync_services
    list(pool.map(lambda i: sync_integration(services, str(i), task_id=None), due))
    run_incident_sweep(runtime)
    run_lateness_sweep(runtime)
    with runtime.sessions() as session, session.begin():
        escalate_auth_failures(session, now=runtime.clock.now(), limit=10_000)
    return len(due)


def _phase(now: datetime, outage_start: datetime, outage_end: datetime) -> str:
    if now < T0 + DAY:
        return "baseline"  # the first full normal day
    if now < outage_start:
        return "normal"
    return "outage" if now < outage_end else "after"


def simulate(scale: Scale, postgres_url: str | None) -> dict[str, float]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, FakeStripe() as fake:
        folder = Path(tmp)
        runtime = _runtime(_database(postgres_url, folder), folder, fake, scale)
        keys = _populate(runtime, fake, scale)
        revoked = set(keys[: scale.revoked])
        clock = runtime.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("the benchmark moves a ManualClock")
        outage_start = T0 + DAY * scale.outage_from_day
        outage_end = outage_start + DAY * scale.outage_days
        requests: Counter[str] = Counter()
        syncs = 0
        collector = Collector()
        with ThreadPoolExecutor(scale.workers) as pool:
            while clock.now() < T0 + DAY * scale.days:
                now = clock.now()
                if now == outage_start:
                    fake.fail_next(10**9, status=401)  # every key, every request
                    for key in revoked:
                        fake.revoke(key)
                if now == outage_end:
                    fake.clear_script()  # the provider recovers; the revoked keys stay so
                syncs += _step(runtime, collector, pool)
                requests[_phase(now, outage_start, outage_end)] += len(fake.requests)
                fake.clear_log()
                clock.advance(scale.step)
        figures = _figures(runtime, revoked, keys, outage_start, outage_end)
        runtime.close()
    baseline = requests["baseline"] / 1.0
    during = requests["outage"] / scale.outage_days
    figures.update(
        {
            "syncs_run_count": syncs,
            "provider_requests_normal_per_day": baseline,
            "provider_requests_during_incident_per_day": during,
            "provider_requests_during_incident_over_normal": during / baseline,
            "simulated_days": scale.days,
            "wall_s": time.perf_counter() - started,
        }
    )
    return figures


def _figures(
    runtime: Runtime,
    revoked: set[str],
    keys: list[str],
    outage_start: datetime,
    outage_end: datetime,
) -> dict[str, Any]:
    with runtime.sessions() as session:
        key_of = _keys_by_integration(session, keys)
        invalid = [
            key_of[i]
            for i in session.scalars(
                select(StatusChange.integration_id).where(
                    StatusChange.to_status == Status.CREDENTIALS_INVALID.value
                )
            )
        ]
        to_qa = session.scalar(
            select(func.count()).where(StatusChange.to_status == Status.QUALITY_ASSURANCE.value)
        )
        events = session.execute(select(OutboxEvent.kind, OutboxEvent.payload)).all()
        incidents = list(session.scalars(select(ProviderIncident).order_by(ProviderIncident.id)))
    by_kind = Counter(kind for kind, _ in events)
    first = incidents[0] if incidents else None
    closed = first.closed_at if first else None
    return {
        "credentials_invalid_wrongly": sum(1 for key in invalid if key not in revoked),
        "credentials_invalid_rightly": len({key for key in invalid if key in revoked}),
        "notifications_sent": sum(1 for kind, data in events if notifies(kind, data)),
        "quality_assurance_wrongly": to_qa or 0,
        "incidents_opened_count": len(incidents),
        "incident_opened_after_outage_min": (
            (first.opened_at - outage_start).total_seconds() / 60 if first else None
        ),
        "incident_closed_after_recovery_min": (
            (closed - outage_end).total_seconds() / 60 if closed else None
        ),
        "late_events_count": by_kind["integration.late"],
        "status_change_events_count": by_kind["integration.status_changed"],
    }


def _keys_by_integration(session: Session, keys: list[str]) -> dict[uuid.UUID, str]:
    ids = session.execute(select(Integration.identifier, Integration.id)).all()
    return {
        integration_id: keys[int(identifier.split("-")[1])] for identifier, integration_id in ids
    }


TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "credentials_invalid_wrongly": ("== 0", lambda v: v == 0),
    "credentials_invalid_rightly": ("== 10", lambda v: v == 10),
    "notifications_sent": ("== 12", lambda v: v == 12),
    "quality_assurance_wrongly": ("== 0", lambda v: v == 0),
    "incidents_opened_count": ("== 1", lambda v: v == 1),
    "provider_requests_during_incident_over_normal": ("< 0.25", lambda v: v < 0.25),
}


def print_table(figures: dict[str, Any]) -> None:
    print(f"{'figure':46} {'value':>12} {'target':>8}  met?")
    for name, value in figures.items():
        target, check = TARGETS.get(name, ("", None))
        shown = "-" if value is None else f"{value:,.3f}".rstrip("0").rstrip(".")
        met = "" if check is None or value is None else ("yes" if check(value) else "NO")
        print(f"{name:46} {shown:>12} {target:>8}  {met}")


def main(argv: list[str] | None = None) -> int:
    configure_logging(level="WARNING")  # the incident's own lines, not every sync's
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="PostgreSQL database whose public schema is DROPPED and recreated",
    )
    parser.add_argument("--quick", action="store_true", help="100 integrations, for a smoke test")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    print(
        f"{scale.integrations} stripe integrations ({scale.revoked} revoked), "
        f"{scale.days} simulated days in {scale.step} steps, 401 to every key from day "
        f"{scale.outage_from_day} for {scale.outage_days} days, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}, {'PostgreSQL' if args.postgres_url else 'SQLite'}"
    )
    figures = simulate(scale, args.postgres_url)
    print_table(figures)
    print(json.dumps({k: v if v is None else round(v, 3) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
