"""The Celery tasks: thin wrappers that take ids, open one unit of work and hand over.

Every rule lives below (`worker.sync`, `scheduler.dispatch`, `models.*`); a task
only reads the runtime, calls one function, and turns a transient failure into
a retry with backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Final

import structlog
from celery import Celery, Task
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from models.db import is_disconnect
from models.status import Provider, parse_enum
from models.sync_runs import reap_abandoned
from models.time_rules import deactivate_idle_development, escalate_auth_failures
from scheduler.beat import (
    DELIVER_EVENTS_TASK,
    DEV_INACTIVITY_TASK,
    DISPATCH_TASK,
    ESCALATE_TASK,
    REAP_TASK,
    SYNC_TASK,
)
from scheduler.dispatch import dispatch_tick
from scheduler.marks import mark
from worker import redis_keys
from worker.backoff import Backoff
from worker.connectors.errors import TransientError
from worker.events import deliver_due
from worker.liveness import expected_every
from worker.metrics import RETRIED, provider_of_queue, record_dispatch, record_sync
from worker.runtime import publisher_of, runtime_of, settings_of
from worker.settings import Settings
from worker.sync import Finished, sync_integration
from worker.webhooks import make_client, webhook_sinks

log = structlog.get_logger(__name__)

# Rows one sweep transaction changes; sweeps loop until a batch comes back short.
SWEEP_BATCH: Final = 500
# A message that killed its worker this many times is dropped, not redelivered forever.
MAX_DELIVERIES: Final = 3


def retry_backoff(settings: Settings) -> Backoff:
    """A sync task's retries: up to 15 s first, doubling (full jitter) to MAX_RETRY_DELAY."""
    return Backoff(base=15.0, cap=settings.max_retry_delay_s)


def register(app: Celery) -> None:
    """Define the tasks on `app` under the names the beat schedule uses."""
    settings = settings_of(app)

    @app.task(name=SYNC_TASK, bind=True, max_retries=settings.max_retries, shared=False)
    def sync(self: Task, integration_id: str) -> dict[str, Any]:
        runtime = runtime_of(app)
        if _too_many_deliveries(runtime.redis, self.request):
            log.error("sync.dropped", reason="redelivered too often", task_id=self.request.id)
            return {"skipped": "redelivered too often"}
        retries = self.request.retries
        provider = provider_of_queue(settings.providers, self.request.delivery_info)
        started = time.monotonic()
        final = retries >= settings.max_retries
        try:
            done = sync_integration(
                runtime.sync_services,
                integration_id,
                task_id=self.request.id,
                attempt=retries,
                final_attempt=final,
            )
        except (TransientError, DBAPIError, RedisError) as exc:
            if not _retryable(exc, final=final):
                raise
            record_sync(provider, RETRIED, time.monotonic() - started)
            raise _retry(self, exc, retry_backoff(settings)) from exc
        if isinstance(done, Finished):
            record_sync(provider, done.result.outcome.value, time.monotonic() - started)
            return {"run_id": str(done.run_id), "outcome": done.result.outcome.value}
        log.info("sync.skipped", reason=done.reason)
        return {"skipped": done.reason}

    _register_ticks(app)
    _register_delivery(app)


def _register_ticks(app: Celery) -> None:
    """The beat's tasks: each provider's dispatch tick and the periodic sweeps."""
    settings = settings_of(app)

    @app.task(name=DISPATCH_TASK, shared=False)
    def dispatch(provider: str) -> dict[str, Any]:
        runtime = runtime_of(app)
        policy = settings.providers[parse_enum(Provider, provider, what="provider")]
        report = dispatch_tick(runtime.sessions, publisher_of(app), policy, now=runtime.clock.now)
        record_dispatch(report)
        figures = {"dispatched": report.dispatched, "max_lag_s": round(report.max_lag_s, 3)}
        with runtime.sessions() as session, session.begin():
            name = f"tick:{provider}"
            mark(session, name, now=runtime.clock.now(), every=expected_every(app, name), **figures)
        if report.dispatched:
            log.info("dispatch.tick", provider=provider, **figures)
        return figures

    @app.task(name=ESCALATE_TASK, shared=False)
    def sweep_auth_escalation() -> int:
        return _sweep(app, "sweep:auth_escalation", escalate_auth_failures)

    @app.task(name=DEV_INACTIVITY_TASK, shared=False)
    def sweep_dev_inactivity() -> int:
        return _sweep(app, "sweep:dev_inactivity", deactivate_idle_development)

    @app.task(name=REAP_TASK, shared=False)
    def sweep_reap_abandoned() -> int:
        return _sweep(app, "sweep:reap_abandoned", reap_abandoned)


def _register_delivery(app: Celery) -> None:
    """The outbox's delivery task: every due status-change event to the log and webhooks."""
    settings = settings_of(app)

    @app.task(name=DELIVER_EVENTS_TASK, shared=False)
    def deliver_events() -> dict[str, int]:
        runtime = runtime_of(app)
        with make_client(settings.webhook_timeout_s) as client:
            sinks = webhook_sinks(settings, client)
            report = deliver_due(runtime.sessions, sinks, now=runtime.clock.now)
        if report.claimed:
            log.info("events.delivered", **asdict(report))
        return asdict(report)


def _sweep(app: Celery, name: str, rule: Callable[..., list[Any]]) -> int:
    """Run one sweep rule in batches until it finds nothing more, then mark it done."""
    runtime = runtime_of(app)
    total = 0
    while True:
        with runtime.sessions() as session, session.begin():
            done = rule(session, now=runtime.clock.now(), limit=SWEEP_BATCH)
        total += len(done)
        if len(done) < SWEEP_BATCH:
            break
    with runtime.sessions() as session, session.begin():
        mark(session, name, now=runtime.clock.now(), every=expected_every(app, name), changed=total)
    if total:
        log.info("sweep.done", sweep=name, changed=total)
    return total


def _retryable(exc: Exception, *, final: bool) -> bool:
    """A transient provider failure (sync_integration judged it), or before the last attempt,
    a database connection the server dropped or a Redis (the lease store) that failed.

    After a dropped connection SQLAlchemy has discarded the pool, so the retry gets a new one.
    """
    if isinstance(exc, TransientError):
        return True
    return (is_disconnect(exc) or isinstance(exc, RedisError)) and not final


def _retry(
    task: Task, exc: TransientError | DBAPIError | RedisError, backoff: Backoff
) -> Exception:
    """Schedule the task's next attempt after a jittered backoff (Celery raises `Retry`)."""
    retries = task.request.retries
    at_least = exc.retry_after if isinstance(exc, TransientError) else None
    countdown = backoff.delay(retries, at_least=at_least)
    log.info("sync.retrying", retries=retries, countdown_s=round(countdown, 1), error=_brief(exc))
    retry: Exception = task.retry(countdown=countdown, exc=exc)
    return retry


def _brief(exc: Exception) -> str:
    """The error for the log: a database error's own message, never its SQL or parameters."""
    return str(exc.orig if isinstance(exc, DBAPIError) else exc)


def _too_many_deliveries(redis: Any, request: Any) -> bool:
    """Count deliveries of this message; True once it came back more than MAX_DELIVERIES."""
    if redis is None or not (request.delivery_info or {}).get("redelivered"):
        return False
    key = redis_keys.deliveries(request.id, request.retries)
    try:
        count = int(redis.incr(key))
        redis.expire(key, 86_400)
    except RedisError as exc:  # a safety net: without the count, the sync's lease decides
        log.warning("sync.delivery_count_failed", task_id=request.id, error=type(exc).__name__)
        return False
    return count > MAX_DELIVERIES
