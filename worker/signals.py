"""Celery signal handlers: concurrency by pool, start-up checks, per-task log context, metrics."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from celery import Celery
from celery.concurrency import ALIASES
from celery.signals import (
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from redis.exceptions import RedisError

from models.errors import SyncWorkerError
from scheduler.beat import SYNC_TASK
from worker import metrics, startup
from worker.liveness import LivenessCollector
from worker.logs import configure_logging
from worker.outages import database_address
from worker.queues import prune_bindings, queue_depths
from worker.runtime import forget_runtime, runtime_of, set_slots, settings_of
from worker.settings import THREADED_POOLS, THREADS_CONCURRENCY

log = structlog.get_logger(__name__)


def pool_name(pool: Any) -> str:
    """A worker pool's alias ("threads", "prefork", ...), from a class or a name."""
    if isinstance(pool, type):
        pool = f"{pool.__module__}:{pool.__qualname__}"
    name = str(pool or "prefork")
    return next((alias for alias, path in ALIASES.items() if path == name), name)


def connect(app: Celery) -> None:
    """Connect this app's handlers (idempotent per app)."""
    _connect_start(app)
    _connect_logging(app)
    _connect_metrics(app)


def _connect_start(app: Celery) -> None:
    """Concurrency by pool, the start-up checks, the "ready" line, a runtime per child."""

    def choose_concurrency(
        instance: Any = None, conf: Any = None, options: Mapping[str, Any] | None = None, **_: Any
    ) -> None:
        # Before the worker reads its settings: -c, then SYNCWORKER_CONCURRENCY, then by pool.
        if getattr(instance, "app", None) is not app or conf.worker_concurrency is not None:
            return
        options = options or {}
        pool = options.get("pool_cls") or options.get("pool") or conf.worker_pool
        if options.get("concurrency") is None and pool_name(pool) in THREADED_POOLS:
            conf.worker_concurrency = THREADS_CONCURRENCY

    def check_start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        threads = sender.concurrency if isinstance(sender.concurrency, int) else None
        threaded = pool_name(sender.pool_cls) in THREADED_POOLS
        set_slots(app, (threads or THREADS_CONCURRENCY) if threaded else 1)
        try:
            startup.check(app)
        except SyncWorkerError as exc:
            startup.refuse(exc)

    def announce(sender: Any = None, **_: Any) -> None:
        # After logging is configured and the consumer is connected.
        if getattr(sender, "app", None) is not app:
            return
        _prune_bindings(app)
        log.info("worker.ready", database=database_address(settings_of(app).database_url))

    def forked(**_: Any) -> None:
        forget_runtime(app)  # a prefork child opens connections of its own

    celeryd_init.connect(choose_concurrency, weak=False)
    worker_init.connect(check_start, weak=False)
    worker_ready.connect(announce, weak=False)
    worker_process_init.connect(forked, weak=False)


def _connect_logging(app: Celery) -> None:
    """Logging configured once, the app's way; each task's lines bound to its ids."""

    def setup(**_: Any) -> None:
        # Connecting this signal stops Celery from configuring logging its own way.
        settings = settings_of(app)
        configure_logging(settings.log_format, settings.log_level)

    def bind_task(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
        structlog.contextvars.clear_contextvars()
        context: dict[str, Any] = {"task_id": task_id, "task": getattr(task, "name", None)}
        if args and getattr(task, "name", "") == SYNC_TASK:
            context["integration_id"] = args[0]
        structlog.contextvars.bind_contextvars(**context)

    def unbind_task(**_: Any) -> None:
        structlog.contextvars.clear_contextvars()

    setup_logging.connect(setup, weak=False)
    task_prerun.connect(bind_task, weak=False)
    task_postrun.connect(unbind_task, weak=False)


def _prune_bindings(app: Celery) -> None:
    """Remove bindings an older version left on the app's exchanges (worker.queues)."""
    try:
        removed = prune_bindings(app)
    except (RedisError, OSError) as exc:  # the next start tries again
        log.warning("broker.prune_failed", error=str(exc))
        return
    if removed:
        log.info("broker.bindings_pruned", removed=removed)


def _connect_metrics(app: Celery) -> None:
    """Serve the metrics endpoint while a worker runs, when a metrics port is configured."""
    served: list[metrics.MetricsServer] = []

    def serve_metrics(sender: Any = None, **_: Any) -> None:
        settings = settings_of(app)
        port = settings.metrics_port
        if port is None or getattr(sender, "app", None) is not app or served:
            return
        collectors = [
            metrics.IntegrationsCollector(runtime_of(app).sessions),
            metrics.QueueDepthCollector(lambda: queue_depths(app)),
            LivenessCollector(runtime_of(app), app),
        ]
        try:
            served.append(metrics.serve(port, collectors, addr=settings.metrics_bind_address))
        except OSError as exc:  # the port is taken: the worker still syncs, unobserved
            log.error(
                "metrics.unavailable",
                addr=settings.metrics_bind_address,
                port=port,
                error=exc.strerror or str(exc),
            )

    def stop_metrics(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            while served:
                served.pop().close()

    def forget_child(pid: int | None = None, **_: Any) -> None:
        if pid is not None:
            metrics.mark_dead(pid)

    worker_ready.connect(serve_metrics, weak=False)
    worker_shutdown.connect(stop_metrics, weak=False)
    worker_process_shutdown.connect(forget_child, weak=False)
