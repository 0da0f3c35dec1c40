"""Operating it for real: `celery -A worker ...` processes on a real Redis and PostgreSQL.

Each test runs the commands the README, the Procfile and the Dockerfile run, in a fresh
empty folder, and reads back what Redis holds or what the process printed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import billiard
import pytest
from kombu import Connection, Exchange, Producer
from redis import Redis
from sqlalchemy import Engine

from models.credentials import Keyring
from models.db import make_sessionmaker
from models.integrations import NewIntegration, create_integration, ensure_environment
from scheduler.beat import CONTROL_QUEUE, DISPATCH_TASK
from tests.conftest import postgres_url, redis_url
from worker.app import create_app
from worker.settings import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
# Generous for a loaded CI box; a passing run waits a fraction of it.
DEADLINE_S = 30.0
QUEUES = [CONTROL_QUEUE] + [f"sync.{name}" for name in (
    "stripe", "revenuecat", "app_store_connect", "shopify", "google_play_console",
    "whop", "paddle", "woocommerce", "superwall",
)]  # fmt: skip


def wait_for(condition: Callable[[], T], *, what: str, timeout: float = DEADLINE_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def redis_db() -> Iterator[Redis]:
    client = Redis.from_url(redis_url())
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def key() -> str:
    return Keyring.generate_key()


@pytest.fixture
def environ(pg_engine: Engine, redis_db: Redis, key: str) -> dict[str, str]:
    """A deployment's environment: PostgreSQL and Redis by URL, no data folder named."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWORKER_")}
    return {
        **inherited,
        "SYNCWORKER_DATABASE_URL": postgres_url(),
        "SYNCWORKER_BROKER_URL": redis_url(),
        "SYNCWORKER_REDIS_URL": redis_url(),
        "SYNCWORKER_CREDENTIAL_KEYS": f"k1:{key}",
        "SYNCWORKER_LOG_FORMAT": "json",
    }


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "fresh-host"
    folder.mkdir()
    return folder


def run(
    args: list[str], environ: dict[str, str], cwd: Path, timeout: float = DEADLINE_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own entry points
        [CELERY, "-A", "worker", *args],
        env={**environ, "PYTHONPATH": str(REPO)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def process(
    args: list[str], environ: dict[str, str], cwd: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`celery -A worker <args>` in its own process group; its output in a log file."""
    log = cwd.parent / f"{args[0]}.log"
    with log.open("wb") as out:
        child = subprocess.Popen(  # noqa: S603 - our own entry point
            [CELERY, "-A", "worker", *args],
            env={**environ, "PYTHONPATH": str(REPO)},
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield child, log
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
                try:
                    child.wait(timeout=DEADLINE_S)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait(timeout=DEADLINE_S)


def json_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for text in log.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            lines.append(json.loads(text))
    return lines


def messages(redis: Redis, queue: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis.lrange(queue, 0, -1)]


def seal_a_credential(engine: Engine, key: str) -> None:
    """Store one integration whose credentials only `key` opens."""
    sessions = make_sessionmaker(engine)
    with sessions() as session, session.begin():
        ensure_environment(session, "env-ops", organization_id="org", name="ops", kind="production")
        spec = NewIntegration(
            environment_id="env-ops",
            name="Acme",
            identifier=f"acme-{uuid.uuid4().hex[:6]}",
            provider="stripe",
            credentials_sealed=Keyring.from_config(f"k1:{key}").seal({"secret_key": "sk_x"}),
            filters={"objects": ["customers"]},
        )
        create_integration(session, spec, now=datetime.now(UTC))


# -- queues and bindings ------------------------------------------------------------------------


def test_list_bindings_shows_each_queue_on_its_own_exchange_and_key(
    environ: dict[str, str], empty_dir: Path
) -> None:
    done = run(["list", "bindings"], environ, empty_dir)

    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:] if line.strip()]
    assert sorted(rows) == sorted([queue, queue, queue] for queue in QUEUES)


def test_a_message_sent_by_exchange_and_routing_key_reaches_exactly_one_queue(
    environ: dict[str, str], redis_db: Redis
) -> None:
    # given the app's queues declared on the broker, as a worker or beat declares them
    app = create_app(Settings.from_env(environ))
    with Connection(redis_url()) as connection:
        for queue in app.conf.task_queues:
            queue(connection.default_channel).declare()

        # when one message goes to each queue's exchange with its routing key
        producer = Producer(connection.default_channel)
        for queue in QUEUES:
            producer.publish({"to": queue}, exchange=Exchange(queue), routing_key=queue)

    # then each queue holds exactly its own message
    assert {queue: redis_db.llen(queue) for queue in QUEUES} == dict.fromkeys(QUEUES, 1)


def test_a_worker_removes_the_bindings_older_versions_left_in_redis(
    environ: dict[str, str], empty_dir: Path, redis_db: Redis
) -> None:
    # given Redis as an older version left it: every queue bound to the control exchange
    sep = "\x06\x16"
    stale = {f"{CONTROL_QUEUE}{sep}{sep}{queue}" for queue in QUEUES}
    redis_db.sadd(f"_kombu.binding.{CONTROL_QUEUE}", *stale)
    redis_db.sadd(f"_kombu.binding_permanent.{CONTROL_QUEUE}", *stale)

    # when a worker starts
    with process(["worker", "-P", "threads", "-c", "2"], environ, empty_dir) as (_, log):
        wait_for(
            lambda: "worker.ready" in [line.get("event") for line in json_lines(log)],
            what="the worker to be ready",
        )

        # then the control exchange routes to the control queue only
        members = {m.decode() for m in redis_db.smembers(f"_kombu.binding.{CONTROL_QUEUE}")}
        assert members == {f"{CONTROL_QUEUE}{sep}{sep}{CONTROL_QUEUE}"}
    [pruned] = [line for line in json_lines(log) if line.get("event") == "broker.bindings_pruned"]
    assert pruned["removed"] == len(QUEUES) - 1


# -- beat ---------------------------------------------------------------------------------------


def test_a_beat_started_in_an_empty_folder_runs_its_first_tick_at_once(
    environ: dict[str, str], empty_dir: Path, redis_db: Redis
) -> None:
    # when the Procfile's beat starts on a fresh host: no data folder, nothing but URLs
    with process(["beat", "--loglevel", "INFO"], environ, empty_dir) as (beat, log):
        # then every provider's dispatch tick is queued straight away
        def ticks() -> set[str]:
            sent = messages(redis_db, CONTROL_QUEUE)
            return {m["headers"]["argsrepr"] for m in sent if m["headers"]["task"] == DISPATCH_TASK}

        wait_for(lambda: len(ticks()) == len(QUEUES) - 1, what="a tick per provider")
        assert beat.poll() is None, log.read_text()

    # and it wrote nothing where it ran
    assert list(empty_dir.iterdir()) == []
    assert "Traceback" not in log.read_text()


# -- start-up checks ----------------------------------------------------------------------------


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused worker printed; asserts it printed nothing else of ours."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "worker.ready" not in done.stdout + done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("syncworker:")]
    return line


def test_a_worker_whose_keys_open_no_stored_credential_refuses_to_start(
    environ: dict[str, str], empty_dir: Path, key: str, pg_engine: Engine
) -> None:
    # given a stored credential sealed with another key than the worker's
    seal_a_credential(pg_engine, key)
    environ["SYNCWORKER_CREDENTIAL_KEYS"] = f"k2:{Keyring.generate_key()}"

    done = run(["worker", "-P", "threads"], environ, empty_dir)

    line = refused(done)
    assert line.startswith("syncworker: worker not started: 1 of 1 sampled credential")
    assert "SYNCWORKER_CREDENTIAL_KEYS" in line


def test_a_worker_on_an_unmigrated_database_refuses_to_start(
    environ: dict[str, str], empty_dir: Path
) -> None:
    missing = empty_dir.parent / "nowhere" / "sync.db"
    environ["SYNCWORKER_DATABASE_URL"] = f"sqlite:///{missing}"

    line = refused(run(["worker", "-P", "threads"], environ, empty_dir))

    assert line == (
        f"syncworker: worker not started: there is no database at sqlite:///{missing} yet: "
        "run `syncworker db upgrade`"
    )
    assert not missing.parent.exists()


def test_a_worker_whose_database_or_redis_is_down_refuses_to_start_naming_it(
    environ: dict[str, str], empty_dir: Path
) -> None:
    down = {**environ, "SYNCWORKER_DATABASE_URL": "postgresql://sync:hunter2@127.0.0.1:1/sync"}
    line = refused(run(["worker", "-P", "threads"], down, empty_dir))
    assert "the database at postgresql://sync:***@127.0.0.1:1/sync failed:" in line
    assert "hunter2" not in line

    down = {**environ, "SYNCWORKER_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    line = refused(run(["worker", "-P", "threads"], down, empty_dir))
    assert "Redis at redis://:**@127.0.0.1:1/0 failed:" in line
    assert "hunter2" not in line


# -- concurrency and logs -----------------------------------------------------------------------


def banner_concurrency(log: Path) -> str:
    def found() -> str:
        for line in log.read_text(errors="replace").splitlines():
            if "concurrency:" in line:
                return line.split("concurrency:", 1)[1].strip()
        return ""

    return wait_for(found, what="the worker's banner")


def test_a_threads_worker_defaults_to_64_threads_and_a_prefork_one_to_the_cpu_count(
    environ: dict[str, str], empty_dir: Path
) -> None:
    with process(["worker", "-P", "threads"], environ, empty_dir) as (_, log):
        assert banner_concurrency(log) == "64 (thread)"
    with process(["worker"], environ, empty_dir) as (_, log):
        assert banner_concurrency(log) == f"{billiard.cpu_count()} (prefork)"
    environ["SYNCWORKER_CONCURRENCY"] = "3"
    with process(["worker"], environ, empty_dir) as (_, log):
        assert banner_concurrency(log) == "3 (prefork)"


def test_every_worker_line_is_structured_and_celerys_task_lines_carry_the_task_id(
    environ: dict[str, str], empty_dir: Path
) -> None:
    args = ["worker", "-P", "threads", "-c", "2", "--loglevel", "INFO", "-Q", CONTROL_QUEUE]
    with process(args, environ, empty_dir) as (_, log):
        wait_for(
            lambda: "worker.ready" in [line.get("event") for line in json_lines(log)],
            what="the worker to be ready",
        )
        app = create_app(Settings.from_env(environ))
        task_id = app.send_task(DISPATCH_TASK, args=("stripe",), queue=CONTROL_QUEUE).id
        app.close()

        def received() -> list[dict[str, Any]]:
            return [
                line
                for line in json_lines(log)
                if line.get("logger") == "celery.worker.strategy" and task_id in line["event"]
            ]

        [line] = wait_for(received, what="the received line")

    assert (line["task_id"], line["task"]) == (task_id, DISPATCH_TASK)
    # and the start-up lines are JSON too, not the console format of unconfigured logging
    for raw in log.read_text(errors="replace").splitlines():
        if "worker.ready" in raw or "received" in raw:
            assert raw.startswith("{"), raw
