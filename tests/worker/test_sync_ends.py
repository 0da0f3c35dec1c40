"""Every sync ends, classified (issue 10): no error leaves its run open.

No Celery: `sync_integration` as the task calls it, against the Stripe fake over real
HTTP, on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from structlog.testing import capture_logs

from fakes.server import Request, Response
from fakes.stripe import FakeStripe
from models.clock import ManualClock
from models.schema import SyncedRecord
from models.status import Provider, Status, SyncOutcome
from tests.conftest import IntegrationFactory
from tests.worker.test_sync import (  # the fixtures of one sync, shared with its tests
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
from worker.connectors.http import HttpOptions
from worker.connectors.limits import SyncLimits
from worker.connectors.registry import connector_for
from worker.lease import Leases, LocalLeaseStore
from worker.sync import Finished, SyncServices, end_overdue_run, sync_integration

__all__ = ["fake", "keyring", "make_stripe_integration", "services", "sleep"]


def test_an_unexpected_error_ends_the_run_failed_naming_its_kind_and_a_first_sync_reaches_qa(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    clock: ManualClock,
) -> None:
    # given: a first sync whose provider answer makes the code fail in a way nobody foresaw
    integration = make_stripe_integration(customers=3, established=False)
    crashing = interfered(
        services, crash_after_pages=0, crash_with=RecursionError("maximum recursion depth")
    )

    # when
    with capture_logs() as logs:
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
    assert [line["event"] for line in logs].count("sync.crashed") == 1


def test_a_credential_the_http_layer_cannot_encode_fails_the_run_without_showing_it(
    services: SyncServices,
    make_stripe_integration: IntegrationFactory,
    sessions: Sessions,
    keyring: Any,
    fake: FakeStripe,
) -> None:
    # given: a key with a character no HTTP header can carry (accepted before validation)
    secret = "sk_test_clé_secrète_42"
    fake.add_account(secret, customers=2)
    integration = make_stripe_integration(credentials_sealed=keyring.seal({"secret_key": secret}))

    # when
    with capture_logs() as logs:
        done = sync_integration(services, str(integration.id), task_id="task-1")

    # then: failed and closed, and nothing of the key is in the run or the log
    assert isinstance(done, Finished)
    assert done.result.outcome is SyncOutcome.FAILED
    [run] = runs_of(sessions, integration.id)
    assert run.finished_at is not None and run.error is not None
    assert "UnicodeEncodeError" in run.error
    shown = run.error + json.dumps(logs, default=str)
    assert "secr" not in shown and "clé" not in shown and "\\u00e9" not in shown


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
