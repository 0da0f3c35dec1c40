"""A sync attempt's life in the database: started under a lease, finished with its outcome.

`start_run` and `finish_run` each run in their own short transaction around the
connector's network work, so no row lock is held while the provider answers.
The SyncRun row backs the per-integration lease: a run whose lease has lapsed
was abandoned by a dead worker and is reaped, making the integration due again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from models.changes import Change, apply_trigger
from models.db import as_uuid, lock_integration, table_of
from models.errors import IntegrationNotFound
from models.incidents import covers, failure_kind
from models.records import PageWrite, Warn, store_page
from models.schema import Integration, SyncCursor, SyncRun
from models.status import OUTCOME_TRIGGERS, SUCCESSES, SYNCING_STATUSES, Status, SyncOutcome
from models.time_rules import apply_time_rules

# Error written on an attempt's run its retry found still open (the attempt lost its
# database connection before it could close the run).
INTERRUPTED_ERROR = "interrupted: the attempt ended without closing its run"
# Error written on a run the reaper finds abandoned.
REAPED_ERROR = "abandoned: the worker stopped renewing its lease (crashed or was killed)"


@dataclass(frozen=True)
class SyncResult:
    """How one sync attempt ended, as its connector reports it and the lifecycle applies it.

    `records` counts what the attempt stored (page by page, already committed).
    """

    outcome: SyncOutcome
    records: int = 0
    warnings: tuple[str, ...] = ()
    error: str | None = None

    def with_warnings(self, extra: Sequence[str]) -> SyncResult:
        """This result with `extra` warnings; a success becomes a success with warnings."""
        if not extra:
            return self
        outcome = self.outcome
        if outcome is SyncOutcome.SUCCEEDED:
            outcome = SyncOutcome.SUCCEEDED_WITH_WARNINGS
        return replace(self, outcome=outcome, warnings=(*self.warnings, *extra))


@dataclass(frozen=True)
class RunStart:
    """A started run and the integration's state the connector needs, read under the lock."""

    run_id: uuid.UUID
    integration_id: uuid.UUID
    provider: str
    credentials_sealed: str | None
    filters: dict[str, Any]
    configurations: dict[str, Any]
    cursors: dict[str, dict[str, Any]]
    data_last_received_at: datetime | None
    first_sync: bool


@dataclass(frozen=True)
class Skipped:
    """Why a sync did not start: the integration is gone, paused, busy or already synced."""

    reason: str


# start_run's statements, built once: executing a prebuilt statement skips constructing it
# and computing its cache key, about 0.1 ms each on a worker's busy core.
#
# What it reads of the integration, under its row lock: it changes nothing there, so plain
# columns do, with no ORM object to build and no Environment to join.
_LOCK_FOR_START = (
    select(
        Integration.status,
        Integration.provider,
        Integration.credentials_encrypted,
        Integration.filters,
        Integration.configurations,
        Integration.data_last_received_at,
        Integration.first_sync_finished_at,
        Integration.pause_epoch,
    )
    .where(Integration.id == bindparam("integration_id"))
    .with_for_update()
)
# Runs that forbid a new one, in one query: this delivery's own (it already ran; a NULL
# task id matches nothing) and any run of the integration whose lease is still live. It
# runs after the lock is taken, as a statement of its own, so it sees every run committed
# by a start_run that held the lock before us. A live run of an earlier attempt of the same
# task is not another sync but this one's past: an attempt that lost its database
# connection before it could close its run. The retry takes it over (`_TAKE_OVER`).
_SAME_TASK = SyncRun.task_id == bindparam("task_id")
_THIS_DELIVERY = _SAME_TASK & (SyncRun.attempt == bindparam("attempt"))
_BLOCKING_RUNS = select(
    SyncRun.id,
    _THIS_DELIVERY.label("this_delivery"),
    (_SAME_TASK & (SyncRun.attempt < bindparam("attempt"))).label("earlier_attempt"),
).where(
    _THIS_DELIVERY
    | (
        (SyncRun.integration_id == bindparam("integration_id"))
        & SyncRun.finished_at.is_(None)
        & (SyncRun.lease_expires_at > bindparam("now"))
    )
)
_TAKE_OVER = (
    update(table_of(SyncRun))
    .where(table_of(SyncRun).c.id.in_(bindparam("run_ids", expanding=True)))
    .values(
        finished_at=bindparam("now"),
        lease_expires_at=None,
        error=bindparam("error"),
        failure_kind=bindparam("failure_kind"),
    )
)
# A Core insert: the new run is not read back, so the ORM's unit of work has nothing to do.
_INSERT_RUN = insert(table_of(SyncRun))
_CURSORS = select(SyncCursor.stream, SyncCursor.cursor).where(
    SyncCursor.integration_id == bindparam("integration_id")
)


def start_run(
    session: Session,
    integration_id: uuid.UUID | str,
    *,
    task_id: str | None,
    now: datetime,
    lease: timedelta,
    attempt: int = 0,
) -> RunStart | Skipped:
    """Open a SyncRun for a syncing integration, unless another run holds its lease.

    A task delivery that already has a run (the broker redelivered it after a worker died,
    or published it twice) is skipped: each (task_id, attempt) syncs at most once. A retry
    (a later attempt of the same task) takes over an earlier attempt's run left open: it
    is closed without an outcome, and the retry's run starts.
    """
    try:
        key = as_uuid(integration_id)
    except IntegrationNotFound:
        return Skipped("gone")
    integration = session.execute(_LOCK_FOR_START, {"integration_id": key}).one_or_none()
    if integration is None:
        return Skipped("gone")
    if Status(integration.status) not in SYNCING_STATUSES:
        return Skipped(f"not syncing ({integration.status})")
    blocking = session.execute(
        _BLOCKING_RUNS, {"integration_id": key, "task_id": task_id, "attempt": attempt, "now": now}
    ).all()
    if any(run.this_delivery for run in blocking):
        return Skipped(f"delivery {task_id}#{attempt} already ran")
    others = [run for run in blocking if not run.earlier_attempt]
    if others:
        return Skipped(f"lease held by run {others[0].id}")
    if blocking:
        error = f"{INTERRUPTED_ERROR}; attempt {attempt} of the same task took over"
        # Closed as `close_for_retry` closes an attempt: a transient failure, for incidents.
        kind = failure_kind(None, error)
        session.execute(
            _TAKE_OVER,
            {
                "run_ids": [run.id for run in blocking],
                "now": now,
                "error": error,
                "failure_kind": kind.value if kind else None,
            },
        )
    run_id = uuid.uuid4()
    first_sync = integration.first_sync_finished_at is None
    session.execute(
        _INSERT_RUN,
        {
            "id": run_id,
            "integration_id": key,
            "task_id": task_id,
            "attempt": attempt,
            "pause_epoch": integration.pause_epoch,
            "started_at": now,
            "lease_expires_at": now + lease,
            "first_sync": first_sync,
        },
    )
    cursors = session.execute(_CURSORS, {"integration_id": key})
    return RunStart(
        run_id=run_id,
        integration_id=key,
        provider=integration.provider,
        credentials_sealed=integration.credentials_encrypted,
        filters=dict(integration.filters or {}),
        configurations=dict(integration.configurations or {}),
        cursors={stream: dict(cursor) for stream, cursor in cursors},
        data_last_received_at=integration.data_last_received_at,
        first_sync=first_sync,
    )


def finish_run(
    session: Session,
    run_id: uuid.UUID | str,
    result: SyncResult,
    *,
    now: datetime,
    last_page: PageWrite | None = None,
    warn: Warn | None = None,
) -> Change | None:
    """Close a run and apply its outcome to the lifecycle, all in the caller's transaction.

    `last_page`, the run's newest page not yet stored, is stored in the same transaction
    (a one-page sync then costs one transaction less); what storing it cleaned or skipped
    is added to the result's warnings and told to `warn`. Idempotent: a run already finished
    (a redelivered task) changes nothing. A result for an integration that left the
    syncing statuses, or whose credentials were replaced since the run started, is recorded
    but never moves it.
    """
    key = as_uuid(run_id)
    integration = session.scalars(_LOCK_RUN_INTEGRATION, {"run_id": key}).unique().one_or_none()
    if integration is None:
        return None
    run = session.execute(_LOCK_RUN, {"run_id": key}).one_or_none()
    if run is None:
        return None
    stored = 0
    problems: list[str] = []
    if last_page is not None:  # the page was fetched: keep it, whatever became of the run
        stored = store_page(
            session,
            integration_id=integration.id,
            run_id=None,
            stream=last_page.stream,
            records=last_page.records,
            cursor=last_page.cursor,
            now=now,
            warn=problems.append,
        )
        result = result.with_warnings(problems)
        if warn is not None:
            for problem in problems:
                warn(problem)
    if run.finished_at is not None:  # a redelivery, or a concurrent one got here first
        return None
    records = run.records_received + stored
    if records:
        integration.data_last_received_at = now
    if result.outcome in SUCCESSES:
        integration.last_success_at = now
    # A result that arrives while the integration is paused, or was paused or given new
    # credentials while the run worked (the epoch moved: it belongs to the old credentials or
    # decision), is recorded, never applied; so is a failure a provider incident explains
    # (SPEC §11: never toward QA or the auth clock).
    kind = failure_kind(result.outcome, result.error)
    applied = (
        integration.status_enum in SYNCING_STATUSES
        and run.pause_epoch == integration.pause_epoch
        and not covers(session, integration.provider, kind)
    )
    change = _apply_outcome(session, integration, key, result, now=now) if applied else None
    session.execute(
        _CLOSE_RUN,
        {
            "run_id": key,
            "v_finished_at": now,
            "v_outcome": result.outcome.value,
            "v_warnings": list(result.warnings),
            "v_error": result.error,
            "v_records": records,
            "v_applied": applied,
            "v_status_after": integration.status,
            "v_failure_kind": kind.value if kind else None,
        },
    )
    return change


# finish_run's two locks, integration then run (reap_abandoned's order), built once like
# start_run's statements. The integration is found through the run inside its own locking
# statement: a run never changes integration, so reading the link unlocked is safe, and it
# saves a round trip. The run is read and closed as Core rows: its new values are all
# known once the outcome is applied, so one UPDATE writes them, with no ORM object.
_RUNS = table_of(SyncRun)
_RUN_OWNER = select(_RUNS.c.integration_id).where(_RUNS.c.id == bindparam("run_id"))
_LOCK_RUN_INTEGRATION = (
    select(Integration)
    .where(Integration.id == _RUN_OWNER.scalar_subquery())
    .with_for_update(of=Integration)
)
_LOCK_RUN = (
    select(_RUNS.c.finished_at, _RUNS.c.records_received, _RUNS.c.pause_epoch)
    .where(_RUNS.c.id == bindparam("run_id"))
    .with_for_update()
)
_CLOSE_RUN = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("run_id"))
    .values(
        finished_at=bindparam("v_finished_at"),
        lease_expires_at=None,
        outcome=bindparam("v_outcome"),
        warnings=bindparam("v_warnings"),
        error=bindparam("v_error"),
        records_received=bindparam("v_records"),
        applied=bindparam("v_applied"),
        status_after=bindparam("v_status_after"),
        failure_kind=bindparam("v_failure_kind"),
    )
)


def _apply_outcome(
    session: Session,
    integration: Integration,
    run_id: uuid.UUID,
    result: SyncResult,
    *,
    now: datetime,
) -> Change | None:
    first = integration.first_sync_finished_at is None
    if result.outcome is not SyncOutcome.AUTH_FAILED and first:
        # The first sync is the first that got past authentication: QA judges the data.
        integration.first_sync_finished_at = now
    change = apply_trigger(
        session,
        integration,
        OUTCOME_TRIGGERS[result.outcome],
        now=now,
        sync_run_id=run_id,
        reason=result.error or ("; ".join(result.warnings) if result.warnings else None),
        first_sync=first,
    )
    escalated = apply_time_rules(session, integration, now=now)
    return escalated or change


def close_for_retry(session: Session, run_id: uuid.UUID, error: str, *, now: datetime) -> None:
    """End an attempt that hit a transient error; no outcome, the task retries later."""
    run = session.get(SyncRun, run_id, with_for_update=True)
    if run is None or not run.running:
        return
    run.finished_at = now
    run.lease_expires_at = None
    run.error = error
    kind = failure_kind(None, error)
    run.failure_kind = kind.value if kind else None


def reap_abandoned(session: Session, *, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """Close runs whose lease lapsed and make their integrations due again.

    Locks in the order finish_run does (integration, then run) so a worker finishing
    just as its lease lapses never deadlocks with the reaper, and re-checks the run
    under the lock: if the worker got there first, it is left alone.
    """
    candidates = session.execute(
        select(SyncRun.id, SyncRun.integration_id)
        .where(SyncRun.finished_at.is_(None), SyncRun.lease_expires_at <= now)
        .order_by(SyncRun.lease_expires_at)
        .limit(limit)
    ).all()
    reaped = []
    for run_id, integration_id in candidates:
        integration = lock_integration(session, integration_id)
        run = session.get(SyncRun, run_id, with_for_update=True, populate_existing=True)
        if run is None or not run.running or (run.lease_expires_at or now) > now:
            continue
        run.finished_at = now
        run.lease_expires_at = None
        run.error = REAPED_ERROR
        if integration.status_enum in SYNCING_STATUSES:
            integration.next_sync_at = now
        run.status_after = integration.status
        reaped.append(integration_id)
    return reaped
