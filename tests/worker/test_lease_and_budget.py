"""Sync leases and request budgets, shared across processes (SPEC §5).

The Redis implementations run on fakeredis (Lua through `lupa`) and, when
TEST_REDIS_URL is set, on a real Redis (database 15 unless the URL names one,
flushed around each test); the in-process ones run on an injected monotonic clock.
Where the Redis server keeps the time, time passes by sleeping a few tens of ms.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import fakeredis
import pytest
import structlog
from redis import Redis
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.schema import SyncRun
from models.sync_runs import RunStart, start_run
from tests.conftest import IntegrationFactory, redis_url
from worker import redis_keys
from worker.budget import Budget, LocalBudget, RedisBudget
from worker.lease import Leases, LeaseStore, LocalLeaseStore, RedisLeaseStore

# Real Redis tests use this database unless TEST_REDIS_URL names one; it is flushed.
TEST_REDIS_DB = 15
SHORT_TTL_MS = 50  # a lease that lapses within a test
LONG_TTL_MS = 10_000  # a lease that outlives any test
NO_TASK = "no-task/"  # an owner prefix none of the tests' tokens start with
APP_TTL = timedelta(seconds=90)
WAIT_TOLERANCE = 0.05  # Redis keeps its own time: a few ms pass (and refill) between calls

Sessions = sessionmaker[Session]
REAL_REDIS = pytest.param("redis", marks=pytest.mark.redis)
RedisFactory = Callable[[], Redis]


class ManualMonotonic:
    """An injectable `time.monotonic` that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def redis_server(kind: str) -> Iterator[RedisFactory]:
    """Clients of one Redis server, one per "process"; an empty database throughout."""
    made: list[Redis] = []
    if kind == "fakeredis":
        server = fakeredis.FakeServer()

        def connect() -> Redis:
            made.append(fakeredis.FakeRedis(server=server))
            return made[-1]
    else:
        url = redis_url()

        def connect() -> Redis:
            made.append(Redis.from_url(url, db=TEST_REDIS_DB))
            return made[-1]

    connect().flushdb()
    try:
        yield connect
    finally:
        made[0].flushdb()
        for client in made:
            client.close()


@pytest.fixture(params=["fakeredis", REAL_REDIS])
def redis_clients(request: pytest.FixtureRequest) -> Iterator[RedisFactory]:
    with redis_server(request.param) as connect:
        yield connect


@dataclass
class LeaseBackend:
    """Where leases live, how a new process reaches them, and how time passes there."""

    connect: Callable[[], LeaseStore]
    pass_time: Callable[[float], None]


@pytest.fixture(params=["fakeredis", REAL_REDIS, "local"])
def lease_backend(request: pytest.FixtureRequest) -> Iterator[LeaseBackend]:
    if request.param == "local":
        monotonic = ManualMonotonic()
        store = LocalLeaseStore(monotonic)  # one process: every "connection" is the same table
        yield LeaseBackend(lambda: store, monotonic.advance)
        return
    with redis_server(request.param) as clients:
        yield LeaseBackend(lambda: RedisLeaseStore(clients()), time.sleep)


# --- lease stores -----------------------------------------------------------------------


def test_lease_cannot_be_taken_twice(lease_backend: LeaseBackend) -> None:
    first, second = lease_backend.connect(), lease_backend.connect()

    assert first.acquire("int-1", "token-a", LONG_TTL_MS, owner=NO_TASK, attempt=0)
    assert not second.acquire("int-1", "token-b", LONG_TTL_MS, owner=NO_TASK, attempt=0)
    assert not first.acquire("int-1", "token-a", LONG_TTL_MS, owner=NO_TASK, attempt=0)
    assert second.acquire("int-2", "token-b", LONG_TTL_MS, owner=NO_TASK, attempt=0)


def test_lease_is_released_only_by_its_owner_token(lease_backend: LeaseBackend) -> None:
    store = lease_backend.connect()
    store.acquire("int-1", "token-a", LONG_TTL_MS, owner=NO_TASK, attempt=0)

    store.release("int-1", "token-b")
    assert not store.acquire("int-1", "token-c", LONG_TTL_MS, owner=NO_TASK, attempt=0)

    store.release("int-1", "token-a")
    assert store.acquire("int-1", "token-c", LONG_TTL_MS, owner=NO_TASK, attempt=0)


def test_renewal_extends_the_lease_for_its_owner_only(lease_backend: LeaseBackend) -> None:
    store = lease_backend.connect()
    store.acquire("int-1", "token-a", SHORT_TTL_MS, owner=NO_TASK, attempt=0)

    assert not store.renew("int-1", "token-b", LONG_TTL_MS)
    assert store.renew("int-1", "token-a", LONG_TTL_MS)
    lease_backend.pass_time(SHORT_TTL_MS * 3 / 1000)

    assert not store.acquire("int-1", "token-b", LONG_TTL_MS, owner=NO_TASK, attempt=0)


def test_expired_lease_can_be_retaken_and_its_old_owner_cannot_touch_it(
    lease_backend: LeaseBackend,
) -> None:
    store = lease_backend.connect()
    store.acquire("int-1", "token-a", SHORT_TTL_MS, owner=NO_TASK, attempt=0)
    lease_backend.pass_time(SHORT_TTL_MS * 3 / 1000)

    assert store.acquire("int-1", "token-b", LONG_TTL_MS, owner=NO_TASK, attempt=0)
    assert not store.renew("int-1", "token-a", LONG_TTL_MS)
    store.release("int-1", "token-a")
    assert not store.acquire("int-1", "token-c", LONG_TTL_MS, owner=NO_TASK, attempt=0)


# --- Leases: the process-wide holder ------------------------------------------------------


@pytest.fixture
def make_leases(
    lease_backend: LeaseBackend, sessions: Sessions, clock: ManualClock
) -> Iterator[Callable[[], Leases]]:
    """One `Leases` per "process", all on the same backend; closed after the test."""
    made: list[Leases] = []

    def create() -> Leases:
        leases = Leases(
            lease_backend.connect(),
            sessions,
            ttl=timedelta(milliseconds=LONG_TTL_MS),
            app_ttl=APP_TTL,
            now=clock.now,
        )
        made.append(leases)
        return leases

    yield create
    for leases in made:
        leases.close()


def start(sessions: Sessions, clock: ManualClock, integration_id: uuid.UUID) -> uuid.UUID:
    with sessions() as session, session.begin():
        started = start_run(
            session, integration_id, task_id=uuid.uuid4().hex, now=clock.now(), lease=APP_TTL
        )
    assert isinstance(started, RunStart), started
    return started.run_id


def lease_expiry(sessions: Sessions, run_id: uuid.UUID) -> datetime | None:
    with sessions() as session:
        return session.get_one(SyncRun, run_id).lease_expires_at


def test_two_processes_never_hold_one_integrations_lease_at_once(
    make_leases: Callable[[], Leases],
) -> None:
    one, other = make_leases(), make_leases()

    token = one.acquire("int-1")
    assert token is not None
    assert other.acquire("int-1") is None

    one.release("int-1", token)
    assert other.acquire("int-1") is not None


def test_a_retry_of_the_same_task_takes_over_the_lease_its_earlier_attempt_left(
    lease_backend: LeaseBackend, sessions: Sessions, clock: ManualClock
) -> None:
    # given: attempt 0 of task-1 holds the lease and could not give it back (Redis blipped,
    # its connection was lost), in another process
    earlier, retry, other = (
        Leases(lease_backend.connect(), sessions, ttl=timedelta(seconds=60), app_ttl=APP_TTL,
               now=clock.now)
        for _ in range(3)
    )  # fmt: skip
    assert earlier.acquire("int-1", task_id="task-1", attempt=0) is not None

    # when / then: another task, or a duplicate of the same attempt, is refused; the retry
    # (attempt 1) of task-1 takes it over
    assert other.acquire("int-1", task_id="task-2", attempt=1) is None
    assert other.acquire("int-1") is None
    assert other.acquire("int-1", task_id="task-1", attempt=0) is None
    token = retry.acquire("int-1", task_id="task-1", attempt=1)
    assert token is not None
    # and the lease is the retry's own now: the others, and the earlier attempt, cannot take it
    assert other.acquire("int-1", task_id="task-2", attempt=5) is None
    assert other.acquire("int-1", task_id="task-1", attempt=0) is None
    retry.release("int-1", token)
    assert other.acquire("int-1", task_id="task-2") is not None
    for leases in (earlier, retry, other):
        leases.close()


def test_renew_all_extends_the_running_runs_row_lease(
    make_leases: Callable[[], Leases],
    make_integration: IntegrationFactory,
    sessions: Sessions,
    clock: ManualClock,
) -> None:
    # given: a sync holding its lease, attached to its run
    integration = make_integration()
    leases = make_leases()
    assert leases.acquire(str(integration.id)) is not None
    run_id = start(sessions, clock, integration.id)
    leases.attach_run(str(integration.id), run_id)

    # when: time passes and the renewer runs
    clock.advance(timedelta(minutes=1))
    renewed = leases.renew_all()

    # then
    assert renewed == 1
    assert lease_expiry(sessions, run_id) == clock.now() + APP_TTL


def test_renew_all_leaves_released_and_finished_runs_alone(
    make_leases: Callable[[], Leases],
    make_integration: IntegrationFactory,
    sessions: Sessions,
    clock: ManualClock,
) -> None:
    leases = make_leases()
    released, finished = make_integration(), make_integration()
    ids: dict[str, uuid.UUID] = {}
    for integration in (released, finished):
        token = leases.acquire(str(integration.id))
        assert token is not None
        ids[str(integration.id)] = start(sessions, clock, integration.id)
        leases.attach_run(str(integration.id), ids[str(integration.id)])
        if integration is released:
            leases.release(str(integration.id), token)
    with sessions() as session, session.begin():
        session.get_one(SyncRun, ids[str(finished.id)]).finished_at = clock.now()
    expiry = {run_id: lease_expiry(sessions, run_id) for run_id in ids.values()}

    clock.advance(timedelta(minutes=1))
    assert leases.renew_all() == 1

    assert {run_id: lease_expiry(sessions, run_id) for run_id in ids.values()} == expiry


class FinishingDuringRenewal:
    """A lease store whose renewal of one lease races with that sync finishing.

    The renewer copies the held leases, then renews each; this store lets the sync release
    its lease between the two, as a sync finishing at that moment does.
    """

    def __init__(self, store: LeaseStore) -> None:
        self.store = store
        self.leases: Leases | None = None
        self.finish: dict[str, str] = {}

    def acquire(
        self, integration_id: str, token: str, ttl_ms: int, *, owner: str, attempt: int
    ) -> bool:
        return self.store.acquire(integration_id, token, ttl_ms, owner=owner, attempt=attempt)

    def renew(self, integration_id: str, token: str, ttl_ms: int) -> bool:
        if integration_id in self.finish and self.leases is not None:
            self.leases.release(integration_id, self.finish.pop(integration_id))
        return self.store.renew(integration_id, token, ttl_ms)

    def release(self, integration_id: str, token: str) -> None:
        self.store.release(integration_id, token)


def test_a_sync_finishing_during_a_renewal_is_not_reported_as_a_lost_lease(
    lease_backend: LeaseBackend, sessions: Sessions, clock: ManualClock
) -> None:
    # given two held leases: one whose sync finishes while the renewer works, and one whose
    # key really vanished (expired during a long pause)
    store = FinishingDuringRenewal(lease_backend.connect())
    leases = Leases(
        store, sessions, ttl=timedelta(milliseconds=LONG_TTL_MS), app_ttl=APP_TTL, now=clock.now
    )
    store.leases = leases
    finished, vanished = "int-finished", "int-vanished"
    token = leases.acquire(finished)
    assert token is not None and leases.acquire(vanished) is not None
    store.finish[finished] = token
    force_expire(lease_backend.connect(), vanished)

    # when the renewer runs
    with structlog.testing.capture_logs() as logs:
        leases.renew_all()
    leases.close()

    # then only the real loss is reported
    lost = [entry["integration_id"] for entry in logs if entry["event"] == "lease.lost"]
    assert lost == [vanished]


def force_expire(store: LeaseStore, integration_id: str) -> None:
    """Make a lease vanish under its holder, as an expiry during a long pause does."""
    if isinstance(store, LocalLeaseStore):
        store._leases.pop(integration_id, None)
    elif isinstance(store, RedisLeaseStore):
        store._redis.delete(redis_keys.lease(integration_id))


# --- budgets -------------------------------------------------------------------------------


@dataclass
class BudgetBackend:
    """How a new process reaches the budgets, and how precisely their waits come out."""

    connect: Callable[[], Budget]
    tolerance: float


@pytest.fixture(params=["fakeredis", REAL_REDIS, "local"])
def budget_backend(request: pytest.FixtureRequest) -> Iterator[BudgetBackend]:
    if request.param == "local":
        budget = LocalBudget(ManualMonotonic())  # frozen time: waits come out exact
        yield BudgetBackend(lambda: budget, 1e-9)
        return
    with redis_server(request.param) as clients:
        yield BudgetBackend(lambda: RedisBudget(clients()), WAIT_TOLERANCE)


def test_first_burst_reservations_wait_nothing_then_each_waits_one_more_interval(
    budget_backend: BudgetBackend,
) -> None:
    budget = budget_backend.connect()

    waits = [budget.reserve("stripe:acct-1", 2.0, 3) for _ in range(6)]

    assert waits == pytest.approx([0, 0, 0, 0.5, 1.0, 1.5], abs=budget_backend.tolerance)


def test_two_processes_spend_one_shared_bucket(budget_backend: BudgetBackend) -> None:
    one, other = budget_backend.connect(), budget_backend.connect()

    waits = [process.reserve("stripe:acct-1", 1.0, 2) for process in (one, other, one, other)]

    assert waits == pytest.approx([0, 0, 1.0, 2.0], abs=budget_backend.tolerance)


def test_each_key_has_its_own_bucket(budget_backend: BudgetBackend) -> None:
    budget = budget_backend.connect()
    budget.reserve("stripe:acct-1", 1.0, 1)

    assert budget.reserve("stripe:acct-2", 1.0, 1) == 0.0
    assert budget.reserve("stripe:acct-1", 1.0, 1) == pytest.approx(
        1.0, abs=budget_backend.tolerance
    )


def test_redis_bucket_refills_with_server_time_up_to_the_burst(
    redis_clients: RedisFactory,
) -> None:
    budget = RedisBudget(redis_clients())
    assert budget.reserve("k", 20.0, 2) == 0.0
    assert budget.reserve("k", 20.0, 2) == 0.0

    time.sleep(0.5)  # ten tokens' worth of refill, capped at the burst of two

    waits = [budget.reserve("k", 20.0, 2) for _ in range(3)]
    assert waits == pytest.approx([0, 0, 0.05], abs=0.03)


def test_redis_bucket_state_expires_once_it_would_be_full_again(
    redis_clients: RedisFactory,
) -> None:
    client = redis_clients()
    RedisBudget(client).reserve("k", 1.0, 2)

    ttl_ms = client.pttl("syncworker:budget:k")

    # one token short of the burst: full again in one second, kept a second longer
    assert 1000 < ttl_ms <= 2000


def test_local_bucket_refills_with_elapsed_time_up_to_the_burst() -> None:
    monotonic = ManualMonotonic()
    budget = LocalBudget(monotonic)
    for _ in range(6):
        budget.reserve("k", 2.0, 3)  # three tokens owed

    monotonic.advance(1.0)  # two tokens back: one still owed
    assert budget.reserve("k", 2.0, 3) == 1.0

    monotonic.advance(60.0)  # far more than the burst: capped at three
    assert [budget.reserve("k", 2.0, 3) for _ in range(4)] == [0, 0, 0, 0.5]
