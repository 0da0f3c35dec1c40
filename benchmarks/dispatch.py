"""How long one dispatch tick takes to claim and publish every due integration.

    .venv/bin/python benchmarks/dispatch.py [--database-url URL] [--redis-url URL] [--quick]

On PostgreSQL and Redis: 100,000 integrations are bulk-inserted, 10,000 of them
due stripe ones. One tick (`scheduler.dispatch.dispatch_tick` with the worker's
`CeleryPublisher`) claims and publishes them all; in the same run, the baseline
publishes 10,000 bare sync messages with `app.send_task` on one shared producer
(and again inside kombu's `Producer.batch()`, the pipelined publish the tick's
publisher uses, to show the tick's own overhead). The tick's claim alone (a
publisher that drops the ids) shows what the database part costs. Then an empty
tick (nothing due) is timed at 100,000 stored integrations and again at
1,000,000: it must not grow with the number stored.

The database (default `bench` on the local server, created if missing; or
BENCH_DATABASE_URL) has its `public` schema DROPPED and recreated, and the
Redis database (default 14, or BENCH_REDIS_URL) is flushed: never point them at
data you care about. Figures are medians of a few interleaved rounds; the last
line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench_checks import require, service_arguments  # siblings: the scripts run as files
from bench_database import fresh_postgres_schema
from celery import Celery
from redis import Redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from models.credentials import Keyring
from models.schema import SYNCING_SQL
from models.status import Provider
from scheduler.beat import SYNC_TASK
from scheduler.dispatch import dispatch_tick
from scheduler.providers import ProviderPolicy
from worker.app import create_app
from worker.runtime import publisher_of, runtime_of
from worker.settings import Settings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
ENVIRONMENT = "env-bench"
# Every provider and every status appear among the stored rows, so the due query has to
# pick stripe's syncing due rows out of a realistic mix, not a table of nothing else.
PROVIDERS = [p.value for p in Provider]
STATUSES = ["active", "active", "active", "sync_warnings", "sync_failing", "auth_failing",
            "quality_assurance", "inactive", "setup", "deleted"]  # fmt: skip
TARGET_TICK_OVER_BARE = 2.0
TARGET_EMPTY_TICK_MS = 50.0


@dataclass(frozen=True)
class Scale:
    """How much each measurement does; `--quick` shrinks it for a smoke run."""

    stored: int
    due: int
    stored_large: int
    rounds: int
    empty_ticks: int


FULL = Scale(stored=100_000, due=10_000, stored_large=1_000_000, rounds=3, empty_ticks=50)
QUICK = Scale(stored=20_000, due=2_000, stored_large=100_000, rounds=1, empty_ticks=20)


class DroppingPublisher:
    """A publisher that publishes nothing: a tick with it times the claim alone."""

    def publish(self, policy: ProviderPolicy, integration_ids: Sequence[uuid.UUID]) -> None:
        """Drop the ids."""


# -- services ------------------------------------------------------------------------------


def bench_app(database_url: str, redis_url: str, data_dir: Path) -> Celery:
    env = {
        "SYNCWORKER_DATA_DIR": str(data_dir),
        "SYNCWORKER_DATABASE_URL": database_url,
        "SYNCWORKER_BROKER_URL": redis_url,
        "SYNCWORKER_REDIS_URL": redis_url,
        "SYNCWORKER_CREDENTIAL_KEYS": f"bench:{Keyring.generate_key()}",
    }
    return create_app(Settings.from_env(env))


# -- data --------------------------------------------------------------------------------


def seed(engine: Engine, *, first: int, count: int, due: int, now: datetime) -> None:
    """Bulk-insert integrations `first`..`first+count-1`; the first `due` are due stripe ones.

    The rest are spread over every provider and status, next due an hour or more from now,
    so no tick during the benchmark finds them due.
    """
    statement = text(f"""
        INSERT INTO integrations (
            id, organization_id, environment_id, name, identifier, provider, status,
            configurations, filters, "primary", conditions, status_changed_at, next_sync_at,
            created_at, updated_at)
        SELECT gen_random_uuid(), 'org-bench', :env, CASE WHEN due THEN 'due' ELSE 'idle' END,
            'bench-' || n, provider, status, '{{}}', '{{"objects": ["customers"]}}', false, '[]',
            :now,
            CASE WHEN due THEN :now - make_interval(secs => n % 600)
                 WHEN status IN {SYNCING_SQL} THEN :now + make_interval(secs => 3600 + n % 86400)
            END,
            :now, :now
        FROM (
            SELECT n, n < :due AS due,
                CASE WHEN n < :due THEN 'stripe'
                     ELSE (CAST(:providers AS text[]))[1 + n % :provider_count] END AS provider,
                CASE WHEN n < :due THEN 'active'
                     ELSE (CAST(:statuses AS text[]))[1 + (n / 9) % :status_count] END AS status
            FROM generate_series(CAST(:first AS bigint), :last) AS n
        ) AS generated
    """)  # noqa: S608 - the only interpolation is a constant list of status names
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO environments (id, organization_id, name, kind) "
                "VALUES (:env, 'org-bench', 'bench', 'production') ON CONFLICT DO NOTHING"
            ),
            {"env": ENVIRONMENT},
        )
        connection.execute(
            statement,
            {
                "env": ENVIRONMENT,
                "due": first + due,
                "providers": PROVIDERS,
                "provider_count": len(PROVIDERS),
                "statuses": STATUSES,
                "status_count": len(STATUSES),
                "now": now,
                "first": first,
                "last": first + count - 1,
            },
        )
    vacuum(engine)


def vacuum(engine: Engine) -> None:
    """Tidy and re-analyse the table, as autovacuum would between ticks in production."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE integrations"))


def make_due_again(engine: Engine, now: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE integrations SET next_sync_at = :now - interval '1 minute' "
                 "WHERE name = 'due'"),
            {"now": now},
        )  # fmt: skip
    vacuum(engine)


def count_stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.scalar(text("SELECT count(*) FROM integrations")) or 0)


# -- measurements ----------------------------------------------------------------------------


@dataclass
class Timings:
    tick: list[float]
    claim: list[float]
    bare: list[float]
    bare_batched: list[float]


def timed_tick(
    sessions: sessionmaker[Session], publisher: Any, policy: ProviderPolicy, expected: int
) -> float:
    start = time.perf_counter()
    report = dispatch_tick(sessions, publisher, policy, now=lambda: datetime.now(UTC))
    seconds = time.perf_counter() - start
    require(report.dispatched == expected, f"tick dispatched {report.dispatched}, not {expected}")
    return seconds


def bare_publish(app: Celery, policy: ProviderPolicy, count: int, *, batched: bool) -> float:
    """Seconds to publish `count` sync messages with send_task on one shared producer.

    `batched` also wraps them in kombu's `Producer.batch()`, as `CeleryPublisher` does:
    the fastest Celery can publish, against which the tick's own overhead shows.
    """
    ids = [str(uuid.uuid4()) for _ in range(count)]
    start = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch() if batched else nullcontext():
        for integration_id in ids:
            app.send_task(SYNC_TASK, args=(integration_id,), queue=policy.queue, producer=producer)
    return time.perf_counter() - start


def rounds(app: Celery, engine: Engine, redis: Redis, scale: Scale) -> Timings:
    """Interleaved rounds of: bare publish, claim-only tick, full tick."""
    runtime = runtime_of(app)
    policy = runtime.settings.providers[Provider.STRIPE]
    publisher = publisher_of(app)
    timings = Timings([], [], [], [])
    for number in range(scale.rounds + 1):  # round 0 warms connections and caches up
        redis.flushdb()
        bare = bare_publish(app, policy, scale.due, batched=False)
        require(redis.llen(policy.queue) == scale.due, "bare publish lost messages")
        redis.flushdb()
        batched = bare_publish(app, policy, scale.due, batched=True)
        require(redis.llen(policy.queue) == scale.due, "batched publish lost messages")
        redis.flushdb()
        make_due_again(engine, datetime.now(UTC))
        claim = timed_tick(runtime.sessions, DroppingPublisher(), policy, scale.due)
        make_due_again(engine, datetime.now(UTC))
        tick = timed_tick(runtime.sessions, publisher, policy, scale.due)
        require(redis.llen(policy.queue) == scale.due, "the tick did not publish every claim")
        redis.flushdb()
        if number:
            timings.bare.append(bare)
            timings.bare_batched.append(batched)
            timings.claim.append(claim)
            timings.tick.append(tick)
        print(
            f"  round {number}{' (warm-up)' if not number else ''}: bare {bare:.3f} s, "
            f"batched {batched:.3f} s, claim {claim:.3f} s, tick {tick:.3f} s",
            file=sys.stderr,
        )
    return timings


def empty_tick_ms(app: Celery, ticks: int) -> tuple[float, float]:
    """Median and worst milliseconds of a tick that finds nothing due."""
    runtime = runtime_of(app)
    policy = runtime.settings.providers[Provider.STRIPE]
    publisher = publisher_of(app)
    timed_tick(runtime.sessions, publisher, policy, 0)  # warm-up
    samples = [timed_tick(runtime.sessions, publisher, policy, 0) * 1000 for _ in range(ticks)]
    return statistics.median(samples), max(samples)


# -- report --------------------------------------------------------------------------------


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'value':>12}  target")
    print(f"{'-' * width}  {'-' * 12}  ------")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>12}  {target}")


def run(database_url: str, redis_url: str, scale: Scale) -> dict[str, Any]:
    engine = fresh_postgres_schema(database_url)
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    now = datetime.now(UTC)
    print(f"seeding {scale.stored:,} integrations ({scale.due:,} due) ...", file=sys.stderr)
    seed(engine, first=0, count=scale.stored, due=scale.due, now=now)
    with tempfile.TemporaryDirectory() as data_dir:
        app = bench_app(database_url, redis_url, Path(data_dir))
        try:
            timings = rounds(app, engine, redis, scale)
            empty_small, empty_small_max = empty_tick_ms(app, scale.empty_ticks)
            grow = scale.stored_large - scale.stored
            print(f"seeding {grow:,} more integrations (none due) ...", file=sys.stderr)
            seed(engine, first=scale.stored, count=grow, due=0, now=now)
            require(count_stored(engine) == scale.stored_large, "the large table is short")
            empty_large, empty_large_max = empty_tick_ms(app, scale.empty_ticks)
        finally:
            runtime_of(app).close()
            redis.flushdb()
            redis.close()
            engine.dispose()
    tick, claim, bare, batched = (
        statistics.median(t)
        for t in (timings.tick, timings.claim, timings.bare, timings.bare_batched)
    )
    return {
        "stored": scale.stored,
        "due": scale.due,
        "stored_large": scale.stored_large,
        "tick_s": round(tick, 4),
        "claim_s": round(claim, 4),
        "bare_publish_s": round(bare, 4),
        "tick_over_bare_publish": round(tick / bare, 3),
        "bare_batched_publish_s": round(batched, 4),
        "tick_over_bare_batched_publish": round(tick / batched, 3),
        "tick_per_s": round(scale.due / tick),
        "bare_publish_per_s": round(scale.due / bare),
        "empty_tick_ms_100k": round(empty_small, 3),
        "empty_tick_max_ms_100k": round(empty_small_max, 3),
        "empty_tick_ms_1m": round(empty_large, 3),
        "empty_tick_max_ms_1m": round(empty_large_max, 3),
    }


def report(figures: dict[str, Any]) -> None:
    due, small, large = figures["due"], figures["stored"], figures["stored_large"]
    ratio = figures["tick_over_bare_publish"]
    print_table(
        [
            (f"tick: claim + publish {due:,} due of {small:,}", f"{figures['tick_s']:.3f} s",
             f"<= {TARGET_TICK_OVER_BARE:g}x bare publish"),
            ("  of which the claim alone", f"{figures['claim_s']:.3f} s", ""),
            (f"bare publish of {due:,} messages", f"{figures['bare_publish_s']:.3f} s", ""),
            ("tick / bare publish", f"{ratio:.2f} x",
             "ok" if ratio <= TARGET_TICK_OVER_BARE else "MISSED"),
            (f"bare publish of {due:,}, batched", f"{figures['bare_batched_publish_s']:.3f} s",
             ""),
            ("tick / bare batched publish", f"{figures['tick_over_bare_batched_publish']:.2f} x",
             ""),
            (f"empty tick at {small:,} (median)", f"{figures['empty_tick_ms_100k']:.2f} ms",
             f"< {TARGET_EMPTY_TICK_MS:g} ms"),
            (f"empty tick at {large:,} (median)", f"{figures['empty_tick_ms_1m']:.2f} ms",
             f"< {TARGET_EMPTY_TICK_MS:g} ms"),
        ]
    )  # fmt: skip
    print(json.dumps(figures))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    service_arguments(parser, database_url=DEFAULT_DATABASE_URL, redis_url=DEFAULT_REDIS_URL)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one round")
    args = parser.parse_args(argv)
    report(run(args.database_url, args.redis_url, QUICK if args.quick else FULL))


if __name__ == "__main__":
    main()
