"""One sync of one integration, from lease to lifecycle, without Celery.

The task hands over an id; this module takes the lease, opens the run, decrypts
the credentials, runs the connector with a sink that commits page by page,
and applies the outcome in one transaction. Each database step is its own short
transaction, so no row lock is held while the provider answers.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from models.changes import Change
from models.clock import Clock
from models.credentials import Credentials, Keyring
from models.db import is_disconnect
from models.errors import CredentialsError
from models.records import store_page
from models.status import Provider, SyncOutcome
from models.sync_runs import RunStart, Skipped, SyncResult, close_for_retry, finish_run, start_run
from scheduler.providers import ProviderPolicy
from worker.budget import Budget
from worker.connectors.base import Connector, Page, SyncContext, run_sync
from worker.connectors.errors import TransientError
from worker.connectors.http import Pacer, paced
from worker.connectors.limits import SyncLimits
from worker.lease import Leases

log = structlog.get_logger(__name__)

# The error of an attempt whose database connection the server dropped.
LOST_DATABASE = "database connection lost"


@dataclass(frozen=True)
class SyncServices:
    """The collaborators a sync needs, built once per process."""

    sessions: sessionmaker[Session]
    keyring: Keyring
    clock: Clock
    leases: Leases
    connector_for: Callable[[Provider], Connector]
    # The cluster-wide request budget per customer key; None leaves requests unpaced.
    budget: Budget | None = None
    policies: Mapping[Provider, ProviderPolicy] = field(default_factory=dict)
    limits: SyncLimits = field(default_factory=SyncLimits)  # each sync's deadline, page budget
    # The hard limit (SYNCWORKER_TASK_TIME_LIMIT), on `limits.monotonic`: a sync still running
    # then is closed failed by the lease renewer (the threads pool enforces no time limit).
    time_limit: timedelta | None = None


@dataclass(frozen=True)
class Finished:
    """The sync ran and its outcome was recorded (and applied, unless it arrived late)."""

    run_id: uuid.UUID
    result: SyncResult
    change: Change | None


class PageStore:
    """The sink connectors write to: every page and its cursor in one transaction.

    The newest page is held back and stored by the transaction that finishes the run (most
    syncs are one page: one transaction less each). An earlier page is stored as soon as
    the next one arrives, and a held page is stored before a retry or an error leaves the
    sync. Only a killed process loses the held page, together with its cursor: the next
    sync fetches it again, so nothing is lost or stored twice.
    """

    def __init__(self, services: SyncServices, start: RunStart) -> None:
        self._services = services
        self._start = start
        self._held: Page | None = None
        # What storing the pages found to clean or skip (models.records), for the result.
        self.warnings: list[str] = []

    def store(self, page: Page) -> None:
        if self._held is not None:
            self._write(self._held)
        self._held = page

    def take(self) -> Page | None:
        """The held page, for the transaction that finishes the run to store."""
        page, self._held = self._held, None
        return page

    def flush(self) -> None:
        """Store the held page now, in its own transaction."""
        page = self.take()
        if page is not None:
            self._write(page)

    def _write(self, page: Page) -> None:
        with self._services.sessions() as session, session.begin():
            store_page(
                session,
                integration_id=self._start.integration_id,
                run_id=self._start.run_id,
                stream=page.stream,
                records=page.records,
                cursor=page.cursor,
                now=self._services.clock.now(),
                warn=self.warnings.append,
            )


def sync_integration(
    services: SyncServices,
    integration_id: str,
    *,
    task_id: str | None,
    attempt: int = 0,
    final_attempt: bool = True,
) -> Skipped | Finished:
    """Sync one integration once.

    Raises TransientError (with the provider's `retry_after`, if it named one) for a
    transient failure before the final attempt, and RedisError when the lease store
    cannot be reached: the task retries both later.
    """
    limit = services.time_limit
    deadline = services.limits.monotonic() + limit.total_seconds() if limit else None
    token = services.leases.acquire(integration_id, task_id=task_id, attempt=attempt)
    if token is None:
        return Skipped("lease held by another sync")
    try:
        with services.sessions() as session, session.begin():
            started = start_run(
                session,
                integration_id,
                task_id=task_id,
                attempt=attempt,
                now=services.clock.now(),
                lease=services.leases.app_ttl,
            )
        if isinstance(started, Skipped):
            return started
        services.leases.attach_run(integration_id, started.run_id, deadline=deadline)
        return _run(services, started, final_attempt=final_attempt)
    finally:
        services.leases.release(integration_id, token)


def _run(services: SyncServices, start: RunStart, *, final_attempt: bool) -> Finished:
    structlog.contextvars.bind_contextvars(
        integration_id=str(start.integration_id), provider=start.provider
    )
    log.debug("sync.started", run_id=str(start.run_id), first_sync=start.first_sync)
    pages = PageStore(services, start)
    try:
        result = _fetch(services, start, pages)
    except TransientError as exc:
        pages.flush()
        if not final_attempt:
            _close_for_retry(services, start, f"transient: {exc}")
            raise
        result = SyncResult(SyncOutcome.FAILED, error=f"gave up after retries: {exc}")
    # Anything else raised inside a sync is a bug or a value nobody foresaw (a RecursionError,
    # a UnicodeEncodeError, a value the database refuses). It must never leave the run open
    # until the reaper calls it abandoned: the run ends failed, naming the error's kind.
    except Exception as exc:
        _keep_held_page(pages)
        if not is_disconnect(exc):
            result = _crashed(start, exc)
        elif final_attempt:
            result = SyncResult(SyncOutcome.FAILED, error=f"gave up after retries: {LOST_DATABASE}")
        else:
            # The database went away, not the sync: the task retries on a fresh pool.
            _close_for_retry(services, start, f"transient: {LOST_DATABASE}")
            raise
    except BaseException:  # the process is going down: the reaper closes the run
        _keep_held_page(pages)
        raise
    result, change = _finish(services, start, result.with_warnings(pages.warnings), pages)
    log.info(
        "sync.finished",
        run_id=str(start.run_id),
        outcome=result.outcome.value,
        records=result.records,
        warnings=len(result.warnings),
        first_sync=start.first_sync,
        status=change.to_status.value if change else None,
        **({"error": result.error} if result.error else {}),
    )
    return Finished(start.run_id, result, change)


def _finish(
    services: SyncServices, start: RunStart, result: SyncResult, pages: PageStore
) -> tuple[SyncResult, Change | None]:
    """Close the run with `result` and the held page; the result as recorded, and its change.

    Should the database refuse that transaction (for any reason but a lost connection, which
    the task's retry handles), the run is closed failed without the page, naming the error.
    """
    noted: list[str] = []
    try:
        change = _close(services, start, result, pages.take(), noted.append)
    except Exception as exc:
        if is_disconnect(exc):
            raise
        result = _crashed(start, exc)
        change = _close(services, start, result, None, noted.append)
    return result.with_warnings(noted), change


def _close(
    services: SyncServices,
    start: RunStart,
    result: SyncResult,
    last_page: Page | None,
    warn: Callable[[str], None],
) -> Change | None:
    with services.sessions() as session, session.begin():
        return finish_run(
            session, start.run_id, result, now=services.clock.now(), last_page=last_page, warn=warn
        )


def _close_for_retry(services: SyncServices, start: RunStart, error: str) -> None:
    """End the attempt without an outcome, if the database lets us; the retry takes over."""
    try:
        with services.sessions() as session, session.begin():
            close_for_retry(session, start.run_id, error, now=services.clock.now())
    except DBAPIError as exc:  # the retry finds the run still open and takes it over
        log.warning("sync.close_for_retry_failed", error=type(exc).__name__)


def time_limit_error(limit: timedelta | None) -> str:
    """The error of a run still open at its hard time limit, naming it and its setting."""
    seconds = limit.total_seconds() if limit else 0
    return (
        f"time limit: the sync was still running at its hard limit of {seconds:g} s "
        "(SYNCWORKER_TASK_TIME_LIMIT); closed by the lease renewer"
    )


def end_overdue_run(services: SyncServices, run_id: uuid.UUID) -> Change | None:
    """Close a run still open at its hard time limit as failed, naming it, and apply it.

    The lease renewer calls this for a sync stuck where it cannot notice its deadline
    (SYNCWORKER_SYNC_DEADLINE is enforced by the connectors' HTTP layer, so only a sync
    stuck outside a request gets here; the threads pool enforces no time limit); if
    the sync gets unstuck later, its own finish_run finds the run closed and changes nothing.
    """
    result = SyncResult(SyncOutcome.FAILED, error=time_limit_error(services.time_limit))
    with services.sessions() as session, session.begin():
        change = finish_run(session, run_id, result, now=services.clock.now())
    log.error("sync.time_limit", run_id=str(run_id), status=change.to_status if change else None)
    return change


def _keep_held_page(pages: PageStore) -> None:
    """On the way out with an error: store the page already fetched, if the database lets us."""
    try:
        pages.flush()
    except Exception as exc:  # noqa: BLE001 - the original error is the one to handle
        log.warning("sync.held_page_lost", error=error_kind(exc))


def _crashed(start: RunStart, exc: Exception) -> SyncResult:
    """A failed result for an unexpected error: its kind and where, never its value."""
    reason = f"unexpected {error_kind(exc)} in {_where(exc)}"
    log.error("sync.crashed", run_id=str(start.run_id), error=reason)
    return SyncResult(SyncOutcome.FAILED, error=reason)


def error_kind(exc: BaseException) -> str:
    """The error's class, and the driver's for a database error; a message may hold values."""
    kind = type(exc).__name__
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        kind = f"{kind} ({type(exc.orig).__name__})"
    return kind


def _where(exc: BaseException) -> str:
    """The function the error was raised in, as `module.function`."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "the sync"
    frame = frames[-1]
    module = frame.filename.rsplit("/", 1)[-1].removesuffix(".py")
    return f"{module}.{frame.name}"


def _fetch(services: SyncServices, start: RunStart, pages: PageStore) -> SyncResult:
    credentials = _credentials(services.keyring, start)
    if isinstance(credentials, SyncResult):
        return credentials
    context = SyncContext(
        integration_id=str(start.integration_id),
        credentials=credentials,
        filters=start.filters,
        configurations=start.configurations,
        cursors=start.cursors,
        now=services.clock.now(),
        data_last_received_at=start.data_last_received_at,
        limits=services.limits,
    )
    provider = Provider(start.provider)
    connector = services.connector_for(provider)
    with paced(_pacer(services, provider, start.integration_id)):
        return run_sync(connector, context, pages)


def _pacer(services: SyncServices, provider: Provider, integration_id: uuid.UUID) -> Pacer:
    """Reserve from this integration's bucket (one customer key) at its provider's rate."""
    budget, policy = services.budget, services.policies.get(provider)
    if budget is None or policy is None:
        return lambda: 0.0
    key = f"{provider.value}:{integration_id}"

    def reserve() -> float:
        try:
            return budget.reserve(key, policy.rate_per_s, policy.burst)
        except RedisError as exc:
            # Without the shared budget we cannot promise the provider's limit: retry later.
            raise TransientError(f"request budget unavailable: {exc}") from exc

    return reserve


def _credentials(keyring: Keyring, start: RunStart) -> Credentials | SyncResult:
    if start.credentials_sealed is None:
        return SyncResult(SyncOutcome.AUTH_FAILED, error="no credentials are configured")
    try:
        return keyring.open(start.credentials_sealed)
    except CredentialsError as exc:
        # A key problem is ours, not the customer's: fail loudly, never blame their key.
        return SyncResult(SyncOutcome.FAILED, error=f"credentials unusable: {exc}")
