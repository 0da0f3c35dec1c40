"""Prometheus metrics: counted where syncs and ticks happen, read from the database and
the broker when scraped, and served as text over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import worker_ready, worker_shutdown
from prometheus_client import REGISTRY, CollectorRegistry
from redis import Redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from fakes.stripe import FakeStripe
from models.clock import ManualClock
from models.credentials import Keyring
from models.db import make_sessionmaker
from models.schema import SyncRun
from models.status import Provider, Status
from scheduler.beat import DISPATCH_TASK
from scheduler.providers import DEFAULT_POLICIES
from tests.conftest import IntegrationFactory, integration_factory, postgres_url, redis_url
from tests.worker.conftest import LogLines
from worker import metrics
from worker.app import create_app
from worker.publish import CeleryPublisher
from worker.runtime import Runtime, runtime_of
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
STRIPE_QUEUE = DEFAULT_POLICIES[Provider.STRIPE].queue
DEADLINE_S = 15.0


class Consumer:
    """What Celery sends worker_ready with: something that has the app."""

    def __init__(self, app: Celery) -> None:
        self.app = app


class Ticking:
    """A monotonic clock for the collectors' cache that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sample(name: str, registry: CollectorRegistry = REGISTRY, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# -- counted where they happen ----------------------------------------------------------------


def test_a_finished_sync_counts_its_outcome_and_duration() -> None:
    labels = {"provider": "whop", "outcome": "auth_failed"}
    before = sample("syncworker_sync_outcomes_total", **labels)
    seconds_before = sample("syncworker_sync_duration_seconds_sum", provider="whop")

    metrics.record_sync("whop", "auth_failed", 1.5)

    assert sample("syncworker_sync_outcomes_total", **labels) == before + 1
    assert sample("syncworker_sync_duration_seconds_sum", provider="whop") == seconds_before + 1.5


def test_a_sync_is_labelled_with_the_provider_of_its_queue() -> None:
    policies = DEFAULT_POLICIES
    assert metrics.provider_of_queue(policies, {"routing_key": "sync.shopify"}) == "shopify"
    assert metrics.provider_of_queue(policies, {"routing_key": "syncworker.control"}) == "unknown"
    assert metrics.provider_of_queue(policies, None) == "unknown"


@pytest.mark.postgres
@pytest.mark.redis
def test_the_sync_task_counts_its_outcome_under_its_provider(
    pg_engine: Engine, tmp_path: Path
) -> None:
    # given a worker on Redis and PostgreSQL, and a Stripe integration with a few customers
    redis = Redis.from_url(redis_url())
    redis.flushdb()
    sessions = make_sessionmaker(pg_engine)
    key = f"m:{Keyring.generate_key()}"
    with FakeStripe() as stripe:
        stripe.add_account("sk_test_metrics", customers=3)
        settings = Settings.from_env(
            {
                "SYNCWORKER_DATA_DIR": str(tmp_path),
                "SYNCWORKER_DATABASE_URL": postgres_url(),
                "SYNCWORKER_BROKER_URL": redis_url(),
                "SYNCWORKER_REDIS_URL": redis_url(),
                "SYNCWORKER_CREDENTIAL_KEYS": key,
                "SYNCWORKER_STRIPE_BASE_URL": stripe.url,
                "SYNCWORKER_CONCURRENCY": "2",
            }
        )
        sealed = settings.keyring().seal({"secret_key": "sk_test_metrics"})
        integration = integration_factory(sessions, ManualClock(datetime.now(UTC)))(
            credentials_sealed=sealed
        )
        app = create_app(settings)
        labels = {"provider": "stripe", "outcome": "succeeded"}
        before = sample("syncworker_sync_outcomes_total", **labels)

        # when the sync runs on a real worker
        try:
            with start_worker(
                app,
                pool="threads",
                concurrency=2,
                perform_ping_check=False,
                loglevel="WARNING",
                queues=[STRIPE_QUEUE],
                shutdown_timeout=10,
            ):
                CeleryPublisher(app, settings.providers).sync_now(Provider.STRIPE, integration.id)
                wait_for_finished_run(sessions, integration.id)
                wait_for(lambda: sample("syncworker_sync_outcomes_total", **labels) > before)
        finally:
            runtime_of(app).close()
            redis.flushdb()
            redis.close()

    # then it was counted once, as a stripe success
    assert sample("syncworker_sync_outcomes_total", **labels) == before + 1


# kombu's SQLAlchemy transport (the embedded broker) still maps its tables with `noload`.
@pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")
def test_a_dispatch_tick_sets_the_providers_lag(
    engine: Engine, make_integration: IntegrationFactory, clock: ManualClock, tmp_path: Path
) -> None:
    # given an integration that became due 90 seconds ago
    make_integration(status=Status.ACTIVE.value, next_sync_at=clock.now() - timedelta(seconds=90))
    settings = Settings.from_env(
        {
            "SYNCWORKER_DATA_DIR": str(tmp_path),
            "SYNCWORKER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        }
    )
    runtime = Runtime(settings, clock)
    app = create_app(settings, runtime=runtime)

    # when the beat's stripe tick runs (publishing to the embedded broker)
    try:
        figures = app.tasks[DISPATCH_TASK].run("stripe")
    finally:
        runtime.close()

    # then the lag gauge says how late it was
    assert figures["dispatched"] == 1
    assert sample("syncworker_dispatch_lag_seconds", provider="stripe") == 90.0


# -- read when scraped ------------------------------------------------------------------------


def test_the_integrations_gauge_reflects_the_database_counts(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory
) -> None:
    # given three active stripe integrations and one shopify integration in QA
    for _ in range(3):
        make_integration(status=Status.ACTIVE.value)
    make_integration(status=Status.QUALITY_ASSURANCE.value, provider="shopify")
    monotonic = Ticking()
    registry = CollectorRegistry()
    registry.register(metrics.IntegrationsCollector(sessions, ttl_s=10, monotonic=monotonic))

    def count(status: Status, provider: str) -> float | None:
        labels = {"status": status.value, "provider": provider}
        return registry.get_sample_value("syncworker_integrations", labels)

    # then every status and provider pair is reported, empty ones as 0
    assert count(Status.ACTIVE, "stripe") == 3
    assert count(Status.QUALITY_ASSURANCE, "shopify") == 1
    assert count(Status.INACTIVE, "paddle") == 0

    # and a new integration shows once the cache period has passed, not before
    make_integration(status=Status.ACTIVE.value)
    monotonic.now = 9.9
    assert count(Status.ACTIVE, "stripe") == 3
    monotonic.now = 10.0
    assert count(Status.ACTIVE, "stripe") == 4


def test_queue_depths_are_reported_where_the_broker_knows_them() -> None:
    registry = CollectorRegistry()
    registry.register(metrics.QueueDepthCollector(lambda: {"sync.stripe": 7, "sync.whop": None}))

    assert registry.get_sample_value("syncworker_queue_depth", {"queue": "sync.stripe"}) == 7
    assert registry.get_sample_value("syncworker_queue_depth", {"queue": "sync.whop"}) is None


# -- served -----------------------------------------------------------------------------------


def test_the_endpoint_serves_the_text_exposition_format(
    sessions: sessionmaker[Session], make_integration: IntegrationFactory
) -> None:
    make_integration(status=Status.ACTIVE.value)
    metrics.record_sync("stripe", "succeeded", 0.2)
    collectors = [
        metrics.IntegrationsCollector(sessions),
        metrics.QueueDepthCollector(lambda: {"syncworker.control": 0}),
    ]

    server = metrics.serve(0, collectors, addr="127.0.0.1")
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE syncworker_sync_outcomes_total counter" in text
    assert 'syncworker_integrations{provider="stripe",status="active"} 1.0' in text
    assert 'syncworker_queue_depth{queue="syncworker.control"} 0.0' in text
    assert "# TYPE syncworker_sync_duration_seconds histogram" in text


def test_the_worker_serves_metrics_from_ready_to_shutdown(
    json_logs: LogLines, tmp_path: Path
) -> None:
    # given an app with a metrics port (0: any free one), its database not even migrated
    settings = Settings.from_env(
        {"SYNCWORKER_DATA_DIR": str(tmp_path), "SYNCWORKER_METRICS_PORT": "0"}
    )
    app = create_app(settings)
    worker = Consumer(app)

    # when its worker becomes ready, the endpoint answers (what it can read); after
    # shutdown, it is gone
    worker_ready.send(sender=worker)
    try:
        [serving] = [line for line in json_logs() if line["event"] == "metrics.serving"]
        url = f"http://127.0.0.1:{serving['port']}/metrics"
        text = httpx.get(url).text
        assert "# TYPE syncworker_sync_outcomes_total counter" in text
        assert 'syncworker_queue_depth{queue="sync.stripe"} 0.0' in text
        assert "metrics.collect_failed" in [line["event"] for line in json_logs()]
    finally:
        worker_shutdown.send(sender=worker)
        runtime_of(app).close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)


@pytest.mark.parametrize(
    ("address", "reachable", "unreachable"),
    [(None, "127.0.0.1", None), ("127.0.0.2", "127.0.0.2", "127.0.0.1")],
)
def test_the_worker_serves_metrics_on_the_configured_address_loopback_by_default(
    json_logs: LogLines,
    tmp_path: Path,
    address: str | None,
    reachable: str,
    unreachable: str | None,
) -> None:
    # given the embedded default, with or without SYNCWORKER_METRICS_ADDR
    environ = {"SYNCWORKER_DATA_DIR": str(tmp_path), "SYNCWORKER_METRICS_PORT": "0"}
    if address is not None:
        environ["SYNCWORKER_METRICS_ADDR"] = address
    app = create_app(Settings.from_env(environ))
    worker = Consumer(app)

    # when its worker is ready
    worker_ready.send(sender=worker)
    try:
        [serving] = [line for line in json_logs() if line["event"] == "metrics.serving"]

        # then the endpoint listens there, and only there
        assert serving["addr"] == reachable
        assert httpx.get(f"http://{reachable}:{serving['port']}/metrics").status_code == 200
        if unreachable is not None:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{unreachable}:{serving['port']}/metrics")
    finally:
        worker_shutdown.send(sender=worker)
        runtime_of(app).close()


def test_a_deployment_serves_metrics_on_every_interface_unless_told() -> None:
    deployment = {"SYNCWORKER_BROKER_URL": "redis://redis:6379/0"}

    assert Settings.from_env(deployment).metrics_bind_address == "0.0.0.0"  # noqa: S104
    told = {**deployment, "SYNCWORKER_METRICS_ADDR": "10.0.0.5"}
    assert Settings.from_env(told).metrics_bind_address == "10.0.0.5"


def test_a_taken_port_is_logged_as_one_error_and_the_worker_carries_on(
    json_logs: LogLines, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environ = {"SYNCWORKER_DATA_DIR": str(tmp_path), "SYNCWORKER_METRICS_PORT": str(port)}
        app = create_app(Settings.from_env(environ))

        worker_ready.send(sender=Consumer(app))

    [failed] = [line for line in json_logs() if line["event"] == "metrics.unavailable"]
    assert (failed["level"], failed["addr"], failed["port"]) == ("error", "127.0.0.1", port)
    assert "exception" not in failed
    runtime_of(app).close()


def test_prefork_children_are_summed_in_multiprocess_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two processes that each counted a sync, writing to the shared directory
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path)}
    script = "from worker import metrics; metrics.record_sync('paddle', 'failed', 2.0)"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, check=True)  # noqa: S603

    # when the parent builds its serving registry in multi-process mode
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    registry = metrics.build_registry([])

    # then it reports both children's counts
    outcome = {"provider": "paddle", "outcome": "failed"}
    assert sample("syncworker_sync_outcomes_total", registry, **outcome) == 2
    assert sample("syncworker_sync_duration_seconds_sum", registry, provider="paddle") == 4.0


# -- helpers ----------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s")
        time.sleep(0.05)


def wait_for_finished_run(sessions: sessionmaker[Session], integration_id: uuid.UUID) -> None:
    def finished() -> bool:
        with sessions() as session:
            runs = session.scalars(
                select(SyncRun).where(
                    SyncRun.integration_id == integration_id, SyncRun.finished_at.is_not(None)
                )
            )
            return runs.first() is not None

    wait_for(finished)
