"""Two workers on one integration at once, on PostgreSQL: the row lock keeps them in line.

SQLite serialises every writer with BEGIN IMMEDIATE, so only PostgreSQL can show
the row lock at work; these tests skip without TEST_DATABASE_URL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from itertools import pairwise
from typing import Any

import psycopg.errors
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.db import lock_integration, make_sessionmaker
from models.integrations import deactivate
from models.schema import Integration, StatusChange, SyncRun
from models.status import SyncOutcome
from models.sync_runs import (
    REAPED_ERROR,
    RunStart,
    SyncResult,
    finish_run,
    reap_abandoned,
    start_run,
)
from tests.conftest import START, integration_factory

pytestmark = pytest.mark.postgres

ITERATIONS = 30
LEASE = timedelta(minutes=1)
# Each thread's outcome in turn; neighbours differ, so whichever applies second changes
# the status again and both results leave an audit row.
OUTCOMES = [
    SyncOutcome.AUTH_FAILED,
    SyncOutcome.FAILED,
    SyncOutcome.SUCCEEDED_WITH_WARNINGS,
    SyncOutcome.SUCCEEDED,
]
DESTINATION = {
    SyncOutcome.AUTH_FAILED: "auth_failing",
    SyncOutcome.FAILED: "sync_failing",
    SyncOutcome.SUCCEEDED_WITH_WARNINGS: "sync_warnings",
    SyncOutcome.SUCCEEDED: "active",
}
# Upper bound for one thread to finish, far above what a lock wait takes here.
JOIN_TIMEOUT_S = 30


@pytest.fixture
def sessions(pg_engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(pg_engine)


def in_threads(*targets: Callable[[], Any]) -> list[Any]:
    """Run each target in its own thread, all released at once by a barrier."""
    barrier = threading.Barrier(len(targets))

    def run(target: Callable[[], Any]) -> Any:
        barrier.wait(JOIN_TIMEOUT_S)
        return target()

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = [pool.submit(run, target) for target in targets]
        return [future.result(JOIN_TIMEOUT_S) for future in futures]


def test_concurrent_results_keep_the_audit_trail_chained(
    sessions: sessionmaker[Session],
) -> None:
    # given an integration past its first sync
    clock = ManualClock(START)
    integration = integration_factory(sessions, clock)()
    run_ids = [open_run(sessions, integration.id, clock)]
    finish(sessions, run_ids[0], SyncOutcome.SUCCEEDED, clock)
    for iteration in range(ITERATIONS):
        # when two workers apply the results of two runs at the same moment
        first = open_run(sessions, integration.id, clock)
        clock.advance(LEASE)  # the first run's lease lapses, so a second run may start
        second = open_run(sessions, integration.id, clock)
        outcomes = OUTCOMES[iteration % 4], OUTCOMES[(iteration + 1) % 4]
        in_threads(
            partial(finish, sessions, first, outcomes[0], clock),
            partial(finish, sessions, second, outcomes[1], clock),
        )
        run_ids += [first, second]
        clock.advance(LEASE)
    # then the audit trail is one unbroken chain that ends at the stored status
    with sessions() as session:
        rows = list(
            session.scalars(
                select(StatusChange)
                .where(StatusChange.integration_id == integration.id)
                .order_by(StatusChange.id)
            )
        )
        runs = {run.id: run for run in session.scalars(select(SyncRun))}
        stored = session.get_one(Integration, integration.id)
    assert rows[0].from_status is None
    for before, after in pairwise(rows):
        assert after.from_status == before.to_status, (before.id, after.id)
    assert stored.status == rows[-1].to_status
    # and no result was lost: each was applied on top of the other, and left at most one row
    for run_id in run_ids:
        run = runs[run_id]
        assert run.applied
        assert run.outcome is not None
        assert run.status_after == DESTINATION[SyncOutcome(run.outcome)]
    moved_by = [row.sync_run_id for row in rows[1:]]
    assert len(moved_by) == len(set(moved_by))
    for row in rows[1:]:
        assert row.sync_run_id is not None
        assert row.to_status == runs[row.sync_run_id].status_after
    assert len(rows) >= 1 + ITERATIONS  # the second of each pair always moves the status


def open_run(sessions: sessionmaker[Session], key: uuid.UUID, clock: ManualClock) -> uuid.UUID:
    with sessions() as session, session.begin():
        started = start_run(session, key, task_id=uuid.uuid4().hex, now=clock.now(), lease=LEASE)
    assert isinstance(started, RunStart), started
    return started.run_id


def finish(
    sessions: sessionmaker[Session], run_id: uuid.UUID, outcome: SyncOutcome, clock: ManualClock
) -> object:
    with sessions() as session, session.begin():
        return finish_run(session, run_id, SyncResult(outcome), now=clock.now())


def test_row_lock_refuses_a_second_locker_within_its_lock_timeout(
    sessions: sessionmaker[Session],
) -> None:
    # given one transaction holding the integration's row lock
    clock = ManualClock(START)
    integration = integration_factory(sessions, clock)()
    with sessions() as holder, holder.begin():
        lock_integration(holder, integration.id)
        # when another transaction tries to lock it with a short lock_timeout
        with pytest.raises(OperationalError) as raised, sessions() as other, other.begin():
            other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            lock_integration(other, integration.id)
        # then it gives up on the lock
        assert isinstance(raised.value.orig, psycopg.errors.LockNotAvailable)


def test_row_lock_makes_a_second_transaction_wait_until_commit(
    sessions: sessionmaker[Session], pg_engine: Engine
) -> None:
    # given one transaction that locked the integration and paused it, not yet committed
    clock = ManualClock(START)
    integration = integration_factory(sessions, clock)()
    seen: dict[str, Any] = {}
    backend_pid = threading.Event()

    def second_transaction() -> None:
        with sessions() as other, other.begin():
            seen["pid"] = other.execute(text("SELECT pg_backend_pid()")).scalar_one()
            other.execute(text("SET LOCAL lock_timeout = '20s'"))
            backend_pid.set()
            seen["status"] = lock_integration(other, integration.id).status

    with sessions() as holder, holder.begin():
        deactivate(holder, integration.id, now=clock.now(), actor="operator-1")
        holder.flush()
        # when a second transaction asks for the same row
        waiter = threading.Thread(target=second_transaction)
        waiter.start()
        assert backend_pid.wait(JOIN_TIMEOUT_S)
        # then PostgreSQL reports it blocked by the holder's backend
        holder_pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert holder_pid in blocking_pids(pg_engine, seen["pid"])
        assert "status" not in seen
    # and once the holder commits, it goes on and reads the committed status
    waiter.join(JOIN_TIMEOUT_S)
    assert not waiter.is_alive()
    assert seen["status"] == "inactive"


def blocking_pids(engine: Engine, pid: int) -> list[int]:
    """The backends `pid` waits on, polled until it waits on one (or a deadline passes)."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            pids = connection.execute(
                text("SELECT pg_blocking_pids(:pid)"), {"pid": pid}
            ).scalar_one()
            if pids:
                return list(pids)
            connection.rollback()  # a fresh snapshot of pg_locks on the next poll
            time.sleep(0.01)
    return []


def test_reaper_and_a_late_finishing_worker_do_not_deadlock(
    sessions: sessionmaker[Session], pg_engine: Engine
) -> None:
    # given a run whose lease has just lapsed, and the reaper closing it (not yet committed)
    clock = ManualClock(START)
    integration = integration_factory(sessions, clock)()
    run_id = open_run(sessions, integration.id, clock)
    clock.advance(LEASE)
    started = threading.Event()
    worker: dict[str, Any] = {}

    def worker_finishes() -> object:
        with sessions() as session, session.begin():
            worker["pid"] = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            started.set()
            return finish_run(session, run_id, SyncResult(SyncOutcome.SUCCEEDED), now=clock.now())

    with ThreadPoolExecutor(max_workers=1) as pool:
        with sessions() as reaper, reaper.begin():
            reaper_pid = reaper.execute(text("SELECT pg_backend_pid()")).scalar_one()
            # (nothing runs in the reaper's session after this, so nothing autoflushes early)
            assert reap_abandoned(reaper, now=clock.now()) == [integration.id]
            # when the worker delivers the run's result at that moment
            finished = pool.submit(worker_finishes)
            assert started.wait(JOIN_TIMEOUT_S)
            assert reaper_pid in blocking_pids(pg_engine, worker["pid"])
        # then both transactions complete: the reaper commits, the worker finds the run closed
        assert finished.result(JOIN_TIMEOUT_S) is None
    assert load_run_error(sessions, run_id) == REAPED_ERROR


def load_run_error(sessions: sessionmaker[Session], run_id: uuid.UUID) -> str | None:
    with sessions() as session:
        return session.get_one(SyncRun, run_id).error
