"""Celery signal handlers: start-up checks, per-task log context, the metrics endpoint."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from models.credentials import verify_keyring
from scheduler.beat import SYNC_TASK
from worker import metrics
from worker.logs import configure_logging
from worker.queues import queue_depths
from worker.runtime import runtime_of, settings_of

log = structlog.get_logger(__name__)


def connect(app: Celery) -> None:
    """Connect this app's handlers (idempotent per app)."""

    def check_start(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        runtime = runtime_of(app)
        keyring = runtime.keyring  # a missing or malformed key fails here, at start
        with runtime.sessions() as session:
            verify_keyring(session, keyring)
        log.info("worker.ready", database=runtime.engine.url.render_as_string(hide_password=True))

    def bind_task(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
        structlog.contextvars.clear_contextvars()
        context: dict[str, Any] = {"task_id": task_id, "task": getattr(task, "name", None)}
        if args and getattr(task, "name", "") == SYNC_TASK:
            context["integration_id"] = args[0]
        structlog.contextvars.bind_contextvars(**context)

    def unbind_task(**_: Any) -> None:
        structlog.contextvars.clear_contextvars()

    def setup(**_: Any) -> None:
        # Connecting this signal stops Celery from configuring logging its own way.
        settings = settings_of(app)
        configure_logging(settings.log_format, settings.log_level)

    setup_logging.connect(setup, weak=False)
    worker_init.connect(check_start, weak=False)
    task_prerun.connect(bind_task, weak=False)
    task_postrun.connect(unbind_task, weak=False)
    _connect_metrics(app)


def _connect_metrics(app: Celery) -> None:
    """Serve the metrics endpoint while a worker runs, when a metrics port is configured."""
    served: list[metrics.MetricsServer] = []

    def serve_metrics(sender: Any = None, **_: Any) -> None:
        port = settings_of(app).metrics_port
        if port is None or getattr(sender, "app", None) is not app or served:
            return
        collectors = [
            metrics.IntegrationsCollector(runtime_of(app).sessions),
            metrics.QueueDepthCollector(lambda: queue_depths(app)),
        ]
        served.append(metrics.serve(port, collectors))

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
