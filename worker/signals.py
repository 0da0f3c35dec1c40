"""Celery signal handlers: start-up checks and per-task log context."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun, worker_init

from models.credentials import verify_keyring
from worker.logs import configure_logging
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
        if args and getattr(task, "name", "") == "syncworker.sync":
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
