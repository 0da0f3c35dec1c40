"""Every sync ends, classified (issue 10): no error leaves its run open.

No Celery: `sync_integration` as the task calls it, against the Stripe fake over real
HTTP, on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from fakes.server import Request, Response
from fakes.stripe import FakeStripe
from models.clock import ManualClock
from models.db import is_disconnect
from models.integrations import set_credentials
from models.schema import SyncedRecord
from models.status import Provider, Status, SyncOutcome
from models.sync_runs import INTERRUPTED_ERROR, RunStart, Skipped, SyncResult, start_run
from tests.conftest import IntegrationFactory, postgres_url
from tests.worker.conftest import LogLines
from tests.worker.test_sync import (  # the fixtures of one sync, shared with its tests
    LEASE_TTL as LEASE,
)
from tests.worker.test_sync import (
    SECRET_KEY,
    Sessions,
    audit_of,
    fake,
    interfered,
    keyring,
    make_stripe_integration,
    reload,
    runs_of,
    services,
    sleep,
)
from worker.connectors.base import Page, PageSink, SyncContext
from worker.connectors.http import HttpOptions
from worker.connectors.limits import SyncLimits
from worker.connectors.registry import connector_for
from worker.lease import Leases, LocalLeaseStore, RedisLeaseStore
from worker.sync import Finished, SyncServices, end_overdue_run, sync_integration
from worker.tasks import _retryable as retryable

__all__ = ["fake", "keyring", "make_stripe_integration", "services", "sleep"]


def test_an_unexpected_error_ends_the_run_failed_naming_its_kind_and_a_first_sync_reaches_qa(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    json_logs: LogLines,
) -> None:
    # given: a first sync whose provider answer makes the code fail in a way nobody foresaw
    clock = services.clock
    integration = make_stripe_integration(customers=3, established=False)
    crashing = interfered(
        services, crash_after_pages=0, crash_with=RecursionError("maximum recursion depth")
    )

    # when
    done = sync_integration(crashing, str(integration.id), task_id="task-1")

    # then: the run is closed failed with a one-line reason naming the error's kind
    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.FAILED
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.applied, run.finished_at) == ("failed", True, clock.now())
    assert run.error is not None and run.error.startswith("unexpected RecursionError in ")
    assert "\n" not in run.error
    # the outcome was applied: a broken first sync goes to quality assurance
    assert reload(sessions, integration.id).status == Status.QUALITY_ASSURANCE
    # and the error was logged once
    assert [line["event"] for line in json_logs()].count("sync.crashed") == 1


def test_a_stored_credential_no_header_can_carry_ends_the_run_without_showing_it(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
    json_logs: LogLines,
) -> None:
    # given: a key with a character no HTTP header can carry (stored before create checked)
    keyring = services.keyring
    secret = "sk_test_clé_secrète_42"
    fake.add_account(secret, customers=2)
    integration = make_stripe_integration(credentials_sealed=keyring.seal({"secret_key": secret}))

    # when
    done = sync_integration(services, str(integration.id), task_id="task-1")

    # then: closed and classified (the key is unusable: auth failed, new credentials help),
    # and nothing of the key is in the run or the log
    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.AUTH_FAILED
    [run] = runs_of(sessions, integration.id)
    assert run.finished_at is not None and run.error is not None
    assert run.error.startswith("stripe credentials: secret_key must be printable ASCII")
    shown = run.error + json.dumps(json_logs())
    for part in ("clé", "secrète", "te_42", "\\u00e9"):
        assert part not in shown


class HostileValues(FakeStripe):
    """The Stripe fake, except that customers come back holding values PostgreSQL refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/v1/customers", self._hostile)

    def _hostile(self, request: Request) -> Response:
        body = (
            '{"object": "list", "has_more": false, "data": ['
            '{"id": "cus_000003", "created": 1700000180, "name": "Ac\\u0000me"},'
            '{"id": "cus_000002", "created": 1700000120, "balance": NaN, "limit": Infinity},'
            '{"id": "cus_nul\\u0000", "created": 1700000090},'
            '{"id": "%s", "created": 1700000070},'
            '{"id": "cus_000001", "created": 1700000060}]}'
        ) % ("x" * 300)
        return Response(200, body.encode(), {"Content-Type": "application/json"})


@pytest.fixture
def hostile_services(services: SyncServices) -> Iterator[SyncServices]:
    """The sync's services, with Stripe pointed at `HostileValues`."""
    with HostileValues() as server:
        connector = connector_for(Provider.STRIPE, base_url=server.url, http=HttpOptions())
        yield replace(services, connector_for=lambda _: connector)
        connector.close()


def test_records_holding_values_the_database_refuses_never_fail_the_sync(
    hostile_services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
) -> None:
    # given: customers with NUL characters, NaN and Infinity, and ids no column holds
    integration = make_stripe_integration(customers=0)

    # when
    done = sync_integration(hostile_services, str(integration.id), task_id="task-1")

    # then: the storable records are in, cleaned; the others skipped; the sync says so
    assert isinstance(done, Finished)
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.records_received) == ("succeeded_with_warnings", 3)
    with sessions() as session:
        rows = session.execute(select(SyncedRecord.external_id, SyncedRecord.data))
        data = {external_id: data for external_id, data in rows}
    assert sorted(data) == ["cus_000001", "cus_000002", "cus_000003"]
    assert data["cus_000003"]["name"] == "Acme"
    assert (data["cus_000002"]["balance"], data["cus_000002"]["limit"]) == (None, None)
    assert sorted(run.warnings) == [
        "customers: cleaned: NUL characters removed (1 record)",
        "customers: cleaned: NaN or Infinity stored as null (1 record)",
        "customers: skipped: id contains a NUL character (1 record)",
        "customers: skipped: id longer than 255 characters (1 record)",
    ]
    assert done.result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert reload(sessions, integration.id).status == Status.SYNC_WARNINGS


# --- every sync ends: its hard time limit --------------------------------------------------

TIME_LIMIT = timedelta(seconds=3)
DEADLINE_S = 2  # the sync's own deadline (SYNCWORKER_SYNC_DEADLINE), below the hard limit
PAGE_SECONDS = 0.5  # how long each page takes on the provider clock below


class ProviderTime:
    """A monotonic clock the fake moves: each page it serves takes PAGE_SECONDS."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class EndlessStripe(FakeStripe):
    """Stripe, except that customers never end: every page is new and says `has_more`.

    Each page moves `time` on by PAGE_SECONDS; a page whose `gate` is set waits for it first.
    """

    def __init__(self, time: ProviderTime) -> None:
        super().__init__()
        self.time = time
        self.served = 0
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        self.route("GET", "/v1/customers", self._endless)

    def _endless(self, request: Request) -> Response:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        first = self.served * 10
        self.served += 1
        self.time.now += PAGE_SECONDS
        data = [
            {"id": f"cus_{n:08d}", "object": "customer", "created": 1_800_000_000 - n}
            for n in range(first, first + 10)
        ]
        return Response.json({"object": "list", "data": data, "has_more": True})


@pytest.fixture
def provider_time() -> ProviderTime:
    return ProviderTime()


@pytest.fixture
def endless(provider_time: ProviderTime) -> Iterator[EndlessStripe]:
    with EndlessStripe(provider_time) as server:
        yield server


@pytest.fixture
def limited_services(
    services: SyncServices, endless: EndlessStripe, provider_time: ProviderTime
) -> Iterator[SyncServices]:
    """The sync's services with TIME_LIMIT and DEADLINE_S on the provider's clock, against
    `endless`, and leases whose renewer closes overdue runs."""
    connector = connector_for(Provider.STRIPE, base_url=endless.url, http=HttpOptions())
    limited = replace(
        services,
        connector_for=lambda _: connector,
        time_limit=TIME_LIMIT,
        limits=SyncLimits(deadline_s=DEADLINE_S, monotonic=provider_time),
    )
    leases = Leases(
        LocalLeaseStore(time.monotonic),
        services.sessions,
        ttl=timedelta(seconds=90),
        app_ttl=timedelta(seconds=90),
        now=services.clock.now,
        on_overdue=lambda run_id: end_overdue_run(limited, run_id),
        monotonic=provider_time,
    )
    yield replace(limited, leases=leases)
    leases.close()
    connector.close()


def test_a_sync_stuck_past_its_deadline_is_closed_by_the_renewer_and_no_longer_renewed(
    limited_services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    endless: EndlessStripe,
    provider_time: ProviderTime,
) -> None:
    # given: a sync stuck inside the provider's first answer (stuck anywhere: the renewer
    # does not know where, and the threads pool enforces no time limit)
    integration = make_stripe_integration(customers=0)
    endless.gate = threading.Event()
    outcome: list[object] = []
    syncing = threading.Thread(
        target=lambda: outcome.append(
            sync_integration(limited_services, str(integration.id), task_id="task-1")
        )
    )
    syncing.start()
    assert endless.entered.wait(timeout=10)

    # when: its hard time limit passes and the lease renewer runs
    provider_time.now += TIME_LIMIT.total_seconds()
    renewed = limited_services.leases.renew_all()

    # then: the lease was not renewed, and the run is closed failed, naming the limit
    assert renewed == 0
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.applied, run.lease_expires_at) == ("failed", True, None)
    assert run.error == (
        "time limit: the sync was still running at its hard limit of 3 s"
        " (SYNCWORKER_TASK_TIME_LIMIT); closed by the lease renewer"
    )
    assert reload(sessions, integration.id).status == Status.SYNC_FAILING

    # and when the stuck request returns at last, the sync stops at its own deadline (before
    # its next request), without applying a second outcome
    endless.gate.set()
    syncing.join(timeout=10)
    [done] = outcome
    assert isinstance(done, Finished) and done.change is None
    triggers = [t for _, _, t in audit_of(sessions, integration.id)]
    assert triggers.count("sync_failed") == 1


# --- a retry takes over its own earlier attempt ---------------------------------------------


def test_a_retry_takes_over_the_run_its_earlier_attempt_left_open(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    clock: ManualClock,
) -> None:
    # given: attempt 0 of task-1 started its run, then lost its database connection before
    # it could close it; the run's lease is still live
    integration = make_stripe_integration(customers=3)
    with sessions() as session, session.begin():
        earlier = start_run(
            session, integration.id, task_id="task-1", now=clock.now(), lease=timedelta(minutes=1)
        )
    assert isinstance(earlier, RunStart)

    # when: the task's retry runs
    done = sync_integration(services, str(integration.id), task_id="task-1", attempt=1)

    # then: it took the earlier run over (closed, no outcome) and synced
    assert isinstance(done, Finished)
    first, retried = runs_of(sessions, integration.id)
    assert (first.id, first.outcome, first.finished_at) == (earlier.run_id, None, clock.now())
    assert first.error == f"{INTERRUPTED_ERROR}; attempt 1 of the same task took over"
    assert first.failure_kind == "transient"  # counted toward incidents like any retry
    assert (retried.attempt, retried.outcome, retried.records_received) == (1, "succeeded", 3)


def test_another_tasks_sync_still_waits_for_a_live_run(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    clock: ManualClock,
) -> None:
    integration = make_stripe_integration(customers=3)
    with sessions() as session, session.begin():
        start_run(session, integration.id, task_id="task-1", now=clock.now(), lease=LEASE)

    skipped = sync_integration(services, str(integration.id), task_id="task-2", attempt=1)

    assert isinstance(skipped, Skipped) and skipped.reason.startswith("lease held by run ")
    assert len(runs_of(sessions, integration.id)) == 1


def test_a_lease_store_that_cannot_be_reached_is_an_outage_the_sync_task_retries(
    services: SyncServices, make_stripe_integration: IntegrationFactory, sessions: Sessions
) -> None:
    # given: Redis down (nothing listens on port 1)
    integration = make_stripe_integration(customers=3)
    down = Redis(port=1, socket_connect_timeout=0.5)
    leases = Leases(
        RedisLeaseStore(down), sessions, ttl=LEASE, app_ttl=LEASE, now=services.clock.now
    )

    # when / then: the outage reaches the task, which retries it; nothing started
    with pytest.raises(RedisError) as raised:
        sync_integration(replace(services, leases=leases), str(integration.id), task_id="t")
    assert retryable(raised.value, final=False)
    assert not retryable(raised.value, final=True)
    assert runs_of(sessions, integration.id) == []
    leases.close()
    down.close()


# For what only PostgreSQL does (terminating backends, enforcing column lengths): the
# `engine` fixture's PostgreSQL parameter alone.
ONLY_POSTGRES = pytest.mark.parametrize("engine", ["postgres"], indirect=True)


def server_drops_connections() -> None:
    """PostgreSQL terminates every other connection to the test database (a restart, a proxy)."""
    with psycopg.connect(postgres_url(), autocommit=True) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@ONLY_POSTGRES
def test_a_database_connection_dropped_mid_sync_is_retried_by_the_same_task(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
) -> None:
    # given: PostgreSQL drops every connection of the worker's pool after the run started
    integration = make_stripe_integration(customers=25)
    dropping = interfered(services, during_sync=server_drops_connections)

    # when: the attempt fails on its dead connection, and the task retries it
    with pytest.raises(DBAPIError) as raised:
        sync_integration(dropping, str(integration.id), task_id="task-1", final_attempt=False)
    assert is_disconnect(raised.value)
    done = sync_integration(services, str(integration.id), task_id="task-1", attempt=1)

    # then: the retry ran (not skipped as someone else's sync) and stored every record once
    assert isinstance(done, Finished)
    first, retried = runs_of(sessions, integration.id)
    assert (first.outcome, first.finished_at is not None) == (None, True)
    assert (retried.attempt, retried.outcome) == (1, "succeeded")
    assert first.records_received + retried.records_received == 25
    triggers = [t for _, _, t in audit_of(sessions, integration.id)]
    assert triggers.count("sync_succeeded") <= 1


@ONLY_POSTGRES
def test_a_database_connection_dropped_on_the_final_attempt_fails_the_run_classified(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
) -> None:
    integration = make_stripe_integration(customers=25)
    dropping = interfered(services, during_sync=server_drops_connections)

    done = sync_integration(dropping, str(integration.id), task_id="task-1", final_attempt=True)

    assert isinstance(done, Finished)
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.applied) == ("failed", True)
    assert run.error == "gave up after retries: database connection lost"


# --- a stale result never undoes newer credentials ------------------------------------------


def test_an_old_keys_401_arriving_after_new_credentials_is_recorded_not_applied(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    fake: FakeStripe,
) -> None:
    clock, keyring = services.clock, services.keyring
    # given: an auth-failing integration whose revoked key is still in use by a sync in flight
    integration = make_stripe_integration(
        status=Status.AUTH_FAILING.value, auth_failing_since=clock.now() - timedelta(days=1)
    )
    fake.revoke(SECRET_KEY)
    fake.add_account("sk_test_new", customers=2)

    def user_sets_new_credentials() -> None:
        with sessions() as session, session.begin():
            set_credentials(
                session,
                integration.id,
                keyring.seal({"secret_key": "sk_test_new"}),
                now=clock.now(),
                actor="user-1",
            )

    # when: the new credentials land while the old key's request is on its way to a 401
    stale = interfered(services, during_sync=user_sets_new_credentials)
    done = sync_integration(stale, str(integration.id), task_id="task-1")

    # then: the 401 is recorded on its run, but the integration keeps its new credentials' status
    assert isinstance(done, Finished)
    assert (done.result.outcome, done.change) == (SyncOutcome.AUTH_FAILED, None)
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.applied, run.status_after) == ("auth_failed", False, "active")
    stored = reload(sessions, integration.id)
    assert (stored.status, stored.auth_failing_since) == (Status.ACTIVE, None)
    triggers = [t for _, _, t in audit_of(sessions, integration.id)]
    assert triggers[-1] == "update_credentials"
    assert "sync_auth_failed" not in triggers

    # and the next sync, with the new key, is applied as usual
    fake.clear_log()
    again = sync_integration(services, str(integration.id), task_id="task-2")
    assert isinstance(again, Finished) and again.result.outcome is SyncOutcome.SUCCEEDED
    # (both runs start at one clock instant: the run is found by its id, not by its order)
    assert {r.id: r.applied for r in runs_of(sessions, integration.id)}[again.run_id]


class OnePage:
    """A connector whose every sync is one given page (what a broken connector might send)."""

    provider = Provider.STRIPE
    required_credentials = ("secret_key",)

    def __init__(self, page: Page) -> None:
        self.page = page

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        return dict(raw)

    def validate_filters(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        return dict(filters)

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        sink.store(self.page)
        return SyncResult(SyncOutcome.SUCCEEDED, len(self.page.records))

    def close(self) -> None:
        """Nothing to release."""


@ONLY_POSTGRES
def test_a_last_page_the_database_refuses_still_closes_the_run_failed(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
) -> None:
    # given: a page whose stream name PostgreSQL's column refuses (SQLite enforces no
    # lengths), stored when the run closes
    integration = make_stripe_integration(customers=0)
    page = Page("s" * 100, (("cus_1", {"name": "Acme"}),), {"created_gte": 1})
    broken = replace(services, connector_for=lambda _: OnePage(page))

    # when
    done = sync_integration(broken, str(integration.id), task_id="task-1")

    # then: the run is closed, failed with the database error's kind, and applied
    assert isinstance(done, Finished)
    [run] = runs_of(sessions, integration.id)
    assert (run.outcome, run.applied, run.finished_at is not None) == ("failed", True, True)
    assert (run.error or "").startswith("unexpected DataError (StringDataRightTruncation) in ")
    assert reload(sessions, integration.id).status == Status.SYNC_FAILING
