"""A process's collaborators, built once from the settings: engine, keyring, clock, leases.

Nothing here runs at import. The Celery app builds its runtime lazily, in the
process that uses it (after a prefork fork, never before), and the CLI builds
one per command.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Final, cast

from celery import Celery
from redis import Redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.clock import AcceleratedClock, Clock, SystemClock
from models.credentials import Keyring
from models.db import make_engine, make_sessionmaker
from models.status import Provider
from worker.budget import Budget, LocalBudget, RedisBudget
from worker.connectors.base import Connector
from worker.connectors.registry import connector_for
from worker.lease import Leases, LeaseStore, LocalLeaseStore, RedisLeaseStore
from worker.publish import CeleryPublisher
from worker.settings import THREADS_CONCURRENCY, Settings
from worker.sync import SyncServices, end_overdue_run

RUNTIME_ATTRIBUTE: Final = "syncworker_runtime"
SETTINGS_ATTRIBUTE: Final = "syncworker_settings"
# How many tasks this process runs at once, set by the worker once its pool is known.
SLOTS_ATTRIBUTE: Final = "syncworker_slots"


@dataclass
class Runtime:
    """Everything a worker, beat or CLI process shares across its tasks and threads.

    `slots` is how many tasks the process runs at once (a threads worker's concurrency, 1 in
    a prefork child): the database and HTTP pools hold that many connections.
    """

    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    slots: int = THREADS_CONCURRENCY
    _connectors: dict[Provider, Connector] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings, *, slots: int | None = None) -> Runtime:
        clock: Clock = SystemClock()
        if settings.clock_speed != 1.0:
            clock = AcceleratedClock(settings.clock_speed)
        return cls(settings, clock, slots or settings.worker_concurrency or THREADS_CONCURRENCY)

    @cached_property
    def engine(self) -> Engine:
        # Each worker thread may hold a connection while a sync stores a page.
        return make_engine(
            self.settings.database_url,
            pool_size=self.slots,
            pre_ping=self.settings.db_pre_ping,
        )

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    @cached_property
    def keyring(self) -> Keyring:
        return self.settings.keyring()

    @cached_property
    def redis(self) -> Redis | None:
        url = self.settings.redis_url
        return Redis.from_url(url, health_check_interval=30) if url else None

    @cached_property
    def budget(self) -> Budget:
        return RedisBudget(self.redis) if self.redis is not None else LocalBudget()

    @cached_property
    def leases(self) -> Leases:
        store: LeaseStore = (
            RedisLeaseStore(self.redis)
            if self.redis is not None
            else LocalLeaseStore(time.monotonic)
        )
        return Leases(
            store,
            self.sessions,
            ttl=self.settings.lease_ttl_real,
            app_ttl=self.settings.lease_ttl,
            now=self.clock.now,
            on_overdue=lambda run_id: end_overdue_run(self.sync_services, run_id),
        )

    def connector(self, provider: Provider) -> Connector:
        """The process's connector for a provider: one pooled HTTP client, shared by threads."""
        with self._lock:
            connector = self._connectors.get(provider)
            if connector is None:
                policy = self.settings.providers[provider]
                # A pooled connection per sync thread: with fewer, threads queue for a
                # connection while others wait on the provider (benchmarks/throughput.py).
                http = self.settings.http_options(max_connections=self.slots)
                connector = connector_for(provider, base_url=policy.base_url, http=http)
                self._connectors[provider] = connector
            return connector

    @cached_property
    def sync_services(self) -> SyncServices:
        return SyncServices(
            sessions=self.sessions,
            keyring=self.keyring,
            clock=self.clock,
            leases=self.leases,
            connector_for=self.connector,
            budget=self.budget,
            policies=self.settings.providers,
            limits=self.settings.sync_limits,
            time_limit=timedelta(seconds=self.settings.task_time_limit_s),
        )

    def close(self) -> None:
        """Release connections and threads; the runtime is not used afterwards."""
        if "leases" in self.__dict__:
            self.leases.close()
        for connector in self._connectors.values():
            connector.close()
        if "engine" in self.__dict__:
            self.engine.dispose()
        redis: Any = self.__dict__.get("redis")
        if redis is not None:
            redis.close()

    def abandon(self) -> None:
        """Drop what a forked child inherited, leaving the parent's connections open."""
        if "engine" in self.__dict__:
            self.engine.dispose(close=False)


def attach(app: Celery, settings: Settings, runtime: Runtime | None = None) -> None:
    """Give a Celery app its settings and, optionally, a prepared runtime."""
    setattr(app, SETTINGS_ATTRIBUTE, settings)
    if runtime is not None:
        setattr(app, RUNTIME_ATTRIBUTE, runtime)


def runtime_of(app: Celery) -> Runtime:
    """The app's runtime in this process, built on first use (after any fork)."""
    runtime = prepared_runtime(app)
    if runtime is None:
        slots = getattr(app, SLOTS_ATTRIBUTE, None)
        runtime = Runtime.from_settings(settings_of(app), slots=slots)
        setattr(app, RUNTIME_ATTRIBUTE, runtime)
    return runtime


def prepared_runtime(app: Celery) -> Runtime | None:
    """The app's runtime if this process has one already (or one was injected)."""
    return cast(Runtime | None, getattr(app, RUNTIME_ATTRIBUTE, None))


def set_slots(app: Celery, slots: int) -> None:
    """Size the runtime this process builds for `slots` tasks at once."""
    setattr(app, SLOTS_ATTRIBUTE, slots)


def forget_runtime(app: Celery) -> None:
    """In a forked child: build a runtime of its own instead of using the parent's."""
    runtime = prepared_runtime(app)
    if runtime is not None:
        runtime.abandon()
        setattr(app, RUNTIME_ATTRIBUTE, None)


def settings_of(app: Celery) -> Settings:
    return cast(Settings, getattr(app, SETTINGS_ATTRIBUTE))


def publisher_of(app: Celery) -> CeleryPublisher:
    return CeleryPublisher(app, settings_of(app).providers)
