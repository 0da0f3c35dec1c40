"""A worker's start: concurrency chosen by pool, checks that refuse with one line, fork safety.

The handlers are driven through Celery's own signals, as `celery worker` sends them;
`tests/worker/test_processes_e2e.py` runs the real processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.concurrency.thread import TaskPool as ThreadPool
from celery.signals import celeryd_init, worker_init, worker_process_init

from models import migrate
from models.credentials import Keyring
from models.db import make_engine, make_sessionmaker
from models.errors import DecryptionFailed, SchemaOutdated
from models.integrations import NewIntegration, create_integration, ensure_environment
from tests.conftest import START
from worker import startup
from worker.app import create_app
from worker.errors import ServiceUnavailable
from worker.runtime import Runtime, prepared_runtime, runtime_of, settings_of
from worker.settings import THREADS_CONCURRENCY, Settings

KEY = Keyring.generate_key()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Celery]]:
    """An app on a migrated SQLite database and a Redis broker URL (never connected here)."""
    database = tmp_path / "sync.db"
    migrate.upgrade(make_engine(f"sqlite:///{database}"))
    apps: list[Celery] = []

    def create(**overrides: str) -> Celery:
        environ = {
            "SYNCWORKER_DATA_DIR": str(tmp_path / "data"),
            "SYNCWORKER_DATABASE_URL": f"sqlite:///{database}",
            "SYNCWORKER_BROKER_URL": "redis://127.0.0.1:1/0",
            "SYNCWORKER_CREDENTIAL_KEYS": f"k1:{KEY}",
            **{f"SYNCWORKER_{name}": value for name, value in overrides.items()},
        }
        apps.append(create_app(Settings.from_env(environ)))
        return apps[-1]

    yield create
    for app in apps:
        runtime = prepared_runtime(app)
        if runtime is not None:
            runtime.close()


def seal_one(app: Celery, key: str) -> None:
    """Store an integration whose credentials only `key` opens."""
    engine = make_engine(settings_of(app).database_url)
    with make_sessionmaker(engine)() as session, session.begin():
        ensure_environment(session, "env-1", organization_id="org", name="e", kind="production")
        spec = NewIntegration(
            environment_id="env-1",
            name="Acme",
            identifier="acme",
            provider="stripe",
            credentials_sealed=Keyring.from_config(f"old:{key}").seal({"secret_key": "sk_1"}),
        )
        create_integration(session, spec, now=START)
    engine.dispose()


def started(app: Celery, options: dict[str, Any]) -> None:
    """Send `celeryd_init` as `celery worker` does, with its command-line options."""
    celeryd_init.send(
        sender="w@host", instance=SimpleNamespace(app=app), conf=app.conf, options=options
    )


@dataclass(eq=False)  # hashable by identity, as Celery's signal cache needs its senders
class Worker:
    """What `worker_init` is sent with: the WorkController, its pool and concurrency resolved."""

    app: Celery
    pool_cls: type
    concurrency: Any


def worker(app: Celery, pool: type, concurrency: Any) -> Worker:
    return Worker(app, pool, concurrency)


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"pool_cls": ThreadPool}, THREADS_CONCURRENCY),
        ({"pool": "threads"}, THREADS_CONCURRENCY),
        ({"pool_cls": PreforkPool}, None),  # Celery's default: the CPU count
        ({}, None),  # no -P: prefork
        ({"pool_cls": ThreadPool, "concurrency": 8}, None),  # -c wins, as given
    ],
)
def test_concurrency_defaults_by_pool_unless_given(
    make_app: Callable[..., Celery], options: dict[str, Any], expected: int | None
) -> None:
    app = make_app()

    started(app, options)

    assert app.conf.worker_concurrency == expected


def test_a_configured_concurrency_holds_for_every_pool(make_app: Callable[..., Celery]) -> None:
    app = make_app(CONCURRENCY="5")
    options = {"pool_cls": ThreadPool}

    started(app, options)

    assert app.conf.worker_concurrency == 5


@pytest.mark.parametrize(
    ("pool", "concurrency", "slots"), [(ThreadPool, 16, 16), (PreforkPool, 4, 1)]
)
def test_the_runtime_holds_a_connection_per_task_the_process_runs_at_once(
    make_app: Callable[..., Celery], pool: type, concurrency: int, slots: int
) -> None:
    app = make_app()

    worker_init.send(sender=worker(app, pool, concurrency))

    assert runtime_of(app).slots == slots


def test_a_runtimes_database_pool_holds_a_connection_per_slot() -> None:
    settings = Settings.from_env({"SYNCWORKER_DATABASE_URL": "postgresql://sync@127.0.0.1:1/s"})
    runtime = Runtime.from_settings(settings, slots=3)  # the pool connects on first use only

    assert runtime.engine.pool.size() == 3  # type: ignore[attr-defined]
    runtime.close()


def test_a_prefork_child_builds_a_runtime_of_its_own(make_app: Callable[..., Celery]) -> None:
    app = make_app()
    inherited = runtime_of(app)
    with inherited.sessions() as session:
        session.connection()  # the parent holds a pooled connection

    worker_process_init.send(sender=None)

    assert runtime_of(app) is not inherited


# -- start-up checks --------------------------------------------------------------------------


def test_the_check_passes_a_ready_database_without_redis(make_app: Callable[..., Celery]) -> None:
    startup.check(make_app())


def test_keys_that_open_no_stored_credential_fail_the_check(
    make_app: Callable[..., Celery],
) -> None:
    app = make_app()
    seal_one(app, Keyring.generate_key())

    with pytest.raises(DecryptionFailed, match="check SYNCWORKER_CREDENTIAL_KEYS"):
        startup.check(app)


def test_a_database_without_the_codes_schema_fails_the_check(
    make_app: Callable[..., Celery], tmp_path: Path
) -> None:
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'other' / 'new.db'}")

    with pytest.raises(SchemaOutdated, match="run `syncworker db upgrade`"):
        startup.check(app)
    assert not (tmp_path / "other").exists()


def test_an_unreachable_redis_fails_the_check_naming_it_without_its_password(
    make_app: Callable[..., Celery],
) -> None:
    app = make_app(REDIS_URL="redis://:hunter2@127.0.0.1:1/3")

    with pytest.raises(ServiceUnavailable) as raised:
        startup.check(app)

    assert str(raised.value).startswith("Redis at redis://:**@127.0.0.1:1/3 failed: ")
    assert "hunter2" not in str(raised.value)


def test_a_failed_check_ends_the_worker_through_celerys_signal_with_one_line(
    make_app: Callable[..., Celery],
) -> None:
    # Celery logs and swallows an Exception a worker_init handler raises; SystemExit it lets
    # through, so `celery worker` ends before its pool starts.
    app = make_app()
    seal_one(app, Keyring.generate_key())

    with pytest.raises(SystemExit) as ended:
        worker_init.send(sender=worker(app, ThreadPool, 4))

    message = str(ended.value.code)
    assert message.startswith("syncworker: worker not started: 1 of 1 sampled credential")
    assert "\n" not in message
