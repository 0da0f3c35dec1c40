"""End to end through a real Celery worker: Redis broker, PostgreSQL, the Stripe fake over HTTP.

No eager mode: messages go through Redis, tasks run on a worker's threads (or in a
separate `celery` process, for the crash test), and the outcome is read back from the
database. Every wait polls against a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from redis import Redis
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from fakes.server import Request, Response
from fakes.stripe import FakeStripe
from models.credentials import Keyring
from models.db import make_sessionmaker
from models.integrations import NewIntegration, create_integration, ensure_environment
from models.schema import Integration, StatusChange, SyncRun
from models.status import Provider, Status, SyncOutcome, Trigger
from models.sync_runs import REAPED_ERROR, reap_abandoned
from scheduler.beat import CONTROL_QUEUE, DISPATCH_TASK, SYNC_TASK
from scheduler.providers import DEFAULT_POLICIES
from tests.conftest import postgres_url, redis_url
from worker.app import create_app
from worker.runtime import runtime_of
from worker.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
STRIPE_QUEUE = DEFAULT_POLICIES[Provider.STRIPE].queue
# Generous for a loaded CI box; a passing run waits a fraction of it.
DEADLINE_S = 20.0
CUSTOMERS = 250  # three pages of 100: one sync pass is three requests to /v1/customers
PAGES_PER_PASS = 3
# The crash test's lease and visibility timeout: short, so the test takes seconds.
SHORT_LEASE_S = 2
SHORT_VISIBILITY_S = 5


class MalformingStripe(FakeStripe):
    """The Stripe fake, except that some accounts get a body that is not JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.malformed_keys: set[str] = set()

    def handle(self, request: Request) -> Response:
        response = super().handle(request)
        if request.bearer_token in self.malformed_keys:
            return Response(200, b'{"data": [', {"Content-Type": "application/json"})
        return response


@dataclass(frozen=True)
class TaskDone:
    name: str
    task_id: str
    state: str
    retval: Any


class Outcomes:
    """Every task this process's workers finished (task_postrun), in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: list[TaskDone] = []

    def record(
        self, task_id: str = "", task: Any = None, retval: Any = None, state: str = "", **_: Any
    ) -> None:
        with self._lock:
            self._done.append(TaskDone(getattr(task, "name", ""), task_id, state, retval))

    def of(self, task_id: str) -> list[TaskDone]:
        with self._lock:
            return [done for done in self._done if done.task_id == task_id]

    def named(self, name: str) -> list[TaskDone]:
        with self._lock:
            return [done for done in self._done if done.name == name]


def wait_for(condition: Callable[[], T], *, what: str, timeout: float = DEADLINE_S) -> T:
    """Poll `condition` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running_worker(app: Celery) -> Iterator[None]:
    """A threads-pool worker in this process, consuming every queue the app declares."""
    queues = [queue.name for queue in app.conf.task_queues]
    with start_worker(
        app,
        pool="threads",
        concurrency=app.conf.worker_concurrency,
        perform_ping_check=False,
        loglevel="WARNING",
        queues=queues,
        shutdown_timeout=15,
    ):
        yield


def dispatch_tick(app: Celery) -> None:
    """Send the stripe tick the way beat does."""
    app.send_task(DISPATCH_TASK, args=(Provider.STRIPE.value,), queue=CONTROL_QUEUE)


def restore_unacked_every_second(app: Celery) -> None:
    """Make the Redis transport look for lapsed unacked messages every second.

    By default kombu sweeps every 10 s and scans on every tenth sweep: fine beside a
    30-minute visibility timeout, far too slow for this test's few seconds.
    """
    options = dict(app.conf.broker_transport_options)
    options.update(unacked_restore_interval=1, unacked_restore_throttle=1)
    app.conf.broker_transport_options = options


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def redis_db() -> Iterator[Redis]:
    """The test Redis database, empty before and after (queues, leases, delivery counts)."""
    client = Redis.from_url(redis_url())
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def stripe() -> Iterator[MalformingStripe]:
    with MalformingStripe() as fake:
        yield fake


@pytest.fixture
def worker_env(
    pg_engine: Engine, redis_db: Redis, stripe: FakeStripe, tmp_path: Path
) -> dict[str, str]:
    """The SYNCWORKER_* environment of a worker on these services."""
    return {
        "SYNCWORKER_DATA_DIR": str(tmp_path),
        "SYNCWORKER_DATABASE_URL": postgres_url(),
        "SYNCWORKER_BROKER_URL": redis_url(),
        "SYNCWORKER_REDIS_URL": redis_url(),
        "SYNCWORKER_CREDENTIAL_KEYS": f"e2e:{Keyring.generate_key()}",
        "SYNCWORKER_STRIPE_BASE_URL": stripe.url,
        "SYNCWORKER_CONCURRENCY": "4",
        "SYNCWORKER_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def make_app(worker_env: dict[str, str]) -> Iterator[Callable[..., Celery]]:
    """Build an app from the worker environment plus `SUFFIX=value` overrides."""
    apps: list[Celery] = []

    def create(**overrides: str) -> Celery:
        env = {**worker_env, **{f"SYNCWORKER_{k}": v for k, v in overrides.items()}}
        app = create_app(Settings.from_env(env))
        apps.append(app)
        return app

    yield create
    for app in apps:
        runtime_of(app).close()


@pytest.fixture
def app(make_app: Callable[..., Celery]) -> Celery:
    return make_app()


@pytest.fixture
def sessions(pg_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(pg_engine)


@pytest.fixture
def add_integration(
    sessions: sessionmaker[Session], worker_env: dict[str, str], stripe: FakeStripe
) -> Callable[..., uuid.UUID]:
    """Create a due stripe integration whose fake account has CUSTOMERS customers."""
    keyring = Settings.from_env(worker_env).keyring()

    def create(secret_key: str) -> uuid.UUID:
        stripe.add_account(secret_key, customers=CUSTOMERS)
        with sessions() as session, session.begin():
            ensure_environment(
                session, "env-e2e", organization_id="org-e2e", name="e2e", kind="production"
            )
            spec = NewIntegration(
                environment_id="env-e2e",
                name=secret_key,
                identifier=secret_key,
                provider=Provider.STRIPE.value,
                credentials_sealed=keyring.seal({"secret_key": secret_key}),
                filters={"objects": ["customers"]},
            )
            change = create_integration(session, spec, now=datetime.now(UTC))
        return change.integration_id

    return create


@pytest.fixture
def outcomes() -> Iterator[Outcomes]:
    seen = Outcomes()
    task_postrun.connect(seen.record, weak=False)
    yield seen
    task_postrun.disconnect(seen.record)


@pytest.fixture
def worker_process(
    worker_env: dict[str, str], tmp_path: Path
) -> Callable[..., AbstractContextManager[subprocess.Popen[bytes]]]:
    """Run `celery -A worker worker -P threads` in its own process group, killed on the way out.

    Called with `SUFFIX=value` overrides of the worker environment; its log goes to
    `worker.log` in the test's temporary directory.
    """

    @contextmanager
    def run(**overrides: str) -> Iterator[subprocess.Popen[bytes]]:
        env = {**os.environ, **worker_env, **{f"SYNCWORKER_{k}": v for k, v in overrides.items()}}
        command = [
            str(Path(sys.executable).with_name("celery")),
            "-A", "worker", "worker", "-P", "threads", "-c", "4",
            "-Q", ",".join([CONTROL_QUEUE, STRIPE_QUEUE]),
            "--without-heartbeat", "--without-mingle", "--without-gossip",
        ]  # fmt: skip
        with (tmp_path / "worker.log").open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own command line, no shell
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield process
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=DEADLINE_S)

    return run


def runs_of(sessions: sessionmaker[Session], integration_id: uuid.UUID) -> list[SyncRun]:
    with sessions() as session:
        stmt = select(SyncRun).where(SyncRun.integration_id == integration_id)
        return list(session.scalars(stmt.order_by(SyncRun.started_at)))


def finished_runs(sessions: sessionmaker[Session], count: int) -> Callable[[], bool]:
    def check() -> bool:
        with sessions() as session:
            done = session.scalar(
                select(func.count()).select_from(SyncRun).where(SyncRun.finished_at.is_not(None))
            )
        return done == count

    return check


def integration(sessions: sessionmaker[Session], integration_id: uuid.UUID) -> Integration:
    with sessions() as session:
        return session.get_one(Integration, integration_id)


def changes_of(sessions: sessionmaker[Session], integration_id: uuid.UUID) -> list[StatusChange]:
    with sessions() as session:
        stmt = select(StatusChange).where(StatusChange.integration_id == integration_id)
        return list(session.scalars(stmt.order_by(StatusChange.id)))


# -- tests -------------------------------------------------------------------------------


def test_dispatch_tick_syncs_due_integrations_and_applies_first_sync_outcomes(
    app: Celery,
    stripe: MalformingStripe,
    sessions: sessionmaker[Session],
    add_integration: Callable[..., uuid.UUID],
) -> None:
    # given: two due integrations, one of whose accounts answers with broken JSON
    good = add_integration("sk_test_good")
    broken = add_integration("sk_test_broken")
    stripe.malformed_keys.add("sk_test_broken")

    # when: beat's stripe tick reaches a worker
    with running_worker(app):
        dispatch_tick(app)
        wait_for(finished_runs(sessions, 2), what="both syncs to finish")

    # then: the good one synced and stays active, with no audit row for staying put
    [run] = runs_of(sessions, good)
    assert (run.outcome, run.applied, run.status_after) == ("succeeded", True, "active")
    assert run.records_received == CUSTOMERS and run.first_sync
    assert integration(sessions, good).status == Status.ACTIVE
    assert [c.trigger for c in changes_of(sessions, good)] == [Trigger.CREATED]
    # the broken one's first sync failed: quality assurance, audited against its run
    [run] = runs_of(sessions, broken)
    assert (run.outcome, run.status_after) == (SyncOutcome.FAILED, Status.QUALITY_ASSURANCE)
    assert integration(sessions, broken).status == Status.QUALITY_ASSURANCE
    change = changes_of(sessions, broken)[-1]
    assert (change.from_status, change.to_status) == (Status.ACTIVE, Status.QUALITY_ASSURANCE)
    assert (change.trigger, change.sync_run_id) == (Trigger.SYNC_FAILED, run.id)
    assert "not valid JSON" in (change.reason or "")


def test_a_duplicated_sync_message_syncs_once(
    app: Celery,
    stripe: FakeStripe,
    sessions: sessionmaker[Session],
    add_integration: Callable[..., uuid.UUID],
    outcomes: Outcomes,
) -> None:
    # given: the same sync message published twice
    integration_id = add_integration("sk_test_twice")
    task_id = str(uuid.uuid4())
    for _ in range(2):
        app.send_task(SYNC_TASK, args=(str(integration_id),), task_id=task_id, queue=STRIPE_QUEUE)

    # when
    with running_worker(app):
        wait_for(lambda: len(outcomes.of(task_id)) == 2, what="both deliveries to be handled")

    # then: one delivery synced, the other was skipped; one pass over the API
    retvals = sorted((done.retval for done in outcomes.of(task_id)), key=lambda r: "skipped" in r)
    assert retvals[0]["outcome"] == "succeeded"
    assert "skipped" in retvals[1]
    assert len(runs_of(sessions, integration_id)) == 1
    assert len(stripe.requests_to("/v1/customers")) == PAGES_PER_PASS


def test_a_run_abandoned_by_a_killed_worker_is_reaped_and_synced_once_again(
    make_app: Callable[..., Celery],
    worker_process: Callable[..., AbstractContextManager[subprocess.Popen[bytes]]],
    stripe: FakeStripe,
    add_integration: Callable[..., uuid.UUID],
    outcomes: Outcomes,
) -> None:
    short = {
        "LEASE_TTL": str(SHORT_LEASE_S),
        "VISIBILITY_TIMEOUT": str(SHORT_VISIBILITY_S),
        # The visibility timeout stays above the task's time limit plus the retry delay.
        "TASK_TIME_LIMIT": "2",
        "SYNC_DEADLINE": "1",  # below the time limit; the kill comes well before it
        "MAX_RETRY_DELAY": "1",
    }
    app = make_app(**short)
    sessions = runtime_of(app).sessions
    integration_id = add_integration("sk_test_killed")
    stripe.latency(60)  # the first sync hangs on its first request

    # given: a real worker process, killed while its sync is in flight
    with worker_process(**short) as process:
        dispatch_tick(app)
        [abandoned] = wait_for(lambda: runs_of(sessions, integration_id), what="a running sync")
        assert abandoned.running
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=DEADLINE_S)

    # when: its lease lapses and the reaper runs
    def reap() -> list[uuid.UUID]:
        with sessions() as session, session.begin():
            return reap_abandoned(session, now=datetime.now(UTC))

    assert wait_for(reap, what="the lease to lapse") == [integration_id]

    # then: the run is closed as abandoned and the integration is due again
    [reaped] = runs_of(sessions, integration_id)
    assert (reaped.finished_at is not None, reaped.error) == (True, REAPED_ERROR)
    due = integration(sessions, integration_id).next_sync_at
    assert due is not None and due <= datetime.now(UTC)

    # and: a new worker's tick syncs it once; the redelivered message is skipped
    stripe.latency(0)
    restore_unacked_every_second(app)
    with running_worker(app):
        dispatch_tick(app)
        wait_for(finished_runs(sessions, 2), what="the new sync")
        [redelivered] = wait_for(
            lambda: outcomes.of(abandoned.task_id or ""),
            what="the killed worker's message to come back",
            timeout=SHORT_VISIBILITY_S + DEADLINE_S,
        )
    assert "skipped" in redelivered.retval
    runs = runs_of(sessions, integration_id)
    assert [run.outcome for run in runs] == [None, SyncOutcome.SUCCEEDED]
    assert len(outcomes.named(SYNC_TASK)) == 2  # the new sync and the skipped redelivery


def test_a_rate_limited_sync_retries_through_celery_after_retry_after(
    make_app: Callable[..., Celery],
    stripe: FakeStripe,
    sessions: sessionmaker[Session],
    add_integration: Callable[..., uuid.UUID],
) -> None:
    # given: more 429s than the HTTP layer's three in-process attempts absorb
    app = make_app(MAX_RETRY_DELAY="2")
    integration_id = add_integration("sk_test_limited")
    stripe.rate_limit_next(3, retry_after=1)

    # when
    with running_worker(app):
        dispatch_tick(app)
        wait_for(finished_runs(sessions, 2), what="the retried sync")

    # then: the first attempt closed as transient, the retry succeeded after Retry-After
    first, second = runs_of(sessions, integration_id)
    assert first.outcome is None and (first.error or "").startswith("transient: ")
    assert "429" in (first.error or "")
    assert (second.attempt, second.outcome) == (1, SyncOutcome.SUCCEEDED)
    assert first.finished_at is not None
    assert (second.started_at - first.finished_at).total_seconds() >= 1.0
    assert integration(sessions, integration_id).status == Status.ACTIVE


def test_a_database_connection_the_server_dropped_retries_the_sync_on_a_fresh_pool(
    make_app: Callable[..., Celery],
    pg_engine: Engine,
    sessions: sessionmaker[Session],
    add_integration: Callable[..., uuid.UUID],
    outcomes: Outcomes,
) -> None:
    # given: a worker whose pooled connections the server then drops (a restart, a proxy)
    app = make_app(MAX_RETRY_DELAY="1")
    integration_id = add_integration("sk_test_dropped")
    with running_worker(app):
        dispatch_tick(app)
        wait_for(finished_runs(sessions, 1), what="the first sync")
        with pg_engine.connect() as connection:
            dropped = connection.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).scalar_one()
        assert dropped >= 1
        pg_engine.dispose()  # the test's own pool lost its connections too

        # when: the integration's next sync arrives
        task_id = app.send_task(SYNC_TASK, args=(str(integration_id),), queue=STRIPE_QUEUE).id
        wait_for(lambda: [d for d in outcomes.of(task_id) if d.state == "SUCCESS"], what="retry")

    # then: the dropped connection cost one retry, not the sync
    assert [done.state for done in outcomes.of(task_id)] == ["RETRY", "SUCCESS"]
    first, second = runs_of(sessions, integration_id)
    assert (first.outcome, second.outcome) == (SyncOutcome.SUCCEEDED, SyncOutcome.SUCCEEDED)
    assert second.attempt == 1


def endless_customers(request: Request) -> Response:
    """Customers that never end: each page is ten new ones and says `has_more`."""
    after = request.query.get("starting_after")
    first = int(after.removeprefix("cus_")) + 1 if after else 0
    data = [
        {"id": f"cus_{n:08d}", "object": "customer", "created": 1_800_000_000 - n}
        for n in range(first, first + 10)
    ]
    return Response.json({"object": "list", "data": data, "has_more": True})


def test_a_sync_that_never_ends_stops_at_its_deadline_on_the_threads_pool(
    make_app: Callable[..., Celery],
    stripe: MalformingStripe,
    sessions: sessionmaker[Session],
    add_integration: Callable[..., uuid.UUID],
    outcomes: Outcomes,
) -> None:
    # given: a provider whose pages never end, and a one-second sync deadline, on the threads
    # pool, which enforces no task time limit itself
    app = make_app(SYNC_DEADLINE="1", TASK_TIME_LIMIT="3", LEASE_TTL="2")
    integration_id = add_integration("sk_test_endless")
    stripe.route("GET", "/v1/customers", endless_customers)
    stripe.latency(0.02)

    # when
    with running_worker(app):
        task_id = app.send_task(SYNC_TASK, args=(str(integration_id),), queue=STRIPE_QUEUE).id
        wait_for(lambda: outcomes.of(task_id), what="the endless sync to end")
    # (leaving the block is the worker's warm shutdown: it waits for every task to end)

    # then: the task ended, the run kept what it stored and named the limit, its lease is gone
    [done] = outcomes.of(task_id)
    assert (done.state, done.retval["outcome"]) == ("SUCCESS", SyncOutcome.SUCCEEDED_WITH_WARNINGS)
    [run] = runs_of(sessions, integration_id)
    assert (run.applied, run.lease_expires_at) == (True, None)
    assert any("SYNCWORKER_SYNC_DEADLINE" in warning for warning in run.warnings)
    assert run.records_received > 0
    assert integration(sessions, integration_id).status == Status.QUALITY_ASSURANCE
    with Redis.from_url(redis_url()) as redis:
        assert redis.keys("*lease*") == []


def test_a_database_connection_dropped_mid_sync_is_retried_by_the_same_task_not_skipped(
    make_app: Callable[..., Celery],
    stripe: MalformingStripe,
    sessions: sessionmaker[Session],
    add_integration: Callable[..., uuid.UUID],
    outcomes: Outcomes,
) -> None:
    # given: a sync in flight, each page slow enough to drop its connections mid-sync
    app = make_app(MAX_RETRY_DELAY="1")
    integration_id = add_integration("sk_test_dropped_mid_sync")
    stripe.latency(0.3)
    with running_worker(app):
        task_id = app.send_task(SYNC_TASK, args=(str(integration_id),), queue=STRIPE_QUEUE).id
        wait_for(lambda: runs_of(sessions, integration_id), what="the sync to start")

        # when: the server terminates every connection of the database after start_run
        with psycopg.connect(postgres_url(), autocommit=True) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        sessions.kw["bind"].dispose()  # the test's own pool lost its connections too
        stripe.latency(0)
        wait_for(lambda: [d for d in outcomes.of(task_id) if d.state == "SUCCESS"], what="retry")

    # then: the task's retry took over and synced; nothing was lost or applied twice
    assert [done.state for done in outcomes.of(task_id)] == ["RETRY", "SUCCESS"]
    first, retried = runs_of(sessions, integration_id)
    assert (first.outcome, first.finished_at is not None) == (None, True)
    assert (retried.attempt, retried.outcome) == (1, SyncOutcome.SUCCEEDED)
    assert first.records_received + retried.records_received == CUSTOMERS
    assert integration(sessions, integration_id).status == Status.ACTIVE
    assert (first.applied, retried.applied) == (False, True)
