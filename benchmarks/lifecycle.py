"""How fast the lifecycle runs, and what it costs to attach an integration to it.

    .venv/bin/python benchmarks/lifecycle.py [--postgres-url URL] [--quick]

Measures, single-threaded on this machine: triggers per second on the shared
machine; the cost of attaching an integration (`subject_of`) against the
baseline we avoid (a `transitions.Machine` per integration) and a shared
machine's `add_model` + `remove_model`; memory per attached integration and per
machine; and status changes per second through SQLite and, when a URL is given
(or BENCH_DATABASE_URL is set), PostgreSQL. The PostgreSQL database's `public`
schema is DROPPED and recreated: never point it at a database you care about.

Each figure is the median of a few timed repeats after a warm-up. The last line
printed is one JSON object with every figure, its unit in its key.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy
import transitions
from bench_checks import require  # siblings: the scripts run as files
from bench_database import fresh_postgres_schema
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from models import migrate
from models.changes import apply_trigger, subject_of
from models.clock import ManualClock
from models.db import lock_integration, make_engine, make_sessionmaker
from models.integrations import NewIntegration, create_integration, ensure_environment
from models.lifecycle import LIFECYCLE, TRANSITIONS, Subject
from models.schema import Environment, Integration, StatusChange
from models.status import EnvironmentKind, Status, SyncOutcome, Trigger
from models.sync_runs import RunStart, SyncResult, finish_run, start_run

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
# The shared machine's states and transitions, for the two baselines built from them.
MACHINE_TABLE: dict[str, Any] = {
    "states": [s.value for s in Status],
    "transitions": TRANSITIONS,
    "auto_transitions": False,
    "send_event": True,
}
# One lap through the lifecycle, back to `active`: sync results, the three-day auth
# escalation, re-keying, a first sync that goes to QA and its resolution, a pause.
LAP: list[tuple[Trigger, datetime, dict[str, Any]]] = [
    (Trigger.SYNC_SUCCEEDED_WITH_WARNINGS, T0, {}),
    (Trigger.SYNC_FAILED, T0, {}),
    (Trigger.SYNC_AUTH_FAILED, T0, {}),
    (Trigger.SYNC_AUTH_FAILED, T0 + H, {}),
    (Trigger.EXPIRE_CREDENTIALS, T0 + 73 * H, {}),
    (Trigger.UPDATE_CREDENTIALS, T0 + 74 * H, {}),
    (Trigger.SYNC_FAILED, T0 + 74 * H, {"first_sync": True}),
    (Trigger.RESOLVE_QA, T0 + 75 * H, {}),
    (Trigger.DEACTIVATE, T0 + 76 * H, {}),
    (Trigger.REACTIVATE, T0 + 77 * H, {}),
    (Trigger.SYNC_SUCCEEDED, T0 + 78 * H, {}),
]
TARGETS = {"pure_triggers_per_s": (">= 50,000", 50_000.0), "attach_us": ("<= 5", 5.0)}
UNITS = {"_per_s": "/s", "_us": "µs", "_over_attach": "x", "bytes_per_": "B"}
Trial = Callable[[], tuple[int, float]]  # runs once; returns (operations, seconds)


@dataclass(frozen=True)
class Scale:
    """How much work each measurement does; `--quick` shrinks it for a smoke run."""

    repeats: int
    laps: int
    attaches: int
    machines: int
    subjects_in_memory: int
    machines_in_memory: int
    db_seconds: float  # each database repeat runs this long, whatever the backend's speed


FULL = Scale(5, 2_000, 200_000, 1_000, 10_000, 500, 1.5)
QUICK = Scale(3, 200, 20_000, 100, 2_000, 50, 0.3)


def median_rate(trial: Trial, repeats: int) -> float:
    """Operations per second: one warm-up run, then the median of `repeats` timed runs.

    As in `timeit`, the garbage collector is paused while a run is timed and collects
    between runs: otherwise the reference cycles a Machine per instance leaves behind
    make its figure depend on how many happen to be alive (3-4x slower with 1,000),
    and the comparison would flatter the shared machine.
    """
    trial()
    rates = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            ops, seconds = trial()
        finally:
            gc.enable()
        rates.append(ops / seconds)
    return statistics.median(rates)


def transient_integrations(count: int) -> list[Integration]:
    """Integrations as loaded rows look, with their environment, never flushed."""
    environment = Environment(id="env-bench", organization_id="org", name="b", kind="production")
    fixed: dict[str, Any] = {
        "environment": environment, "organization_id": "org", "provider": "stripe",
        "status": Status.ACTIVE.value, "filters": {"objects": ["customers"]}, "created_at": T0,
        "updated_at": T0, "status_changed_at": T0, "last_api_request_at": T0,
    }  # fmt: skip
    return [
        Integration(id=uuid.uuid4(), name=f"bench {i}", identifier=f"bench-{i}", **fixed)
        for i in range(count)
    ]


def pure_triggers(scale: Scale) -> float:
    """Triggers per second fired on the shared machine, lap after lap."""
    subjects = [
        Subject(uuid.uuid4(), Status.ACTIVE.value, True, kind, T0)
        for kind in EnvironmentKind
        for _ in range(50)
    ]
    rounds, fire = max(scale.laps // len(subjects), 1), LIFECYCLE.fire

    def trial() -> tuple[int, float]:
        start = time.perf_counter()
        for _ in range(rounds):
            for subject in subjects:
                for trigger, now, facts in LAP:
                    fire(subject, trigger, now=now, **facts)
        seconds = time.perf_counter() - start
        require(all(s.state == Status.ACTIVE for s in subjects), "a lap must end where it began")
        return rounds * len(subjects) * len(LAP), seconds

    return median_rate(trial, scale.repeats)


def attach(scale: Scale) -> float:
    """Microseconds to attach an integration: build its Subject with `subject_of`."""
    pool = transient_integrations(1_000)
    rounds = max(scale.attaches // len(pool), 1)

    def trial() -> tuple[int, float]:
        start = time.perf_counter()
        for _ in range(rounds):
            for integration in pool:
                subject_of(integration)
        return rounds * len(pool), time.perf_counter() - start

    return 1e6 / median_rate(trial, scale.repeats)


class PlainModel:
    """A model a per-integration Machine can decorate with its trigger methods."""

    state: str


def machine_for(model: PlainModel) -> transitions.Machine:
    """The baseline we avoid: a Machine built per integration from the same table."""
    return transitions.Machine(model=model, initial=Status.ACTIVE.value, **MACHINE_TABLE)


def machine_per_instance(scale: Scale) -> float:
    """Microseconds to build one Machine per integration."""

    def trial() -> tuple[int, float]:
        models = [PlainModel() for _ in range(scale.machines)]
        start = time.perf_counter()
        for model in models:
            machine_for(model)
        return len(models), time.perf_counter() - start

    return 1e6 / median_rate(trial, scale.repeats)


def add_model(scale: Scale) -> float:
    """Microseconds for a shared machine's add_model + remove_model of one model."""
    shared = transitions.Machine(model=None, initial=None, **MACHINE_TABLE)

    def trial() -> tuple[int, float]:
        models = [PlainModel() for _ in range(scale.machines * 3)]
        start = time.perf_counter()
        for model in models:
            shared.add_model(model, initial=Status.ACTIVE.value)
            shared.remove_model(model)
        return len(models), time.perf_counter() - start

    return 1e6 / median_rate(trial, scale.repeats)


def bytes_each(build: Callable[[], list[Any]]) -> float:
    """Bytes allocated per element of what `build` returns and keeps alive."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / len(held)


def db_trial(engine: Engine, scale: Scale, *, via_runs: bool) -> float:
    """Status changes per second, each under the row lock with its audit and outbox rows."""
    sessions = make_sessionmaker(engine)
    ids = seed_integrations(sessions, count=50)
    clock = ManualClock(T0)
    change_one = change_via_runs if via_runs else change_via_trigger
    done = 0

    def trial() -> tuple[int, float]:
        nonlocal done
        start = time.perf_counter()
        deadline, changes = start + scale.db_seconds, 0
        while time.perf_counter() < deadline:
            clock.advance(timedelta(seconds=1))
            change_one(sessions, ids[changes % len(ids)], clock.now())
            changes += 1
        done += changes
        return changes, time.perf_counter() - start

    rate = median_rate(trial, scale.repeats)
    check_audit(sessions, expected=len(ids) + done)
    return rate


def seed_integrations(sessions: sessionmaker[Session], *, count: int) -> list[uuid.UUID]:
    """Active integrations whose first sync already finished, so results never go to QA."""
    with sessions() as session, session.begin():
        ensure_environment(session, "env-bench", organization_id="org", name="b", kind="production")
        ids = [
            create_integration(
                session,
                NewIntegration("env-bench", f"bench {i}", f"bench-{i}", "stripe", filters={"o": 1}),
                now=T0,
            ).integration_id
            for i in range(count)
        ]
        session.execute(update(Integration).values(first_sync_finished_at=T0))
    return ids


def change_via_trigger(sessions: sessionmaker[Session], key: uuid.UUID, now: datetime) -> None:
    """One transaction: lock the row, apply the sync result that flips its status."""
    with sessions() as session, session.begin():
        integration = lock_integration(session, key)
        failing = integration.status == Status.SYNC_FAILING
        trigger = Trigger.SYNC_SUCCEEDED if failing else Trigger.SYNC_FAILED
        change = apply_trigger(session, integration, trigger, now=now)
        require(change is not None and change.changed, f"{trigger} changed nothing")


def change_via_runs(sessions: sessionmaker[Session], key: uuid.UUID, now: datetime) -> None:
    """A worker's path: start_run and finish_run, two transactions, one status change."""
    with sessions() as session, session.begin():
        run = start_run(session, key, task_id=None, now=now, lease=timedelta(minutes=5))
        if not isinstance(run, RunStart):
            raise RuntimeError(f"run did not start: {run}")
        failing = session.get_one(Integration, key).status == Status.SYNC_FAILING
    outcome = SyncOutcome.SUCCEEDED if failing else SyncOutcome.FAILED
    with sessions() as session, session.begin():
        change = finish_run(session, run.run_id, SyncResult(outcome), now=now)
        require(change is not None and change.changed, f"{outcome} changed nothing")


def check_audit(sessions: sessionmaker[Session], *, expected: int) -> None:
    """Every change (and every creation) left exactly one audit row."""
    with sessions() as session:
        found = session.scalar(select(func.count()).select_from(StatusChange))
    require(found == expected, f"expected {expected} status_changes rows, found {found}")


def database_figures(
    backend: str, fresh: Callable[[str], Engine], scale: Scale
) -> dict[str, float]:
    """Both database figures of one backend, each on a freshly migrated, empty schema."""
    figures = {}
    for kind, via_runs in (("transitions", False), ("sync_runs", True)):
        engine = fresh(kind)
        migrate.upgrade(engine)
        figures[f"{backend}_{kind}_per_s"] = db_trial(engine, scale, via_runs=via_runs)
        engine.dispose()
    return figures


def fresh_sqlite(directory: str, name: str) -> Engine:
    return make_engine(f"sqlite:///{Path(directory) / name}.db")


def measure(scale: Scale, postgres_url: str | None) -> dict[str, float | None]:
    pure, attach_us, machine_us = pure_triggers(scale), attach(scale), machine_per_instance(scale)
    add_model_us = add_model(scale)
    pool = transient_integrations(scale.subjects_in_memory)
    figures: dict[str, float | None] = {
        "pure_triggers_per_s": pure,
        "attach_us": attach_us,
        "machine_per_instance_us": machine_us,
        "add_model_us": add_model_us,
        "machine_per_instance_over_attach": machine_us / attach_us,
        "bytes_per_attached_integration": bytes_each(lambda: [subject_of(i) for i in pool]),
        "bytes_per_machine_instance": bytes_each(
            lambda: [machine_for(PlainModel()) for _ in range(scale.machines_in_memory)]
        ),
    }
    with tempfile.TemporaryDirectory() as tmp:
        figures.update(database_figures("sqlite", partial(fresh_sqlite, tmp), scale))
    pg = {}
    if postgres_url:
        pg = database_figures("postgres", lambda _kind: fresh_postgres_schema(postgres_url), scale)
    figures["postgres_transitions_per_s"] = pg.get("postgres_transitions_per_s")
    figures["postgres_sync_runs_per_s"] = pg.get("postgres_sync_runs_per_s")
    return figures


def print_table(figures: dict[str, float | None]) -> None:
    print(f"{'figure':34} {'value':>14} {'unit':5} {'target':>10}  met?")
    for name, value in figures.items():
        unit = next((u for suffix, u in UNITS.items() if suffix in name), "")
        target, bound = TARGETS.get(name, ("", None))
        if value is None:
            print(f"{name:34} {'skipped':>14} {unit:5} {target:>10}  (no PostgreSQL URL)")
            continue
        met = "" if bound is None else ("yes" if _met(name, value, bound) else "NO")
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
        print(f"{name:34} {shown:>14} {unit:5} {target:>10}  {met}")


def _met(name: str, value: float, bound: float) -> bool:
    return value <= bound if name.endswith("_us") else value >= bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="PostgreSQL database whose public schema is DROPPED and recreated",
    )
    parser.add_argument("--quick", action="store_true", help="a small run, for a smoke test")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    print(
        f"python {sys.version.split()[0]}, transitions {transitions.__version__}, "
        f"sqlalchemy {sqlalchemy.__version__}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f} (other processes share them), "
        f"{'quick' if args.quick else 'full'} run, median of {scale.repeats}, one thread"
    )
    figures = measure(scale, args.postgres_url)
    print_table(figures)
    print(json.dumps({k: None if v is None else round(v, 3) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
