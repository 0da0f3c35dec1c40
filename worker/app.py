"""The Celery app factory: an app for given settings, with its tasks, queues and signals.

`create_app(settings)` builds an app with every task, queue and signal handler;
importing this module builds nothing. `worker.celery` holds the one app that
`celery -A worker` finds, built from the environment.

Delivery is at-least-once: acks are late, a task whose worker dies is re-queued,
and the sync task is idempotent on redelivery.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from scheduler.beat import CONTROL_QUEUE, Cadence, build_schedule
from worker import health, queues, signals, tasks
from worker.beat import SCHEDULER
from worker.runtime import Runtime, attach
from worker.settings import Settings


def create_app(
    settings: Settings, *, cadence: Cadence | None = None, runtime: Runtime | None = None
) -> Celery:
    """A Celery app for these settings, with every task registered.

    `runtime` injects a prepared runtime (a test's clock, the demo's); by default each
    process builds its own on first use.
    """
    app = Celery("syncworker", broker=settings.broker_url, set_as_current=False)
    declared = queues.declare([CONTROL_QUEUE, *(p.queue for p in settings.providers.values())])
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith(("redis://", "rediss://")):
        transport_options["visibility_timeout"] = settings.visibility_timeout_s
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        # A task whose worker process died is re-queued; the sync task skips a delivery
        # that already ran, so the redelivery is harmless.
        task_reject_on_worker_lost=True,
        # One message in hand per pool slot: a long sync never sits on others' messages.
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_time_limit_s * 0.9,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_queues=declared,
        task_default_queue=CONTROL_QUEUE,
        task_default_exchange=CONTROL_QUEUE,
        task_default_routing_key=CONTROL_QUEUE,
        beat_schedule=build_schedule(settings.providers, cadence),
        # In memory, every job due at start: no schedule file, so no data folder (worker.beat).
        beat_scheduler=SCHEDULER,
        # Results are never stored, so there is nothing for a daily cleanup job to expire.
        result_expires=None,
        worker_hijack_root_logger=False,
        # Flower's feed, off unless SYNCWORKER_TASK_EVENTS=true, `-E` or Flower turns it on.
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        worker_concurrency=settings.worker_concurrency,
    )
    attach(app, settings, runtime)
    tasks.register(app)
    health.register(app)
    signals.connect(app)
    return app
