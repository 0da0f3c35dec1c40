"""`syncworker status` and `worker.queues.queue_depths`, on real brokers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery
from redis import Redis
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from models.schema import SyncRun
from scheduler.marks import mark
from tests.conftest import IntegrationFactory, incident_row, redis_url
from tests.worker.cli.conftest import Invoke, as_json, one_line_error
from worker.app import create_app
from worker.cli import status as status_module
from worker.queues import REDIS_PRIORITY_SEP, queue_depths
from worker.settings import Settings

STRIPE_QUEUE = "sync.stripe"
# kombu's SQLAlchemy transport maps its tables with `lazy="noload"`, which SQLAlchemy 2.1
# deprecates: a library's deprecation, not ours, ignored where a test publishes to it.
KOMBU_NOLOAD = pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy is deprecated:DeprecationWarning"
)


def test_status_counts_integrations_per_status_and_provider(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    make_integration()
    make_integration(status="quality_assurance")
    make_integration(provider="shopify", status="inactive")

    view = as_json(invoke("status", "--json"))
    human = invoke("status")

    counts = view["integrations"]
    assert counts["total"] == 3
    assert counts["byStatus"]["active"] == 1
    assert counts["byStatus"]["quality_assurance"] == 1
    assert counts["byStatus"]["inactive"] == 1
    assert counts["byStatus"]["deleted"] == 0
    assert counts["byProvider"] == {"stripe": 2, "shopify": 1}
    assert view["providers"]["shopify"]["integrations"] == 1
    assert human.exit_code == 0, human.output
    assert "integrations  3: active 1 · quality_assurance 1 · inactive 1" in human.stdout
    assert "PROVIDER" in human.stdout and "LAST TICK" in human.stdout


def test_status_tells_running_syncs_from_stuck_ones(
    invoke: Invoke, make_integration: IntegrationFactory, sessions: sessionmaker[Session]
) -> None:
    integration = make_integration()
    now = datetime.now(UTC)
    stuck_id = uuid.uuid4()
    with sessions() as session, session.begin():
        session.add_all(
            [
                SyncRun(
                    integration_id=integration.id,
                    started_at=now,
                    lease_expires_at=now + timedelta(minutes=5),
                ),
                SyncRun(
                    id=stuck_id,
                    integration_id=integration.id,
                    started_at=now - timedelta(hours=1),
                    lease_expires_at=now - timedelta(minutes=50),
                ),
                SyncRun(
                    integration_id=integration.id,
                    started_at=now - timedelta(hours=2),
                    finished_at=now - timedelta(hours=2),
                    outcome="succeeded",
                ),
            ]
        )

    view = as_json(invoke("status", "--json"))
    human = invoke("status").stdout

    assert (view["syncs"]["running"], view["syncs"]["stuck"]) == (1, 1)
    assert [r["id"] for r in view["syncs"]["stuckRuns"]] == [str(stuck_id)]
    assert "1 running · 1 stuck (lease lapsed)" in human
    assert f"stuck run {str(stuck_id)[:8]} of integration {integration.id}" in human
    assert "lease lapsed 50m" in human


def test_status_shows_the_last_tick_per_provider_and_the_last_sweeps(
    invoke: Invoke, sessions: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        mark(session, "tick:stripe", now=now - timedelta(seconds=30), dispatched=4, max_lag_s=1)
        mark(session, "sweep:reap_abandoned", now=now - timedelta(minutes=2), changed=1)

    view = as_json(invoke("status", "--json"))
    human = invoke("status").stdout

    tick = view["providers"]["stripe"]["lastTick"]
    assert tick["detail"] == {"dispatched": 4, "max_lag_s": 1}
    assert 30 <= tick["agoSeconds"] < 90
    assert view["providers"]["shopify"]["lastTick"] is None
    assert view["sweeps"]["reap_abandoned"]["detail"] == {"changed": 1}
    assert view["sweeps"]["auth_escalation"] is None
    stripe_row = next(line for line in human.splitlines() if line.startswith("stripe "))
    assert "s ago" in stripe_row and stripe_row.split()[-1] == "4"
    reap_row = next(line for line in human.splitlines() if line.startswith("reap_abandoned"))
    assert "2m" in reap_row
    assert "never" in next(line for line in human.splitlines() if line.startswith("shopify "))


@KOMBU_NOLOAD
def test_sync_publishes_on_the_provider_queue_and_status_shows_the_depth(
    invoke: Invoke, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    before = as_json(invoke("status", "--json"))

    human = invoke("integrations", "sync", str(integration.id))
    machine = invoke("integrations", "sync", str(integration.id), "--json")
    after = as_json(invoke("status", "--json"))

    assert human.stdout.strip() == f"sync of integration {integration.id} queued"
    assert as_json(machine) == {
        "ok": True,
        "message": f"sync of integration {integration.id} queued",
    }
    assert before["queues"][STRIPE_QUEUE] == 0
    assert after["queues"][STRIPE_QUEUE] == 2
    assert after["providers"]["stripe"]["depth"] == 2
    assert after["queues"]["syncworker.control"] == 0
    assert after["brokerReachable"] is True


def test_status_with_an_unreachable_broker_shows_unknown_depths(
    invoke: Invoke, cli_env: dict[str, str]
) -> None:
    cli_env["SYNCWORKER_BROKER_URL"] = "redis://:hunter2@127.0.0.1:1/0"

    result = invoke("status", "--json")
    human = invoke("status")

    assert result.exit_code == 0
    view = as_json(result)
    assert view["brokerReachable"] is False
    assert set(view["queues"].values()) == {None}
    assert "hunter2" not in result.stdout + human.stdout
    assert "(unreachable: queue depths unknown)" in human.stdout


def test_status_watch_redraws_until_interrupted(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(status_module.time, "sleep", sleep)

    human = invoke("status", "--watch", "--interval", "0.5")
    pauses.clear()
    machine = invoke("status", "--watch", "--json")

    assert human.exit_code == 0
    assert human.stdout.count("syncworker status at") == 2
    assert machine.exit_code == 0
    lines = machine.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith('{"at": ') for line in lines)
    assert pauses == [2.0, 2.0]


def test_status_of_a_database_without_schema_says_to_migrate(
    invoke: Invoke, cli_env: dict[str, str], tmp_path: Path
) -> None:
    database = tmp_path / "missing" / "empty.db"
    cli_env["SYNCWORKER_DATABASE_URL"] = f"sqlite:///{database}"

    result = invoke("status")

    assert one_line_error(result) == (
        f"error: there is no database at sqlite:///{database} yet: run `syncworker db upgrade`"
    )
    assert not database.parent.exists(), "a command that only reads creates nothing"


# queue_depths, directly


def app_for(tmp_path: Path, broker_url: str, **env: str) -> Iterator[Celery]:
    settings = Settings.from_env(
        {"SYNCWORKER_DATA_DIR": str(tmp_path), "SYNCWORKER_BROKER_URL": broker_url, **env}
    )
    app = create_app(settings)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def sqla_app(tmp_path: Path) -> Iterator[Celery]:
    yield from app_for(tmp_path, f"sqla+sqlite:///{tmp_path / 'broker.db'}")


def test_sqla_depths_are_zero_before_anything_was_published(
    sqla_app: Celery, tmp_path: Path
) -> None:
    depths = queue_depths(sqla_app)

    assert set(depths.values()) == {0}
    assert STRIPE_QUEUE in depths
    assert not (tmp_path / "broker.db").exists()  # looking does not create the broker


@KOMBU_NOLOAD
def test_sqla_depths_count_only_messages_not_yet_delivered(
    sqla_app: Celery, tmp_path: Path
) -> None:
    for _ in range(3):
        sqla_app.send_task("syncworker.sync", args=("x",), queue=STRIPE_QUEUE)
    engine = create_engine(f"sqlite:///{tmp_path / 'broker.db'}")
    with engine.begin() as connection:  # what kombu does on delivery
        connection.execute(
            text(
                "UPDATE kombu_message SET visible = 0 "
                "WHERE id = (SELECT MIN(id) FROM kombu_message)"
            )
        )
    engine.dispose()

    assert queue_depths(sqla_app)[STRIPE_QUEUE] == 2


def test_depths_of_an_unreachable_broker_are_none(tmp_path: Path) -> None:
    for url in ("redis://127.0.0.1:1/0", "sqla+postgresql+psycopg://u@127.0.0.1:1/x"):
        for app in app_for(tmp_path, url):
            depths = queue_depths(app)
            assert depths and set(depths.values()) == {None}, url


@pytest.mark.redis
def test_redis_depths_sum_every_priority_list_of_a_queue(tmp_path: Path) -> None:
    url = redis_url()
    queue = f"sync.stripe.test-{uuid.uuid4().hex[:8]}"
    client = Redis.from_url(url)
    try:
        for app in app_for(tmp_path, url, SYNCWORKER_STRIPE_QUEUE=queue):
            app.send_task("syncworker.sync", args=("a",), queue=queue)
            app.send_task("syncworker.sync", args=("b",), queue=queue, priority=5)
            app.send_task("syncworker.sync", args=("c",), queue=queue, priority=9)

            depths = queue_depths(app)

            assert depths[queue] == 3
            assert client.llen(queue) == 1
            assert client.llen(f"{queue}{REDIS_PRIORITY_SEP}3") == 1
    finally:
        client.delete(queue, *(f"{queue}{REDIS_PRIORITY_SEP}{step}" for step in (3, 6, 9)))
        client.close()


def test_status_shows_provider_incidents_open_and_closed(
    invoke: Invoke, sessions: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    with sessions() as session, session.begin():
        for provider, opened, closed in (
            ("stripe", 2, None),
            ("paddle", 3, now - timedelta(hours=1)),
        ):
            session.add(
                incident_row(
                    now - timedelta(hours=opened),
                    provider=provider,
                    closed_at=closed,
                    window_start=now - timedelta(hours=4),
                    evaluated_at=now,
                    clock_held_until=now,
                )
            )

    view = as_json(invoke("status", "--json"))
    human = invoke("status").stdout

    assert view["providers"]["stripe"]["incident"]["kind"] == "auth"
    assert view["providers"]["paddle"]["incident"] is None
    assert [(i["provider"], i["open"]) for i in view["incidents"]] == [
        ("stripe", True),
        ("paddle", False),
    ]
    stripe_row = next(
        line for line in human.splitlines() if line.startswith("stripe ") and "OPEN" in line
    )
    assert "38/40" in stripe_row and "6x" in stripe_row
    assert any(line.startswith("paddle ") and "closed" in line for line in human.splitlines())
