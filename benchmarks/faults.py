"""Fault injection: every sync ends, classified, in bounded memory, against a hostile world.

    .venv/bin/python benchmarks/faults.py [--database-url URL] [--redis-url URL] [--quick]

Real Celery workers (`celery -A worker worker -P threads`, two processes) on real Redis
and PostgreSQL sync integrations of a hostile provider (`fakes.hostile.FakeHostile`:
the secret key picks the behaviour): endless pagination, the same cursor forever, a body
trickled a byte at a time, a gzip bomb, a 50 MiB body, 100,000 nested arrays, absurd
values (NUL in ids, NaN, a 10,000-character id, a `created` of 10^23), random garbage,
a 403; healthy integrations beside them. Three rounds:

1. baseline: the healthy integrations alone (time and worker memory to compare against);
2. chaos: every integration once, while a worker is SIGKILLed mid-sync (and replaced)
   and PostgreSQL terminates the workers' connections in a loop (pg_terminate_backend);
   then the reaper sweeps the runs the killed worker left;
3. settle: every integration once more, no faults: each must sync again.

Figures (the last line printed is one JSON object with all of them):

- `syncs_stuck`: integrations whose settle-round sync did not run to a closed run
  (a sync still holding its lease from the chaos round makes the next one skip);
- `syncs_unclassified`: closed runs whose error is an unexpected exception (the sync
  layer's last resort, "unexpected ...") or that failed without an error;
- `runs_left_open`: runs still open at the end, after the reaper;
- `transitions_doubled`: runs with more than one status change applied;
- `records_lost`: healthy objects (of healthy and absurd integrations) missing at the end;
- `peak_rss_mb`: the largest worker process, sampled every 50 ms, beside the baseline's.

The database (default `bench_faults`, or BENCH_DATABASE_URL) has its `public` schema
DROPPED and recreated, and the Redis database (default 7, or BENCH_REDIS_URL) is
flushed: never point them at data you care about.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psycopg
from bench_checks import service_arguments, wait_until  # siblings: the scripts run as files
from bench_database import fresh_postgres_schema
from celery import Celery
from redis import Redis
from sqlalchemy import Engine, create_engine, func, insert, make_url, select
from sqlalchemy.orm import Session

from fakes.hostile import HEALTHY_OBJECTS, MODES, FakeHostile
from models.credentials import Keyring
from models.integrations import ensure_environment
from models.schema import Integration, StatusChange, SyncedRecord, SyncRun
from models.status import Provider, Status
from models.sync_runs import reap_abandoned
from scheduler.beat import CONTROL_QUEUE
from worker.app import create_app
from worker.runtime import publisher_of, runtime_of
from worker.settings import Settings

DEFAULT_DATABASE_URL: Final = "postgresql://postgres@127.0.0.1:5432/bench_faults"
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379/7"
ENVIRONMENT: Final = "env-faults"
# The benchmark's own connections carry this name, so the terminating loop spares them.
APPLICATION_NAME: Final = "faults-bench"
# The hostile modes synced; `healthy` is the baseline and runs beside them in chaos.
# Every misbehaviour the hostile fake offers (all but its healthy mode).
HOSTILE_MODES: Final = tuple(mode for mode in MODES if mode != "healthy")
# Short limits, so a round takes seconds: each sync stops by SYNC_DEADLINE, each request by
# REQUEST_DEADLINE (a byte every TRICKLE_S), a stuck one is closed at TASK_TIME_LIMIT.
WORKER_SETTINGS: Final = {
    "SYNCWORKER_SYNC_DEADLINE": "8",
    "SYNCWORKER_TASK_TIME_LIMIT": "12",
    "SYNCWORKER_REQUEST_DEADLINE": "3",
    "SYNCWORKER_LEASE_TTL": "3",
    "SYNCWORKER_MAX_RETRIES": "2",
    "SYNCWORKER_MAX_RETRY_DELAY": "1",
    "SYNCWORKER_VISIBILITY_TIMEOUT": "30",
    "SYNCWORKER_CONCURRENCY": "16",
    "SYNCWORKER_LOG_FORMAT": "json",
    "SYNCWORKER_LOG_LEVEL": "WARNING",
}
TRICKLE_S: Final = 1.0
WORKERS: Final = 2
TERMINATE_EVERY_S: Final = 0.7
ROUND_DEADLINE_S: Final = 180.0


@dataclass(frozen=True)
class Scale:
    """Integrations per mode and the chaos round's worker kills; `--quick` shrinks them."""

    per_mode: int
    healthy: int
    kills: int


FULL = Scale(per_mode=6, healthy=60, kills=3)
QUICK = Scale(per_mode=2, healthy=20, kills=1)


# -- the world: integrations, workers, memory ---------------------------------------------------


def seed(engine: Engine, keyring: Keyring, modes: dict[str, int]) -> dict[uuid.UUID, str]:
    """Insert `count` active stripe integrations per mode, keyed to it; id -> mode."""
    now = datetime.now(UTC)
    rows, modes_of = [], {}
    for mode, count in modes.items():
        for _ in range(count):
            integration_id = uuid.uuid4()
            modes_of[integration_id] = mode
            rows.append(
                {
                    "id": integration_id,
                    "organization_id": "org-faults",
                    "environment_id": ENVIRONMENT,
                    "name": mode,
                    "identifier": f"{mode}-{integration_id.hex}",
                    "provider": Provider.STRIPE.value,
                    "status": Status.ACTIVE.value,
                    "credentials_encrypted": keyring.seal({"secret_key": f"sk_test_{mode}"}),
                    "configurations": {},
                    "filters": {"objects": ["customers"]},
                    "conditions": [],
                    "status_changed_at": now,
                    "first_sync_finished_at": now - timedelta(days=1),
                    "next_sync_at": now + timedelta(days=1),  # synced by the benchmark only
                    "created_at": now,
                    "updated_at": now,
                }
            )
    with Session(engine) as session, session.begin():
        ensure_environment(
            session, ENVIRONMENT, organization_id="org-faults", name="faults", kind="production"
        )
        session.execute(insert(Integration), rows)
    return modes_of


class Workers:
    """Worker processes, each in its own process group; killed, replaced, stopped."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self._env = {**os.environ, **env}
        self._logs = logs
        self._started = 0
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        celery = str(Path(sys.executable).with_name("celery"))
        queues = ",".join([CONTROL_QUEUE, "sync.stripe"])
        name = f"faults-{self._started}@{socket.gethostname()}"
        log = (self._logs / f"worker-{self._started}.log").open("wb")
        self._started += 1
        process = subprocess.Popen(  # noqa: S603 - our own command line, no shell
            [celery, "-A", "worker", "worker", "-P", "threads", "-Q", queues, "-n", name,
             "--without-heartbeat", "--without-mingle", "--without-gossip"],
            cwd=Path(__file__).resolve().parents[1],
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.processes.append(process)
        return process

    def kill_one(self) -> None:
        """SIGKILL the oldest live worker (mid-sync, whatever it does) and start another."""
        live = [process for process in self.processes if process.poll() is None]
        if live:
            os.killpg(live[0].pid, signal.SIGKILL)
            live[0].wait()
        self.start()

    def live_pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.poll() is None]

    def stop(self) -> None:
        """Warm shutdown (SIGTERM waits for running tasks); SIGKILL if it hangs."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                print("a worker hung in warm shutdown: killed", file=sys.stderr)

    def tracebacks(self) -> list[str]:
        """Each traceback the workers printed, whole, worker by worker.

        A traceback runs from its "Traceback" line through its frames (indented) to the
        error line, the first one neither indented nor a JSON log line that another thread
        wrote in between (those are left out).
        """
        found = []
        for log in sorted(self._logs.glob("worker-*.log")):
            lines = log.read_text().splitlines()
            for at, line in enumerate(lines):
                if "Traceback" not in line:
                    continue
                block = [line]
                for following in lines[at + 1 :]:
                    if following.startswith("{"):
                        continue
                    block.append(following)
                    if not following.startswith(" "):
                        break
                found.append(f"{log.name}:\n" + "\n".join(block))
        return found


def database_now(engine: Engine) -> datetime:
    """The database's own time (what runs are stamped with), not this process's clock."""
    with engine.connect() as connection:
        now = connection.scalar(select(func.now()))
    if not isinstance(now, datetime):
        raise SystemExit("benchmark check failed: the database told no time")
    return now


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (Linux /proc; 0 elsewhere or once it ended)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Background:
    """Threads doing something every few moments until stopped (memory, faults)."""

    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def every(self, seconds: float, action: Callable[[], None]) -> None:
        def loop() -> None:
            while not self.stop.wait(seconds):
                action()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self.threads.append(thread)

    def halt(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


@contextmanager
def sampling_memory(workers: Workers) -> Iterator[list[float]]:
    """The largest worker RSS seen, sampled every 50 ms while the block runs."""
    peak = [0.0]
    background = Background()

    def sample() -> None:
        peak[0] = max([peak[0], *map(rss_mb, workers.live_pids())])

    background.every(0.05, sample)
    try:
        yield peak
    finally:
        background.halt()


def terminate_connections(database_url: str) -> Callable[[], None]:
    """Terminate every connection to the database but the benchmark's own."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)

    def terminate() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as connection:
                connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND application_name <> %s",
                    (APPLICATION_NAME,),
                )
        except psycopg.Error as exc:
            print(f"terminate loop: {type(exc).__name__}", file=sys.stderr)

    return terminate


# -- rounds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """What the rounds talk to."""

    app: Celery
    engine: Engine
    redis: Redis
    workers: Workers
    modes_of: dict[uuid.UUID, str]

    def publish(self, ids: Sequence[uuid.UUID]) -> datetime:
        """Publish one sync of each integration; when (database time) it was published."""
        published = database_now(self.engine)
        policy = runtime_of(self.app).settings.providers[Provider.STRIPE]
        publisher_of(self.app).publish(policy, list(ids))
        return published

    def runs_since(self, since: datetime) -> list[Any]:
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(
                        SyncRun.integration_id,
                        SyncRun.finished_at,
                        SyncRun.outcome,
                        SyncRun.error,
                        SyncRun.started_at,
                    ).where(SyncRun.started_at >= since)
                )
            )

    def open_live_runs(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count())
                    .select_from(SyncRun)
                    .where(SyncRun.finished_at.is_(None), SyncRun.lease_expires_at > func.now())
                )
                or 0
            )

    def queue_empty(self) -> bool:
        return not self.redis.llen("sync.stripe")

    def round(self, ids: Sequence[uuid.UUID], *, what: str) -> tuple[datetime, float]:
        """Sync each of `ids` once; wait for every one to have closed a run since."""
        start = time.monotonic()
        published = self.publish(ids)
        wanted = set(ids)

        def done() -> bool:
            closed = {run.integration_id for run in self.runs_since(published) if run.finished_at}
            return wanted <= closed

        wait_until(done, what=f"the {what} round's syncs", timeout=ROUND_DEADLINE_S, poll=0.1)
        return published, time.monotonic() - start

    def chaos_round(self, ids: Sequence[uuid.UUID], kills: int, database_url: str) -> float:
        """Sync each once while workers are killed and connections terminated; then reap."""
        start = time.monotonic()
        self.publish(ids)
        faults = Background()
        faults.every(TERMINATE_EVERY_S, terminate_connections(database_url))
        try:
            for _ in range(kills):
                time.sleep(2.0)  # syncs in flight: kill their worker mid-sync
                self.workers.kill_one()
            wait_until(
                self.queue_empty, what="the chaos round's queue", timeout=ROUND_DEADLINE_S, poll=0.1
            )
            # Every run either closed or left behind by a killed worker, its lease lapsing.
            wait_until(
                lambda: self.open_live_runs() == 0,
                what="the chaos round's runs to end",
                timeout=ROUND_DEADLINE_S,
                poll=0.1,
            )
        finally:
            faults.halt()
        self.reap()
        return time.monotonic() - start

    def reap(self) -> int:
        """The beat's reaper sweep (closes runs whose lease lapsed: the killed worker's)."""
        with Session(self.engine) as session, session.begin():
            return len(reap_abandoned(session, now=datetime.now(UTC)))


# -- figures -------------------------------------------------------------------------------------

CLASSIFIED_WITHOUT_OUTCOME: Final = ("transient: ", "interrupted: ", "abandoned: ")


def unclassified(outcome: str | None, error: str | None) -> bool:
    """A run the sync layer could not classify: an unexpected error, or a silent failure."""
    if error is not None and error.startswith("unexpected "):
        return True
    if outcome is None:  # closed for a retry, taken over, or reaped: each says which
        return not (error or "").startswith(CLASSIFIED_WITHOUT_OUTCOME)
    return outcome == "failed" and not error


def figures_of(bench: Bench, settle_published: datetime) -> dict[str, int]:
    """The counts that must all be 0."""
    engine, modes_of = bench.engine, bench.modes_of
    settled = {run.integration_id for run in bench.runs_since(settle_published) if run.finished_at}
    with engine.connect() as connection:
        runs = connection.execute(select(SyncRun.outcome, SyncRun.error, SyncRun.finished_at)).all()
        doubled = connection.scalar(
            select(func.count()).select_from(
                select(StatusChange.sync_run_id)
                .where(StatusChange.sync_run_id.is_not(None))
                .group_by(StatusChange.sync_run_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
        stored = connection.execute(
            select(SyncedRecord.integration_id, SyncedRecord.external_id)
        ).all()
    have: dict[uuid.UUID, set[str]] = {}
    for integration_id, external_id in stored:
        have.setdefault(integration_id, set()).add(external_id)
    healthy_ids = {f"cus_{n:06d}" for n in range(1, HEALTHY_OBJECTS + 1)}
    lost = sum(
        len(healthy_ids - have.get(integration_id, set()))
        for integration_id, mode in modes_of.items()
        if mode in ("healthy", "absurd")
    )
    return {
        "syncs_stuck": len(set(modes_of) - settled),
        "syncs_unclassified": sum(unclassified(outcome, error) for outcome, error, _ in runs),
        "runs_left_open": sum(finished is None for _, _, finished in runs),
        "transitions_doubled": int(doubled or 0),
        "records_lost": lost,
    }


def outcomes_by_mode(bench: Bench, since: datetime, until: datetime) -> dict[str, dict[str, Any]]:
    """Per mode: the chaos round's run outcomes and the first error seen."""
    table: dict[str, dict[str, Any]] = {}
    for run in bench.runs_since(since):
        if run.started_at >= until:
            continue
        row = table.setdefault(bench.modes_of[run.integration_id], {"runs": Counter(), "error": ""})
        row["runs"][run.outcome or (run.error or "open").split(":")[0]] += 1
        if run.error and not row["error"]:
            row["error"] = run.error.replace("\n", " ")[:70]
    return table


# -- the run -------------------------------------------------------------------------------------


def bench_engine(database_url: str) -> Engine:
    """The benchmark's own engine, named so the terminating loop spares it."""
    url = make_url(database_url).set(drivername="postgresql+psycopg")
    return create_engine(url.update_query_dict({"application_name": APPLICATION_NAME}))


def run(database_url: str, redis_url: str, scale: Scale) -> dict[str, Any]:
    fresh_postgres_schema(database_url).dispose()
    engine = bench_engine(database_url)
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    with FakeHostile(trickle_s=TRICKLE_S) as hostile, tempfile.TemporaryDirectory() as data_dir:
        env = {
            **WORKER_SETTINGS,
            "SYNCWORKER_DATA_DIR": data_dir,
            "SYNCWORKER_DATABASE_URL": database_url,
            "SYNCWORKER_BROKER_URL": redis_url,
            "SYNCWORKER_REDIS_URL": redis_url,
            "SYNCWORKER_CREDENTIAL_KEYS": f"faults:{Keyring.generate_key()}",
            "SYNCWORKER_STRIPE_BASE_URL": hostile.url,
        }
        app = create_app(Settings.from_env(env))
        modes = {"healthy": scale.healthy, **dict.fromkeys(HOSTILE_MODES, scale.per_mode)}
        modes_of = seed(engine, runtime_of(app).keyring, modes)
        healthy = [i for i, mode in modes_of.items() if mode == "healthy"]
        workers = Workers(env, Path(data_dir))
        bench = Bench(app, engine, redis, workers, modes_of)
        try:
            for _ in range(WORKERS):
                workers.start()
            print(f"baseline: {len(healthy)} healthy syncs ...", file=sys.stderr)
            with sampling_memory(workers) as baseline_peak:
                _, baseline_s = bench.round(healthy, what="baseline")
            print(f"chaos: {len(modes_of)} syncs, {scale.kills} kills ...", file=sys.stderr)
            chaos_start = database_now(engine)
            with sampling_memory(workers) as chaos_peak:
                chaos_s = bench.chaos_round(list(modes_of), scale.kills, database_url)
            print(f"settle: {len(modes_of)} syncs ...", file=sys.stderr)
            with sampling_memory(workers) as settle_peak:
                settle_published, settle_s = bench.round(list(modes_of), what="settle")
            bench.reap()
            shutdown_start = time.monotonic()
            workers.stop()
            shutdown_s = time.monotonic() - shutdown_start
            figures = figures_of(bench, settle_published)
            table = outcomes_by_mode(bench, chaos_start, settle_published)
            tracebacks = workers.tracebacks()
            for traceback in tracebacks:
                print(f"worker traceback: {traceback}", file=sys.stderr)
        finally:
            workers.stop()
            runtime_of(app).close()
            redis.flushdb()
            redis.close()
            engine.dispose()
    peak = max(chaos_peak[0], settle_peak[0])
    return {
        "modes": table,
        "integrations": len(modes_of),
        "worker_kills": scale.kills,
        "baseline_s": round(baseline_s, 1),
        "chaos_s": round(chaos_s, 1),
        "settle_s": round(settle_s, 1),
        "warm_shutdown_s": round(shutdown_s, 1),
        "worker_tracebacks": len(tracebacks),
        **figures,
        "peak_rss_mb": round(peak, 1),
        "baseline_rss_mb": round(baseline_peak[0], 1),
        "rss_over_baseline": round(peak / baseline_peak[0], 2) if baseline_peak[0] else None,
    }


def report(figures: dict[str, Any]) -> None:
    modes = figures.pop("modes")
    print(f"{'mode (chaos round)':<14}  {'runs by outcome':<58}  first error")
    print(f"{'-' * 14}  {'-' * 58}  -----------")
    for mode in ("healthy", *HOSTILE_MODES):
        row = modes.get(mode, {"runs": {}, "error": ""})
        runs = ", ".join(f"{outcome} {count}" for outcome, count in sorted(row["runs"].items()))
        print(f"{mode:<14}  {runs:<58}  {row['error']}")
    print()
    counts = ("syncs_stuck", "syncs_unclassified", "runs_left_open", "transitions_doubled",
              "records_lost")  # fmt: skip
    for name in counts:
        print(f"{name:<22} {figures[name]:>8}   {'ok' if figures[name] == 0 else 'FAILED'}")
    baseline = f"baseline {figures['baseline_rss_mb']} MiB: {figures['rss_over_baseline']} x"
    print(f"{'peak_rss_mb':<22} {figures['peak_rss_mb']:>8}   {baseline}")
    for name in ("baseline_s", "chaos_s", "settle_s", "warm_shutdown_s", "worker_tracebacks"):
        print(f"{name:<22} {figures[name]:>8}")
    print(json.dumps(figures))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    service_arguments(parser, database_url=DEFAULT_DATABASE_URL, redis_url=DEFAULT_REDIS_URL)
    parser.add_argument("--quick", action="store_true", help="fewer integrations, one kill")
    args = parser.parse_args(argv)
    report(run(args.database_url, args.redis_url, QUICK if args.quick else FULL))


if __name__ == "__main__":
    main()
