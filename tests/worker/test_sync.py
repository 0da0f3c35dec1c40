"""One sync, from lease to lifecycle (SPEC §5), against the Stripe fake over real HTTP.

No Celery: `sync_integration` is what the task hands over to. Every test runs on
SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from fakes.stripe import FakeStripe
from models.clock import ManualClock
from models.credentials import Keyring
from models.integrations import deactivate
from models.schema import Integration, StatusChange, SyncedRecord, SyncRun
from models.status import Provider, Status, SyncOutcome, Trigger
from models.sync_runs import RunStart, Skipped, SyncResult, reap_abandoned, start_run
from scheduler.providers import DEFAULT_POLICIES
from tests.conftest import IntegrationFactory
from worker.budget import LocalBudget
from worker.connectors.base import Connector, Page, PageSink, SyncContext
from worker.connectors.errors import TransientError
from worker.connectors.http import HttpOptions, RetryPolicy
from worker.connectors.registry import connector_for
from worker.lease import Leases, LocalLeaseStore
from worker.sync import Finished, SyncServices, sync_integration

SECRET_KEY = "sk_test_acme"
PAGE_SIZE = 10  # small pages, so a sync of a few dozen customers pages through the fake
LEASE_TTL = timedelta(seconds=90)
RETRY = RetryPolicy(attempts=3, base_delay=0.5, max_delay=5.0)

Sessions = sessionmaker[Session]


class RecordingSleep:
    """The HTTP layer's `sleep`: records the backoff delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class WorkerDied(BaseException):
    """Raised by `CrashingSink`: the worker process died between two pages (it is going down,
    so like SystemExit it is no Exception: the run is left to the reaper)."""


class CrashingSink:
    """Stores `pages` pages through the real sink, then raises `error` before the next one."""

    def __init__(self, sink: PageSink, pages: int, error: BaseException) -> None:
        self._sink = sink
        self._left = pages
        self._error = error

    def store(self, page: Page) -> None:
        if self._left == 0:
            raise self._error
        self._sink.store(page)
        self._left -= 1


class Interfering:
    """A connector that lets the world change around the real one while it syncs."""

    def __init__(
        self,
        inner: Connector,
        *,
        during_sync: Callable[[], None] = lambda: None,
        crash_after_pages: int | None = None,
        crash_with: BaseException | None = None,
    ) -> None:
        self._inner = inner
        self._during_sync = during_sync
        self._crash_after_pages = crash_after_pages
        self._crash_with = crash_with or WorkerDied("killed between pages")
        self.provider = inner.provider
        self.required_credentials = inner.required_credentials

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        return self._inner.validate_credentials(raw)

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        self._during_sync()
        if self._crash_after_pages is not None:
            sink = CrashingSink(sink, self._crash_after_pages, self._crash_with)
        return self._inner.sync(ctx, sink)

    def close(self) -> None:
        """The inner connector belongs to the services fixture."""


def interfered(services: SyncServices, **interference: Any) -> SyncServices:
    """The services, with every connector wrapped in `Interfering(**interference)`."""
    return replace(
        services, connector_for=lambda p: Interfering(services.connector_for(p), **interference)
    )


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_config(f"current:{Keyring.generate_key()}")


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def services(
    sessions: Sessions,
    keyring: Keyring,
    clock: ManualClock,
    fake: FakeStripe,
    sleep: RecordingSleep,
) -> Iterator[SyncServices]:
    """The collaborators a worker process builds once, pointed at the fake; closed after."""
    http = HttpOptions(retry=RETRY, timeout=2.0, sleep=sleep, random=lambda: 1.0)
    connectors: dict[Provider, Connector] = {}

    def connector(provider: Provider) -> Connector:
        if provider not in connectors:
            connectors[provider] = connector_for(
                provider, base_url=fake.url, http=http, page_size=PAGE_SIZE
            )
        return connectors[provider]

    leases = Leases(
        LocalLeaseStore(time.monotonic), sessions, ttl=LEASE_TTL, app_ttl=LEASE_TTL, now=clock.now
    )
    yield SyncServices(sessions, keyring, clock, leases, connector)
    leases.close()
    for made in connectors.values():
        made.close()


@pytest.fixture
def make_stripe_integration(
    make_integration: IntegrationFactory, fake: FakeStripe, keyring: Keyring, clock: ManualClock
) -> IntegrationFactory:
    """An integration whose key owns an account at the fake with `customers` customers.

    `established` ones finished their first sync a day ago, so results move them through
    the ordinary statuses rather than to quality assurance.
    """

    def create(*, customers: int = 25, established: bool = True, **fields: Any) -> Integration:
        fake.add_account(SECRET_KEY, customers=customers)
        fields.setdefault("credentials_sealed", keyring.seal({"secret_key": SECRET_KEY}))
        if established:
            fields.setdefault("first_sync_finished_at", clock.now() - timedelta(days=1))
        return make_integration(**fields)

    return create


def reload(sessions: Sessions, integration_id: uuid.UUID) -> Integration:
    with sessions() as session:
        return session.get_one(Integration, integration_id)


def runs_of(sessions: Sessions, integration_id: uuid.UUID) -> list[SyncRun]:
    with sessions() as session:
        stmt = select(SyncRun).where(SyncRun.integration_id == integration_id)
        return list(session.scalars(stmt.order_by(SyncRun.started_at, SyncRun.attempt)))


def record_ids(sessions: Sessions, integration_id: uuid.UUID) -> list[str]:
    with sessions() as session:
        stmt = select(SyncedRecord.external_id).where(SyncedRecord.integration_id == integration_id)
        return sorted(session.scalars(stmt))


def audit_of(sessions: Sessions, integration_id: uuid.UUID) -> list[tuple[str | None, str, str]]:
    with sessions() as session:
        stmt = (
            select(StatusChange.from_status, StatusChange.to_status, StatusChange.trigger)
            .where(StatusChange.integration_id == integration_id)
            .order_by(StatusChange.id)
        )
        return [(before, after, trigger) for before, after, trigger in session.execute(stmt)]


def customer_ids(count: int) -> list[str]:
    return [f"cus_{n:06d}" for n in range(1, count + 1)]


# --- a sync that runs ----------------------------------------------------------------------


def test_sync_stores_every_record_and_moves_the_status_with_an_audit_row(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
    clock: ManualClock,
) -> None:
    # given: a failing integration whose account now answers with 25 customers
    integration = make_stripe_integration(customers=25, status=Status.SYNC_FAILING.value)

    # when
    done = sync_integration(services, str(integration.id), task_id="task-1")

    # then: three pages fetched and stored
    assert isinstance(done, Finished)
    assert (done.result.outcome, done.result.records) == (SyncOutcome.SUCCEEDED, 25)
    assert len(fake.requests_to("/v1/customers")) == 3
    assert record_ids(sessions, integration.id) == customer_ids(25)
    # the run is closed with its outcome, applied
    [run] = runs_of(sessions, integration.id)
    assert run.id == done.run_id
    assert (run.outcome, run.applied, run.records_received) == ("succeeded", True, 25)
    assert (run.finished_at, run.lease_expires_at, run.status_after) == (
        clock.now(),
        None,
        "active",
    )
    # the status moved, with its audit row naming the run
    stored = reload(sessions, integration.id)
    assert stored.status == Status.ACTIVE
    assert stored.data_last_received_at == clock.now()
    assert audit_of(sessions, integration.id)[-1] == ("sync_failing", "active", "sync_succeeded")
    assert done.change is not None and done.change.to_status is Status.ACTIVE
    with sessions() as session:
        change = session.scalars(select(StatusChange).order_by(StatusChange.id.desc())).first()
        assert change is not None and change.sync_run_id == run.id


@pytest.mark.parametrize(("customers", "commits"), [(PAGE_SIZE - 1, 2), (25, 4)])
def test_the_last_page_is_stored_by_the_transaction_that_finishes_the_run(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    customers: int,
    commits: int,
) -> None:
    # given an integration with one page of customers, or three
    integration = make_stripe_integration(customers=customers)
    committed: list[object] = []
    engine, count = sessions.kw["bind"], committed.append
    event.listen(engine, "commit", count)
    try:
        # when it syncs
        done = sync_integration(services, str(integration.id), task_id="task-1")
    finally:
        event.remove(engine, "commit", count)

    # then: one transaction starts the run, one per earlier page, one stores the last and
    # finishes; every record is stored and counted on the run
    assert isinstance(done, Finished) and done.result.records == customers
    assert len(committed) == commits
    assert record_ids(sessions, integration.id) == customer_ids(customers)
    [run] = runs_of(sessions, integration.id)
    assert (run.records_received, run.outcome) == (customers, "succeeded")
    assert reload(sessions, integration.id).data_last_received_at is not None


def test_first_successful_sync_keeps_the_integration_active_and_marks_the_first_sync(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    clock: ManualClock,
) -> None:
    integration = make_stripe_integration(customers=3, established=False)

    done = sync_integration(services, str(integration.id), task_id="task-1")

    assert isinstance(done, Finished)
    [run] = runs_of(sessions, integration.id)
    assert run.first_sync
    stored = reload(sessions, integration.id)
    assert (stored.status, stored.first_sync_finished_at) == (Status.ACTIVE, clock.now())


def test_next_sync_fetches_only_what_is_new_since_the_stored_cursor(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    integration = make_stripe_integration(customers=12)
    sync_integration(services, str(integration.id), task_id="task-1")
    fake.add_objects(SECRET_KEY, "customers", 3)
    fake.clear_log()

    done = sync_integration(services, str(integration.id), task_id="task-2")

    assert isinstance(done, Finished)
    # the new customers' events (and the newest listed one's, replayed from the overlap)
    assert done.result.records == 4
    assert len(fake.requests_to("/v1/events")) == 1
    assert fake.requests_to("/v1/customers") == []
    assert record_ids(sessions, integration.id) == customer_ids(15)


# --- syncs that must not run ------------------------------------------------------------------


def test_redelivered_task_is_skipped_and_syncs_nothing(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    # given: the delivery task-1#0 already ran
    integration = make_stripe_integration()
    sync_integration(services, str(integration.id), task_id="task-1", attempt=0)
    fake.clear_log()

    # when: the broker delivers it again
    again = sync_integration(services, str(integration.id), task_id="task-1", attempt=0)

    # then
    assert isinstance(again, Skipped)
    assert "task-1#0 already ran" in again.reason
    assert fake.requests == []
    assert len(runs_of(sessions, integration.id)) == 1


def test_a_retry_of_the_same_task_is_a_new_attempt_and_runs(
    services: SyncServices, make_stripe_integration: IntegrationFactory, sessions: Sessions
) -> None:
    integration = make_stripe_integration()
    sync_integration(services, str(integration.id), task_id="task-1", attempt=0)

    retried = sync_integration(services, str(integration.id), task_id="task-1", attempt=1)

    assert isinstance(retried, Finished)
    assert [run.attempt for run in runs_of(sessions, integration.id)] == [0, 1]


def test_sync_is_skipped_while_another_sync_holds_the_lease(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    integration = make_stripe_integration()
    token = services.leases.acquire(str(integration.id))
    assert token is not None

    try:
        skipped = sync_integration(services, str(integration.id), task_id="task-2")
    finally:
        services.leases.release(str(integration.id), token)

    assert skipped == Skipped("lease held by another sync")
    assert fake.requests == []
    assert runs_of(sessions, integration.id) == []


def test_sync_is_skipped_while_a_run_of_another_worker_holds_its_row_lease(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
    clock: ManualClock,
) -> None:
    # given: a run started elsewhere whose lease has not lapsed
    integration = make_stripe_integration()
    with sessions() as session, session.begin():
        other = start_run(
            session, integration.id, task_id="elsewhere", now=clock.now(), lease=LEASE_TTL
        )
    assert isinstance(other, RunStart)

    skipped = sync_integration(services, str(integration.id), task_id="task-2")

    assert isinstance(skipped, Skipped)
    assert skipped.reason == f"lease held by run {other.run_id}"
    assert fake.requests == []


def test_sync_of_an_integration_no_longer_syncing_is_skipped(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
    clock: ManualClock,
) -> None:
    integration = make_stripe_integration()
    with sessions() as session, session.begin():
        deactivate(session, integration.id, now=clock.now(), actor="user-1")

    skipped = sync_integration(services, str(integration.id), task_id="task-1")

    assert skipped == Skipped("not syncing (inactive)")
    assert fake.requests == []
    assert runs_of(sessions, integration.id) == []


def test_sync_of_an_integration_that_is_gone_is_skipped(services: SyncServices) -> None:
    assert sync_integration(services, str(uuid.uuid4()), task_id="t") == Skipped("gone")


# --- failures ------------------------------------------------------------------------------


def test_transient_failure_before_the_final_attempt_asks_for_a_retry_and_changes_nothing(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
    sleep: RecordingSleep,
) -> None:
    # given: the provider answers every request with 503
    integration = make_stripe_integration()
    fake.fail_next(1000, status=503)

    # when
    with pytest.raises(TransientError, match="503") as raised:
        sync_integration(services, str(integration.id), task_id="task-1", final_attempt=False)

    # then: the HTTP layer retried in-process, then handed over to the task
    assert len(fake.requests) == RETRY.attempts
    assert sleep.delays == [0.5, 1.0]
    assert raised.value.retry_after is None
    # the attempt is closed without an outcome, and the status is untouched
    [run] = runs_of(sessions, integration.id)
    assert (run.finished_at, run.outcome, run.applied) == (services.clock.now(), None, False)
    assert run.error is not None and run.error.startswith("transient: GET /v1/customers: 503")
    assert reload(sessions, integration.id).status == Status.ACTIVE
    # and the lease was given back for the retry
    assert services.leases.acquire(str(integration.id)) is not None


def test_a_transient_failure_after_a_page_keeps_the_page_for_the_retry(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    # given: the provider fails transiently once the first of three pages arrived
    integration = make_stripe_integration(customers=25)
    failing = interfered(
        services, crash_after_pages=1, crash_with=TransientError("GET /v1/customers: 503")
    )

    # when the attempt hands over to the task, and the retry runs
    with pytest.raises(TransientError):
        sync_integration(failing, str(integration.id), task_id="task-1", final_attempt=False)
    kept = record_ids(sessions, integration.id)
    fake.clear_log()
    done = sync_integration(services, str(integration.id), task_id="task-1", attempt=1)

    # then: the page fetched before the failure was stored, and the retry went on after it
    assert kept == customer_ids(25)[-PAGE_SIZE:]  # Stripe lists the newest first
    assert fake.requests_to("/v1/customers")[0].query["starting_after"] == "cus_000016"
    assert isinstance(done, Finished) and done.result.records == 25 - PAGE_SIZE
    first, retried = runs_of(sessions, integration.id)
    assert (first.records_received, first.outcome) == (PAGE_SIZE, None)
    assert (retried.records_received, retried.outcome) == (25 - PAGE_SIZE, "succeeded")
    assert record_ids(sessions, integration.id) == customer_ids(25)


def test_transient_failure_on_the_final_attempt_counts_as_failed(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    integration = make_stripe_integration()
    fake.fail_next(1000, status=503)

    done = sync_integration(
        services, str(integration.id), task_id="task-1", attempt=4, final_attempt=True
    )

    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.FAILED
    assert done.result.error is not None
    assert done.result.error.startswith("gave up after retries: GET /v1/customers: 503")
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.applied) == ("failed", True)
    assert reload(sessions, integration.id).status == Status.SYNC_FAILING


def test_retry_after_of_a_429_reaches_the_task(
    services: SyncServices, make_stripe_integration: IntegrationFactory, fake: FakeStripe
) -> None:
    # given: Stripe asks for two minutes, longer than the HTTP layer waits in-process
    integration = make_stripe_integration()
    fake.rate_limit_next(1, retry_after=120)

    with pytest.raises(TransientError) as raised:
        sync_integration(services, str(integration.id), task_id="task-1", final_attempt=False)

    assert raised.value.retry_after == 120.0
    assert len(fake.requests) == 1


def test_revoked_key_makes_the_integration_auth_failing(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
    clock: ManualClock,
) -> None:
    integration = make_stripe_integration()
    fake.revoke(SECRET_KEY)

    done = sync_integration(services, str(integration.id), task_id="task-1")

    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.AUTH_FAILED
    assert SECRET_KEY not in (done.result.error or "")
    stored = reload(sessions, integration.id)
    assert (stored.status, stored.auth_failing_since) == (Status.AUTH_FAILING, clock.now())
    assert audit_of(sessions, integration.id)[-1] == ("active", "auth_failing", "sync_auth_failed")


def test_credentials_sealed_under_a_key_no_longer_configured_fail_without_blaming_the_customer(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    # given: credentials sealed under a key the worker does not have
    retired = Keyring.from_config(Keyring.generate_key())
    integration = make_stripe_integration(
        credentials_sealed=retired.seal({"secret_key": SECRET_KEY})
    )

    done = sync_integration(services, str(integration.id), task_id="task-1")

    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.FAILED
    assert (done.result.error or "").startswith("credentials unusable: ")
    stored = reload(sessions, integration.id)
    assert stored.status == Status.SYNC_FAILING
    assert stored.auth_failing_since is None
    assert fake.requests == []


def test_integration_without_credentials_fails_auth(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    integration = make_stripe_integration(credentials_sealed=None)

    done = sync_integration(services, str(integration.id), task_id="task-1")

    assert isinstance(done, Finished)
    assert done.result == SyncResult(SyncOutcome.AUTH_FAILED, error="no credentials are configured")
    assert reload(sessions, integration.id).status == Status.AUTH_FAILING
    assert fake.requests == []


# --- the world changes while a sync runs -------------------------------------------------------


def test_result_arriving_after_deactivation_is_recorded_but_changes_nothing(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    clock: ManualClock,
) -> None:
    # given: the user deactivates the integration while its sync talks to Stripe
    integration = make_stripe_integration(customers=5, status=Status.SYNC_FAILING.value)

    def user_deactivates() -> None:
        with sessions() as session, session.begin():
            deactivate(session, integration.id, now=clock.now(), actor="user-1")

    deactivating = interfered(services, during_sync=user_deactivates)

    # when
    done = sync_integration(deactivating, str(integration.id), task_id="task-1")

    # then: recorded, not applied, nothing resurrected
    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.SUCCEEDED
    assert done.change is None
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.applied, run.status_after) == ("succeeded", False, "inactive")
    stored = reload(sessions, integration.id)
    assert (stored.status, stored.next_sync_at) == (Status.INACTIVE, None)
    triggers = [trigger for _, _, trigger in audit_of(sessions, integration.id)]
    assert Trigger.SYNC_SUCCEEDED.value not in triggers
    assert triggers[-1] == Trigger.DEACTIVATE.value


def test_sync_after_a_crash_between_pages_resumes_from_the_stored_cursor(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
    clock: ManualClock,
) -> None:
    # given: the worker dies after storing the first page of 25 customers
    integration = make_stripe_integration(customers=25)
    crashing = interfered(services, crash_after_pages=1)
    with pytest.raises(WorkerDied):
        sync_integration(crashing, str(integration.id), task_id="task-1")
    assert len(record_ids(sessions, integration.id)) == PAGE_SIZE

    # when: the run is reaped once its lease lapses, and the next sync runs
    clock.advance(LEASE_TTL + timedelta(seconds=1))
    with sessions() as session, session.begin():
        assert reap_abandoned(session, now=clock.now()) == [integration.id]
    fake.clear_log()
    done = sync_integration(services, str(integration.id), task_id="task-2")

    # then: it started after the last stored record and stored each customer once
    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.SUCCEEDED
    first_request = fake.requests_to("/v1/customers")[0]
    assert first_request.query["starting_after"] == "cus_000016"
    assert done.result.records == 25 - PAGE_SIZE
    assert record_ids(sessions, integration.id) == customer_ids(25)
    with sessions() as session:
        rows = session.scalar(
            select(func.count())
            .select_from(SyncedRecord)
            .where(SyncedRecord.integration_id == integration.id)
        )
    assert rows == 25
    reaped, resumed = runs_of(sessions, integration.id)
    assert (reaped.records_received, resumed.records_received) == (PAGE_SIZE, 25 - PAGE_SIZE)


def test_each_integrations_requests_spend_its_own_budget_at_its_providers_rate(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sleep: RecordingSleep,
) -> None:
    # given a budget of one request per second with a burst of one for Stripe keys
    budget = LocalBudget(monotonic=lambda: 0.0)
    policy = replace(DEFAULT_POLICIES[Provider.STRIPE], rate_per_s=1.0, burst=1)
    paced_services = replace(services, budget=budget, policies={Provider.STRIPE: policy})
    first = make_stripe_integration(customers=25)
    second = make_stripe_integration(customers=25)

    # when each syncs (three pages, so three requests)
    for integration in (first, second):
        done = sync_integration(paced_services, str(integration.id), task_id=None)
        assert isinstance(done, Finished)

    # then each key's first request goes at once and the rest wait a second more each
    assert sleep.delays == [1.0, 2.0, 1.0, 2.0]
