"""Random histories through the real persistence layer, checked against a reference model.

`Reference` re-states SPEC §4 as plain data: sets of statuses, a dict of result
destinations, small records (it does not import `models.lifecycle`). Hypothesis
fires random sequences of operator actions, sync runs and their results, API
requests, sweeps and clock moves at both the real functions (on a SQLite file) and
the reference, and after every step compares each integration's status,
`auth_failing_since`, next sync (so whether one is due) and number of audit rows,
and each run's recorded state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models import integrations, migrate
from models.db import lock_integration, make_engine, make_sessionmaker
from models.errors import TransitionNotAllowed
from models.schema import Base, Integration, StatusChange, SyncRun
from models.status import SyncOutcome
from models.sync_runs import RunStart, SyncResult, finish_run, reap_abandoned, start_run
from models.time_rules import deactivate_idle_development, escalate_auth_failures

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=30)
# How far the simulated scheduler moves next_sync_at when it claims a due integration.
SYNC_INTERVAL = timedelta(hours=1)
MAX_INTEGRATIONS = 3
# Mostly small steps, so histories unfold between the rules; then steps either side of
# both time rules, and exactly 72 h and 14 days.
CLOCK_STEPS = [
    timedelta(minutes=1),
    timedelta(minutes=1),
    timedelta(minutes=30),
    timedelta(minutes=30),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(hours=71, minutes=59, seconds=59),
    timedelta(hours=72),
    timedelta(days=13, hours=23, minutes=59),
    timedelta(days=14),
]

# SPEC §4, re-stated.
ALL = {
    "setup",
    "active",
    "sync_warnings",
    "sync_failing",
    "quality_assurance",
    "auth_failing",
    "credentials_invalid",
    "inactive",
    "deleted",
}
SYNCING = {"active", "sync_warnings", "sync_failing", "auth_failing"}
LIVE = ALL - {"deleted", "inactive"}
RESULT_STATUS = {
    "succeeded": "active",
    "succeeded_with_warnings": "sync_warnings",
    "failed": "sync_failing",
    "auth_failed": "auth_failing",
}
QA_OUTCOMES = {"failed", "succeeded_with_warnings"}
AUTH_RULE = timedelta(hours=72)
DEV_RULE = timedelta(days=14)


@dataclass
class RefIntegration:
    """What the reference knows of one integration."""

    kind: str
    has_filters: bool
    created_at: datetime
    status: str
    next_sync_at: datetime | None
    audit_rows: int = 1  # the `created` row
    auth_failing_since: datetime | None = None
    last_api_request_at: datetime | None = None
    reactivated_at: datetime | None = None
    pause_epoch: int = 0  # times syncing was paused
    first_sync_done: bool = False


@dataclass
class RefRun:
    """What the reference knows of one sync run."""

    integration: uuid.UUID
    lease_expires_at: datetime
    first_sync: bool
    pause_epoch: int
    finished: bool = False
    applied: bool = False


@dataclass
class Reference:
    """The lifecycle rules as plain data; each action returns False when it does not apply."""

    integrations: dict[uuid.UUID, RefIntegration] = field(default_factory=dict)
    runs: dict[uuid.UUID, RefRun] = field(default_factory=dict)

    def create(self, key: uuid.UUID, *, kind: str, has_filters: bool, now: datetime) -> None:
        status = "active" if has_filters else "setup"
        self.integrations[key] = RefIntegration(
            kind, has_filters, now, status, now if has_filters else None
        )

    def move(self, key: uuid.UUID, to: str, now: datetime, *, sync_now: bool = False) -> None:
        """Enter `to`: audit row if the status changed, auth window and next sync kept right."""
        it = self.integrations[key]
        before = it.status
        if to != "auth_failing":
            it.auth_failing_since = None
        elif before != "auth_failing":
            it.auth_failing_since = now
        if to not in SYNCING:
            it.next_sync_at = None
        elif sync_now or before not in SYNCING:
            it.next_sync_at = now
        if to != before:
            it.audit_rows += 1
            if to not in SYNCING and before in SYNCING:
                it.pause_epoch += 1
        it.status = to

    def configure_filters(self, key: uuid.UUID, now: datetime) -> bool:
        it = self.integrations[key]
        if it.status == "deleted":
            return False
        it.has_filters = True
        if it.status == "setup":
            self.move(key, "active", now, sync_now=True)
        return True

    def set_credentials(self, key: uuid.UUID, now: datetime) -> bool:
        it = self.integrations[key]
        if it.status == "deleted":
            return False
        if it.status in ("auth_failing", "credentials_invalid"):
            to = "active" if it.has_filters else "setup"
        else:
            to = it.status  # credentials replaced, status kept
        # Where it ends up syncing, a sync with the new credentials is queued at once (SPEC
        # says so for the broken statuses and is silent on the others).
        self.move(key, to, now, sync_now=True)
        return True

    def resolve_qa(self, key: uuid.UUID, now: datetime) -> bool:
        if self.integrations[key].status != "quality_assurance":
            return False
        self.move(key, "active", now, sync_now=True)
        return True

    def deactivate(self, key: uuid.UUID, now: datetime) -> bool:
        if self.integrations[key].status not in LIVE:
            return False
        self.move(key, "inactive", now)
        return True

    def reactivate(self, key: uuid.UUID, now: datetime) -> bool:
        it = self.integrations[key]
        if it.status != "inactive":
            return False
        self.move(key, "active" if it.has_filters else "setup", now, sync_now=True)
        it.reactivated_at = now  # the dev window starts again
        return True

    def delete(self, key: uuid.UUID, now: datetime) -> bool:
        if self.integrations[key].status == "deleted":
            return False
        self.move(key, "deleted", now)
        return True

    def api_request(self, key: uuid.UUID, now: datetime) -> None:
        it = self.integrations[key]
        if it.last_api_request_at is None or it.last_api_request_at < now:
            it.last_api_request_at = now

    def due(self, key: uuid.UUID, now: datetime) -> bool:
        it = self.integrations[key]
        return it.status in SYNCING and it.next_sync_at is not None and it.next_sync_at <= now

    def claim(self, key: uuid.UUID, now: datetime) -> None:
        if self.due(key, now):
            self.integrations[key].next_sync_at = now + SYNC_INTERVAL

    def start(self, key: uuid.UUID, run_id: uuid.UUID, now: datetime) -> bool:
        it = self.integrations[key]
        if it.status not in SYNCING:
            return False
        if any(
            r.integration == key and not r.finished and r.lease_expires_at > now
            for r in self.runs.values()
        ):
            return False  # another run holds the lease
        self.runs[run_id] = RefRun(
            key, now + LEASE, first_sync=not it.first_sync_done, pause_epoch=it.pause_epoch
        )
        return True

    def finish(self, run_id: uuid.UUID, outcome: str, now: datetime) -> None:
        run = self.runs[run_id]
        if run.finished:
            return  # a redelivered result changes nothing
        run.finished = True
        it = self.integrations[run.integration]
        # A late result is recorded, never applied: the integration is paused now, or was
        # paused at some point while the run worked (a resumption must not be undone).
        if it.status not in SYNCING or it.pause_epoch != run.pause_epoch:
            return
        run.applied = True
        # The first sync is the first that got past authentication.
        first = not it.first_sync_done
        if outcome != "auth_failed":
            it.first_sync_done = True
        if first and it.status == "active" and outcome in QA_OUTCOMES:
            to = "quality_assurance"
        else:
            to = RESULT_STATUS[outcome]
        self.move(run.integration, to, now)
        # The time rules run with every result; the auth rule, when it fires, comes first
        # and the dev rule waits for the next result or sweep.
        if not self.expire_credentials(run.integration, now):
            self.deactivate_idle(run.integration, now)

    def expire_credentials(self, key: uuid.UUID, now: datetime) -> bool:
        it = self.integrations[key]
        since = it.auth_failing_since
        if it.status == "auth_failing" and since is not None and now - since >= AUTH_RULE:
            self.move(key, "credentials_invalid", now)
            return True
        return False

    def deactivate_idle(self, key: uuid.UUID, now: datetime) -> bool:
        it = self.integrations[key]
        last_seen = max(
            (t for t in (it.last_api_request_at, it.reactivated_at) if t is not None),
            default=it.created_at,
        )
        if it.kind == "development" and it.status in LIVE and now - last_seen >= DEV_RULE:
            self.move(key, "inactive", now)
            return True
        return False

    def reap(self, now: datetime) -> None:
        for run in self.runs.values():
            if not run.finished and run.lease_expires_at <= now:
                run.finished = True
                if self.integrations[run.integration].status in SYNCING:
                    self.integrations[run.integration].next_sync_at = now


def _configure_filters(session: Session, key: uuid.UUID, *, now: datetime) -> object:
    return integrations.configure_filters(session, key, {"objects": ["orders"]}, now=now)


def _set_credentials(session: Session, key: uuid.UUID, *, now: datetime) -> object:
    return integrations.set_credentials(session, key, "sealed-again", now=now, actor="user-1")


def _operator(action: Any) -> Any:
    def act(session: Session, key: uuid.UUID, *, now: datetime) -> object:
        return action(session, key, now=now, actor="operator-1")

    return act


# What users and operators can do to an integration, by the reference method's name.
ACTIONS = {
    "configure_filters": _configure_filters,
    "set_credentials": _set_credentials,
    "resolve_qa": _operator(integrations.resolve_qa),
    "deactivate": _operator(integrations.deactivate),
    "reactivate": _operator(integrations.reactivate),
    "delete": _operator(integrations.delete),
}
# How long a sync or a sweep comes after the step before it.
WAITS = st.sampled_from([timedelta(0), timedelta(0), *CLOCK_STEPS])
AUTH = SyncOutcome.AUTH_FAILED
FAILED = SyncOutcome.FAILED
WARNED = SyncOutcome.SUCCEEDED_WITH_WARNINGS
INDEX = st.integers(0, MAX_INTEGRATIONS - 1)
# One integration in three is in a development environment, where the two-week rule applies.
DEVELOPMENT = st.sampled_from([False, True, False])
# auth_failed twice as often as the others: it leads to the longest histories (the auth
# window, its escalation, re-keying).
OUTCOMES = st.sampled_from(
    [
        SyncOutcome.AUTH_FAILED,
        SyncOutcome.SUCCEEDED,
        SyncOutcome.AUTH_FAILED,
        SyncOutcome.FAILED,
        SyncOutcome.SUCCEEDED_WITH_WARNINGS,
    ]
)
# What happens to a dispatched run; the last two make its result arrive late.
SYNC_COURSES = st.sampled_from(
    [
        "finishes",
        "is redelivered",
        "keeps running",
        "finishes",
        "worker dies",
        "deactivate",
        "delete",
    ]
)
# Deleting and deactivating end a history's interesting part, so they come up less often.
ACTION_NAMES = st.sampled_from(
    [
        "configure_filters",
        "set_credentials",
        "resolve_qa",
        "reactivate",
        "deactivate",
        "set_credentials",
        "resolve_qa",
        "reactivate",
        "delete",
    ]
)


class LifecycleAgainstReference(RuleBasedStateMachine):
    """Drives the real persistence layer and the reference side by side."""

    sessions: ClassVar[sessionmaker[Session]]

    def __init__(self) -> None:
        super().__init__()
        with self.sessions() as session, session.begin():
            for table in reversed(Base.metadata.sorted_tables):
                session.execute(table.delete())
            for kind in ("production", "development"):
                integrations.ensure_environment(
                    session, f"env-{kind}", organization_id="org-1", name=kind, kind=kind
                )
        self.now = START
        self.reference = Reference()
        self.ids: list[uuid.UUID] = []
        self.run_ids: list[uuid.UUID] = []

    def pick(self, index: int) -> uuid.UUID:
        return self.ids[index % len(self.ids)]

    def open_runs(self) -> list[uuid.UUID]:
        """The runs started so far and not finished, oldest first."""
        return [r for r in self.run_ids if not self.reference.runs[r].finished]

    # Creating integrations.

    @initialize(development=DEVELOPMENT, has_filters=st.sampled_from([True, False, True]))
    def first_integration(self, development: bool, has_filters: bool) -> None:
        self.add_integration(development, has_filters)

    @precondition(lambda self: len(self.ids) < MAX_INTEGRATIONS)
    @rule(development=DEVELOPMENT, has_filters=st.booleans())
    def create(self, development: bool, has_filters: bool) -> None:
        self.add_integration(development, has_filters)

    def add_integration(self, development: bool, has_filters: bool) -> None:
        kind = "development" if development else "production"
        key = uuid.uuid4()
        with self.sessions() as session, session.begin():
            integrations.create_integration(
                session,
                integrations.NewIntegration(
                    environment_id=f"env-{kind}",
                    name="Acme",
                    identifier=f"acme-{key.hex[:8]}",
                    provider="stripe",
                    filters={"objects": ["customers"]} if has_filters else None,
                    credentials_sealed="sealed",
                    integration_id=key,
                ),
                now=self.now,
            )
        self.reference.create(key, kind=kind, has_filters=has_filters, now=self.now)
        self.ids.append(key)

    # What users and operators do.

    @rule(index=INDEX, action=ACTION_NAMES)
    def user_or_operator_acts(self, index: int, action: str) -> None:
        key = self.pick(index)
        expected = getattr(self.reference, action)(key, self.now)
        try:
            with self.sessions() as session, session.begin():
                ACTIONS[action](session, key, now=self.now)
        except TransitionNotAllowed:
            applied = False
        else:
            applied = True
        assert applied is expected, action  # raises exactly when the trigger does not apply

    @rule(index=INDEX)
    def host_application_calls_the_api(self, index: int) -> None:
        key = self.pick(index)
        with self.sessions() as session, session.begin():
            integrations.record_api_request(session, key, now=self.now)
        self.reference.api_request(key, self.now)

    # Syncs: the scheduler's claim, a run's start, its result (possibly late or redelivered).

    @rule(index=INDEX, outcome=OUTCOMES, course=SYNC_COURSES, wait=WAITS)
    def sync_is_dispatched(
        self, index: int, outcome: SyncOutcome, course: str, wait: timedelta
    ) -> None:
        """After `wait`, the scheduler claims the integration if due and a worker starts a
        run, which then finishes (its result maybe delivered twice), keeps running, dies,
        or outlives a pause or deletion of its integration."""
        self.now += wait
        key = self.pick(index)
        self.scheduler_claims(key)
        run_id = self.start(key)
        if run_id is None or course == "keeps running":
            return
        if course == "worker dies":  # and the reaper finds the run once its lease lapsed
            self.periodic_sweeps_run(LEASE)
            return
        if course in ACTIONS:
            self.user_or_operator_acts(index, course)
        self.finish(run_id, outcome)
        if course == "is redelivered":
            self.finish(run_id, SyncOutcome.SUCCEEDED)

    @precondition(lambda self: self.open_runs())
    @rule(index=st.integers(0, 7), outcome=OUTCOMES)
    def sync_result_arrives(self, index: int, outcome: SyncOutcome) -> None:
        """The result of a run started earlier: on time, or late after a pause or deletion."""
        open_runs = self.open_runs()
        self.finish(open_runs[index % len(open_runs)], outcome)

    def scheduler_claims(self, key: uuid.UUID) -> None:
        """What a provider tick does to a due integration: move its next sync on."""
        with self.sessions() as session, session.begin():
            integration = lock_integration(session, key)
            due = integration.next_sync_at is not None and integration.next_sync_at <= self.now
            if integration.active and due:
                integration.next_sync_at = self.now + SYNC_INTERVAL
        self.reference.claim(key, self.now)

    def start(self, key: uuid.UUID) -> uuid.UUID | None:
        with self.sessions() as session, session.begin():
            started = start_run(session, key, task_id=uuid.uuid4().hex, now=self.now, lease=LEASE)
        if not isinstance(started, RunStart):
            assert not self.reference.start(key, uuid.uuid4(), self.now), started.reason
            return None
        assert self.reference.start(key, started.run_id, self.now)
        assert started.first_sync is self.reference.runs[started.run_id].first_sync
        self.run_ids.append(started.run_id)
        return started.run_id

    def finish(self, run_id: uuid.UUID, outcome: SyncOutcome) -> None:
        with self.sessions() as session, session.begin():
            finish_run(session, run_id, SyncResult(outcome), now=self.now)
        self.reference.finish(run_id, outcome.value, self.now)

    # Sweeps and time.

    @rule(wait=WAITS)
    def periodic_sweeps_run(self, wait: timedelta) -> None:
        """After `wait`, beat's maintenance: reap abandoned runs, then both time rules."""
        self.now += wait
        with self.sessions() as session, session.begin():
            reap_abandoned(session, now=self.now)
        self.reference.reap(self.now)
        with self.sessions() as session, session.begin():
            escalate_auth_failures(session, now=self.now)
        for key in self.ids:
            self.reference.expire_credentials(key, self.now)
        with self.sessions() as session, session.begin():
            deactivate_idle_development(session, now=self.now)
        for key in self.ids:
            self.reference.deactivate_idle(key, self.now)

    @rule(step=st.sampled_from(CLOCK_STEPS))
    def clock_moves(self, step: timedelta) -> None:
        self.now += step

    # What must agree after every step.

    @invariant()
    def integrations_agree(self) -> None:
        with self.sessions() as session:
            stored = {i.id: i for i in session.scalars(select(Integration))}
            audit_rows = dict(
                session.execute(
                    select(StatusChange.integration_id, func.count()).group_by(
                        StatusChange.integration_id
                    )
                ).all()
            )
        assert set(stored) == set(self.reference.integrations)
        for key, expected in self.reference.integrations.items():
            actual = stored[key]
            due = (
                actual.active
                and actual.next_sync_at is not None
                and actual.next_sync_at <= self.now
            )
            assert (actual.status, actual.auth_failing_since, due, audit_rows[key]) == (
                expected.status,
                expected.auth_failing_since,
                self.reference.due(key, self.now),
                expected.audit_rows,
            ), key
            assert (actual.deleted_at is not None) is (expected.status == "deleted")
            assert actual.next_sync_at == expected.next_sync_at, key

    @invariant()
    def runs_agree(self) -> None:
        with self.sessions() as session:
            runs = {
                run.id: (run.finished_at is not None, run.applied)
                for run in session.scalars(select(SyncRun))
            }
        assert runs == {
            run_id: (run.finished, run.applied) for run_id, run in self.reference.runs.items()
        }


SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    derandomize=True,  # the same histories on every run, so CI is deterministic
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def machine_class(tmp_path: Path) -> Iterator[type[LifecycleAgainstReference]]:
    """The state machine bound to a fresh migrated SQLite file (emptied between examples)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'stateful.db'}")
    migrate.upgrade(engine)
    yield type(
        "BoundLifecycleAgainstReference",
        (LifecycleAgainstReference,),
        {"sessions": make_sessionmaker(engine)},
    )
    engine.dispose()


def test_lifecycle_matches_the_reference_model(
    machine_class: type[LifecycleAgainstReference],
) -> None:
    run_state_machine_as_test(machine_class, settings=SETTINGS)


def test_scripted_history_matches_the_reference_model(
    machine_class: type[LifecycleAgainstReference],
) -> None:
    """The histories random search finds least often, step by step: the auth window and its
    escalation, the dev rule and reactivation, late and redelivered results, reaping."""
    machine = machine_class()
    prod, dev = 0, 1
    steps: list[tuple[str, dict[str, Any]]] = [
        ("first_integration", {"development": False, "has_filters": True}),
        ("create", {"development": True, "has_filters": False}),
        ("user_or_operator_acts", {"index": dev, "action": "configure_filters"}),
        (
            "sync_is_dispatched",
            {"index": prod, "outcome": AUTH, "course": "finishes", "wait": timedelta(0)},
        ),
        ("clock_moves", {"step": timedelta(hours=71, minutes=59, seconds=59)}),
        ("periodic_sweeps_run", {"wait": timedelta(0)}),
        (
            "sync_is_dispatched",
            {"index": prod, "outcome": AUTH, "course": "is redelivered", "wait": timedelta(0)},
        ),
        ("clock_moves", {"step": timedelta(seconds=1)}),
        (
            "sync_is_dispatched",
            {"index": prod, "outcome": AUTH, "course": "finishes", "wait": timedelta(0)},
        ),
        ("user_or_operator_acts", {"index": prod, "action": "set_credentials"}),
        (
            "sync_is_dispatched",
            {"index": prod, "outcome": FAILED, "course": "finishes", "wait": timedelta(0)},
        ),
        ("user_or_operator_acts", {"index": prod, "action": "resolve_qa"}),
        (
            "sync_is_dispatched",
            {"index": dev, "outcome": WARNED, "course": "finishes", "wait": timedelta(0)},
        ),
        ("user_or_operator_acts", {"index": dev, "action": "resolve_qa"}),
        (
            "sync_is_dispatched",
            {"index": dev, "outcome": AUTH, "course": "keeps running", "wait": timedelta(0)},
        ),
        ("clock_moves", {"step": timedelta(days=14)}),
        ("periodic_sweeps_run", {"wait": timedelta(0)}),
        ("user_or_operator_acts", {"index": dev, "action": "reactivate"}),
        ("host_application_calls_the_api", {"index": dev}),
        ("periodic_sweeps_run", {"wait": timedelta(0)}),
        (
            "sync_is_dispatched",
            {"index": dev, "outcome": AUTH, "course": "keeps running", "wait": timedelta(0)},
        ),
        ("user_or_operator_acts", {"index": dev, "action": "deactivate"}),
        ("sync_result_arrives", {"index": 0, "outcome": SyncOutcome.SUCCEEDED}),
        (
            "sync_is_dispatched",
            {"index": prod, "outcome": AUTH, "course": "keeps running", "wait": timedelta(0)},
        ),
        ("clock_moves", {"step": LEASE}),
        ("periodic_sweeps_run", {"wait": timedelta(0)}),
        (
            "sync_is_dispatched",
            {"index": prod, "outcome": AUTH, "course": "delete", "wait": timedelta(0)},
        ),
        ("user_or_operator_acts", {"index": prod, "action": "reactivate"}),
    ]
    seen: list[set[str]] = [set(), set()]
    for name, arguments in steps:
        getattr(machine, name)(**arguments)
        machine.integrations_agree()
        machine.runs_agree()
        for statuses, key in zip(seen, machine.ids, strict=False):
            statuses.add(machine.reference.integrations[key].status)
    machine.teardown()
    assert seen[prod] >= {"auth_failing", "credentials_invalid", "quality_assurance", "deleted"}
    assert seen[dev] >= {"setup", "quality_assurance", "inactive"}
    assert [machine.reference.integrations[key].status for key in machine.ids] == [
        "deleted",
        "inactive",
    ]
    late_or_reaped = [
        run for run in machine.reference.runs.values() if run.finished and not run.applied
    ]
    assert len(late_or_reaped) >= 3
