"""Sync throughput of a worker process, end to end on PostgreSQL, Redis and the Stripe fake.

    .venv/bin/python benchmarks/throughput.py [--database-url URL] [--redis-url URL]
                                              [--concurrency N] [--workers N] [--quick]

Starts one real worker (`taskset -c 0 celery -A worker worker -P threads -c 64`,
the command this benchmark recommends; `--workers 2` starts two such processes,
each pinned to its own core, the way to use a second core; `--no-pin` leaves
them to the scheduler) and feeds it three batches of messages, each queued in full
before the workers are told to consume (`add_consumer`) and timed until the
queue and its unacked set are empty:

(a) no-op tasks (Celery's built-in `celery.accumulate`, which returns its
    arguments) against syncs with the Stripe fake answering at once: the sync
    result rate should be at least half the no-op rate on the same worker;
(b) syncs with the fake taking 200 ms per request: at least 200 syncs/s.

Each sync is a real one: lease, SyncRun, decrypted (Keyring-sealed) credentials,
one HTTP request for one page of 10 customers, the page upserted, the outcome
applied to the lifecycle. Every integration is bulk-inserted and synced once.

Each phase also reports the CPU milliseconds one message cost the worker, the
fake (this process), PostgreSQL and Redis (Linux /proc), and the ceilings they
imply: a threads-pool worker runs Python on one core at a time (the GIL), so
1000 / worker-ms is its best rate whatever the concurrency (worker-ms sums every
worker process; each has its own core, so N processes reach N times that).

The database (default `bench` on the local server, created if missing; or
BENCH_DATABASE_URL) has its `public` schema DROPPED and recreated, and the
Redis database (default 14, or BENCH_REDIS_URL) is flushed: never point them at
data you care about. The last line printed is one JSON object with every figure.
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
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_checks import (
    require,
    service_arguments,
    wait_until,
)  # siblings: the scripts run as files
from bench_database import fresh_postgres_schema
from celery import Celery
from redis import Redis
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from fakes.stripe import FakeStripe
from models.credentials import Keyring
from models.integrations import ensure_environment
from models.schema import Integration, SyncRun
from models.status import Provider, Status, SyncOutcome
from scheduler.beat import CONTROL_QUEUE
from worker.app import create_app
from worker.runtime import publisher_of, runtime_of
from worker.settings import Settings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
# Threads, not prefork: a sync spends nearly all its time waiting on the provider, and
# threads wait in parallel in one process (prefork with 2 processes manages ~10/s).
POOL = "threads"
# The worker's default (SYNCWORKER_CONCURRENCY): pinned to a core, a worker's rate barely
# depends on it (200 ms provider: 109/s at -c 32, 107/s at -c 64, 110/s at -c 100).
DEFAULT_CONCURRENCY = 64
NOOP_TASK = "celery.accumulate"  # built into every Celery app; returns its arguments
CUSTOMERS = 10  # one page: each sync is exactly one request to the fake
SLOW_LATENCY_S = 0.2
TARGET_RESULTS_OVER_NOOP = 0.5
TARGET_SLOW_SYNCS_PER_S = 200.0
ENVIRONMENT = "env-bench"
# kombu's Redis transport keeps delivered, not yet acknowledged messages here.
UNACKED_KEY = "unacked"
PHASE_DEADLINE_S = 300.0


@dataclass(frozen=True)
class Scale:
    """How many messages each phase runs; `--quick` shrinks them for a smoke run."""

    warmup: int
    noop: int
    instant_syncs: int
    slow_syncs: int


FULL = Scale(warmup=300, noop=5_000, instant_syncs=2_000, slow_syncs=2_000)
QUICK = Scale(warmup=100, noop=1_000, instant_syncs=500, slow_syncs=600)


# -- where the CPU goes ------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and of its reaped children), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # the process ended
        return 0.0
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by each party to a sync (Linux /proc; zeros elsewhere)."""

    worker: float
    fake: float  # this process: the Stripe fake's threads and the benchmark's polling
    postgres: float  # every postgres process on the machine, the benchmark's and others'
    redis: float

    @classmethod
    def take(cls, worker_pids: Sequence[int]) -> CpuSnapshot:
        if not Path("/proc/self/stat").exists():
            return cls(0.0, 0.0, 0.0, 0.0)
        return cls(
            worker=sum(_proc_cpu_s(pid) for pid in worker_pids),
            fake=_proc_cpu_s(os.getpid()),
            postgres=sum(_proc_cpu_s(pid) for pid in _pids_named("postgres")),
            redis=sum(_proc_cpu_s(pid) for pid in _pids_named("redis-server")),
        )

    def per_message_ms(self, later: CpuSnapshot, messages: int) -> dict[str, float]:
        spent = {
            "worker": later.worker - self.worker,
            "fake": later.fake - self.fake,
            "postgres": later.postgres - self.postgres,
            "redis": later.redis - self.redis,
        }
        spent["total"] = sum(spent.values())
        return {party: round(seconds * 1000 / messages, 2) for party, seconds in spent.items()}


@dataclass(frozen=True)
class Phase:
    """One timed batch: messages per second, and CPU milliseconds per message by party."""

    per_s: float
    cpu_ms: dict[str, float]
    per_s_by_runs: float | None = None


# -- services and data ----------------------------------------------------------------------


def seed(engine: Engine, fake: FakeStripe, keyring: Keyring, count: int) -> list[uuid.UUID]:
    """Bulk-insert `count` active stripe integrations, each with its own sealed key and account."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for _ in range(count):
        integration_id = uuid.uuid4()
        secret_key = f"sk_test_{integration_id.hex}"
        fake.add_account(secret_key, customers=CUSTOMERS)
        rows.append(
            {
                "id": integration_id,
                "organization_id": "org-bench",
                "environment_id": ENVIRONMENT,
                "name": "bench",
                "identifier": f"bench-{integration_id.hex}",
                "provider": Provider.STRIPE.value,
                "status": Status.ACTIVE.value,
                "credentials_encrypted": keyring.seal({"secret_key": secret_key}),
                "configurations": {},
                "filters": {"objects": ["customers"]},
                "conditions": [],
                "status_changed_at": now,
                # Not due: these syncs are published by the benchmark, never by a tick.
                "next_sync_at": now + timedelta(days=1),
                "created_at": now,
                "updated_at": now,
            }
        )
    with engine.begin() as connection:
        connection.execute(insert(Integration), rows)
    return [row["id"] for row in rows]


def add_environment(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        ensure_environment(
            session, ENVIRONMENT, organization_id="org-bench", name="bench", kind="production"
        )


# -- the worker ---------------------------------------------------------------------------------


def worker_command(concurrency: int, queues: Sequence[str], cpu: int | None = None) -> list[str]:
    """The recommended worker command line (with this process's virtualenv), pinned to `cpu`.

    A threads worker runs Python on one core at a time (the GIL); left to the scheduler, its
    threads hand the GIL across cores, and those hand-offs cost more CPU than the syncs
    (this box: 13.8 ms of worker CPU per sync unpinned, 8.2 ms pinned).
    """
    celery = str(Path(sys.executable).with_name("celery"))
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return [*pin, celery, "-A", "worker", "worker", "-P", POOL, "-c", str(concurrency),
            "-Q", ",".join(queues)]  # fmt: skip


@contextmanager
def running_worker(
    env: dict[str, str], concurrency: int, hostname: str, log: Path, cpu: int | None
) -> Iterator[subprocess.Popen[bytes]]:
    """The worker process, consuming only the control queue until told otherwise."""
    command = [*worker_command(concurrency, [CONTROL_QUEUE], cpu), "-n", hostname]
    repo = Path(__file__).resolve().parents[1]
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own command line, no shell
            command,
            cwd=repo,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@dataclass(frozen=True)
class Worker:
    """One running worker process and the node name it answers to."""

    hostname: str
    process: subprocess.Popen[bytes]


def wait_for_worker(app: Celery, worker: Worker) -> None:
    def answers() -> bool:
        require(worker.process.poll() is None, "the worker exited at start; see its log")
        return bool(app.control.ping(destination=[worker.hostname], timeout=0.5))

    wait_until(answers, what="the worker to start", timeout=60)


def drained(redis: Redis, queue: str) -> Callable[[], bool]:
    def check() -> bool:
        return not redis.llen(queue) and not redis.hlen(UNACKED_KEY)

    return check


def timed_phase(
    app: Celery, redis: Redis, workers: Sequence[Worker], queue: str
) -> tuple[float, dict[str, float]]:
    """Seconds from telling the workers to consume the (full) queue until all is acked."""
    messages = redis.llen(queue)
    hostnames = [worker.hostname for worker in workers]
    pids = [worker.process.pid for worker in workers]
    before = CpuSnapshot.take(pids)
    start = time.perf_counter()
    replies = app.control.add_consumer(queue, destination=hostnames, reply=True, timeout=5)
    require(len(replies) == len(workers), "a worker did not answer add_consumer")
    wait_until(drained(redis, queue), what=f"{queue} to drain", timeout=PHASE_DEADLINE_S)
    seconds = time.perf_counter() - start
    cpu = before.per_message_ms(CpuSnapshot.take(pids), messages)
    app.control.cancel_consumer(queue, destination=hostnames, reply=True, timeout=5)
    return seconds, cpu


def publish_noops(app: Celery, queue: str, count: int) -> None:
    with app.producer_or_acquire() as producer, producer.batch():
        for _ in range(count):
            app.send_task(NOOP_TASK, args=(), queue=queue, producer=producer)


def check_syncs(engine: Engine, ids: list[uuid.UUID]) -> float:
    """Require one applied, succeeded run per integration; the syncs/s the runs' times show."""
    with engine.connect() as connection:
        outcomes = dict(
            connection.execute(
                select(SyncRun.outcome, func.count())
                .where(SyncRun.integration_id.in_(ids))
                .group_by(SyncRun.outcome)
            ).all()
        )
        first, last = connection.execute(
            select(func.min(SyncRun.started_at), func.max(SyncRun.finished_at)).where(
                SyncRun.integration_id.in_(ids), SyncRun.applied
            )
        ).one()
    require(
        outcomes == {SyncOutcome.SUCCEEDED.value: len(ids)},
        f"expected {len(ids)} succeeded runs, got {outcomes}",
    )
    if first is None or last is None:
        raise SystemExit("benchmark check failed: no applied run has its times")
    return len(ids) / (last - first).total_seconds()


@dataclass(frozen=True)
class Bench:
    """The running workers and what the phases talk to."""

    app: Celery
    engine: Engine
    redis: Redis
    workers: Sequence[Worker]

    @property
    def queue(self) -> str:
        return runtime_of(self.app).settings.providers[Provider.STRIPE].queue

    def syncs(self, ids: list[uuid.UUID]) -> Phase:
        """Sync each integration once; syncs per second by the queue and by the runs."""
        policy = runtime_of(self.app).settings.providers[Provider.STRIPE]
        publisher_of(self.app).publish(policy, ids)
        seconds, cpu = timed_phase(self.app, self.redis, self.workers, self.queue)
        return Phase(len(ids) / seconds, cpu, check_syncs(self.engine, ids))

    def noops(self, count: int) -> Phase:
        publish_noops(self.app, self.queue, count)
        seconds, cpu = timed_phase(self.app, self.redis, self.workers, self.queue)
        return Phase(count / seconds, cpu)


# -- the run ----------------------------------------------------------------------------------


def run(
    database_url: str,
    redis_url: str,
    concurrency: int,
    scale: Scale,
    processes: int = 1,
    *,
    pin: bool = True,
) -> dict[str, Any]:
    engine = fresh_postgres_schema(database_url)
    add_environment(engine)
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    hostnames = [f"bench-throughput-{n}@{socket.gethostname()}" for n in range(processes)]
    with FakeStripe() as fake, tempfile.TemporaryDirectory() as data_dir:
        env = {
            "SYNCWORKER_DATA_DIR": data_dir,
            "SYNCWORKER_DATABASE_URL": database_url,
            "SYNCWORKER_BROKER_URL": redis_url,
            "SYNCWORKER_REDIS_URL": redis_url,
            "SYNCWORKER_CREDENTIAL_KEYS": f"bench:{Keyring.generate_key()}",
            "SYNCWORKER_STRIPE_BASE_URL": fake.url,
            "SYNCWORKER_CONCURRENCY": str(concurrency),
            "SYNCWORKER_LOG_FORMAT": "json",
        }
        app = create_app(Settings.from_env(env))
        keyring = runtime_of(app).keyring
        total = scale.warmup + scale.instant_syncs + scale.slow_syncs
        print(f"seeding {total:,} integrations ...", file=sys.stderr)
        ids = seed(engine, fake, keyring, total)
        warmup, instant = (
            ids[: scale.warmup],
            ids[scale.warmup : scale.warmup + scale.instant_syncs],
        )
        slow = ids[scale.warmup + scale.instant_syncs :]
        logs = [Path(data_dir) / f"worker-{n}.log" for n in range(processes)]
        cpus = [n % (os.cpu_count() or 1) if pin else None for n in range(processes)]
        try:
            with ExitStack() as stack:
                workers = [
                    Worker(
                        name, stack.enter_context(running_worker(env, concurrency, name, log, cpu))
                    )
                    for name, log, cpu in zip(hostnames, logs, cpus, strict=True)
                ]
                for worker in workers:
                    wait_for_worker(app, worker)
                bench = Bench(app, engine, redis, workers)
                print("warming up ...", file=sys.stderr)
                bench.noops(scale.warmup)
                bench.syncs(warmup)
                print(f"(a) {scale.noop:,} no-ops, {len(instant):,} syncs ...", file=sys.stderr)
                noop = bench.noops(scale.noop)
                results = bench.syncs(instant)
                print(
                    f"(b) {len(slow):,} syncs at {SLOW_LATENCY_S * 1000:.0f} ms ...",
                    file=sys.stderr,
                )
                fake.latency(SLOW_LATENCY_S)
                slowed = bench.syncs(slow)
                require(len(fake.requests) == total, "a sync made other than one request")
        finally:
            runtime_of(app).close()
            redis.flushdb()
            redis.close()
            engine.dispose()
            for log in logs:
                _print_errors(log)
    queues = [CONTROL_QUEUE, *(p.queue for p in runtime_of(app).settings.providers.values())]
    return {
        "concurrency": concurrency,
        "workers": processes,
        "pool": POOL,
        "cores": os.cpu_count(),
        "noop_tasks": scale.noop,
        "instant_syncs": len(instant),
        "slow_syncs": len(slow),
        "noop_per_s": round(noop.per_s, 1),
        "results_per_s": round(results.per_s, 1),
        "results_per_s_by_runs": round(results.per_s_by_runs or 0.0, 1),
        "results_over_noop": round(results.per_s / noop.per_s, 3),
        "syncs_per_s_200ms": round(slowed.per_s, 1),
        "syncs_per_s_200ms_by_runs": round(slowed.per_s_by_runs or 0.0, 1),
        "cpu_ms_per_noop": noop.cpu_ms,
        "cpu_ms_per_sync": results.cpu_ms,
        "cpu_ms_per_sync_200ms": slowed.cpu_ms,
        "pinned": pin,
        "worker_command": " ".join(worker_command(concurrency, queues, cpus[0])).replace(
            str(Path(sys.executable).with_name("celery")), "celery"
        ),
    }


def _print_errors(log: Path) -> None:
    """Show the worker's error lines, if it logged any (a failed run's first clue)."""
    if not log.exists():
        return
    errors = [line for line in log.read_text().splitlines() if '"level": "error"' in line]
    for line in errors[:10]:
        print(f"worker: {line}", file=sys.stderr)


def _cpu(cpu: dict[str, float]) -> str:
    return " + ".join(
        f"{party} {cpu[party]:.1f}" for party in ("worker", "fake", "postgres", "redis")
    )


def report(figures: dict[str, Any]) -> None:
    ratio = figures["results_over_noop"]
    slow = figures["syncs_per_s_200ms"]
    per_sync = figures["cpu_ms_per_sync"]
    processes = figures["workers"]
    # Each worker process runs Python on one core (the GIL); worker CPU sums them all.
    cores = min(processes, figures["cores"])
    worker_ceiling = cores * 1000 / per_sync["worker"] if per_sync["worker"] else 0.0
    machine_ceiling = figures["cores"] * 1000 / per_sync["total"] if per_sync["total"] else 0.0
    rows = [
        ("worker", f"-P {figures['pool']} -c {figures['concurrency']}",
         f"{processes} process" + ("es" if processes > 1 else "")
         + (", pinned: one core each (taskset)" if figures["pinned"] else ", unpinned")),
        (f"(a) no-op tasks ({figures['noop_tasks']:,})", f"{figures['noop_per_s']:.0f} /s", ""),
        (f"(a) sync results, fake at once ({figures['instant_syncs']:,})",
         f"{figures['results_per_s']:.0f} /s", ""),
        ("(a) results / no-op", f"{ratio:.2f} x",
         f">= {TARGET_RESULTS_OVER_NOOP:g}: " + ("ok" if ratio >= TARGET_RESULTS_OVER_NOOP
                                                 else "MISSED")),
        (f"(b) syncs, fake at 200 ms ({figures['slow_syncs']:,})", f"{slow:.0f} /s",
         f">= {TARGET_SLOW_SYNCS_PER_S:g}/s: " + ("ok" if slow >= TARGET_SLOW_SYNCS_PER_S
                                                 else "MISSED")),
        ("(b) by the runs' own timestamps", f"{figures['syncs_per_s_200ms_by_runs']:.0f} /s", ""),
        ("CPU ms per no-op", f"{figures['cpu_ms_per_noop']['total']:.1f}",
         _cpu(figures["cpu_ms_per_noop"])),
        ("CPU ms per sync (a)", f"{per_sync['total']:.1f}", _cpu(per_sync)),
        ("CPU ms per sync (b)", f"{figures['cpu_ms_per_sync_200ms']['total']:.1f}",
         _cpu(figures["cpu_ms_per_sync_200ms"])),
        (f"ceiling: {cores} core{'s' if cores > 1 else ''} / worker CPU",
         f"{worker_ceiling:.0f} /s", "the GIL: one core per worker process"),
        (f"ceiling: {figures['cores']} cores / all CPU", f"{machine_ceiling:.0f} /s", ""),
    ]  # fmt: skip
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'value':>17}  target / detail")
    print(f"{'-' * width}  {'-' * 17}  ---------------")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>17}  {target}")
    print(f"worker command: {figures['worker_command']}")
    print(json.dumps(figures))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    service_arguments(parser, database_url=DEFAULT_DATABASE_URL, redis_url=DEFAULT_REDIS_URL)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--workers", type=int, default=1, help="worker processes to start")
    parser.add_argument("--quick", action="store_true", help="fewer messages per phase")
    parser.add_argument(
        "--no-pin", action="store_true", help="leave the workers to the scheduler (no taskset)"
    )
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    pin = not args.no_pin
    report(run(args.database_url, args.redis_url, args.concurrency, scale, args.workers, pin=pin))


if __name__ == "__main__":
    main()
