"""A failing database, Redis or broker, said in one line that names it and hides its password.

    with reported(settings):
        ...  # anything that talks to the database, Redis or the broker

turns SQLAlchemy's, redis-py's and kombu's errors into `ServiceUnavailable`: "the database
at postgresql://sync:***@db/sync failed: connection refused ...". The CLI and the worker's
start-up check use it, so an outage reads the same everywhere and never as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from kombu.exceptions import OperationalError as BrokerError
from kombu.utils.url import maybe_sanitize_url
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from worker.errors import ServiceUnavailable
from worker.logs import redact_value
from worker.settings import Settings

# A driver's message can run to a screen (a server's hint, a statement); the first line says it.
MAX_REASON_CHARS: Final = 300


# What a failing database (the driver's errors, wrapped by SQLAlchemy), Redis or broker raises.
OUTAGES: Final = (DBAPIError, RedisError, BrokerError)


@contextmanager
def reported(settings: Settings | None) -> Iterator[None]:
    """Raise ServiceUnavailable, naming the service and its URL, for a failure of one."""
    try:
        yield
    except OUTAGES as exc:
        raise unavailable(exc, settings) from exc


def unavailable(exc: BaseException, settings: Settings | None) -> ServiceUnavailable:
    """The one-line error for a failure of the database, Redis or the broker."""
    if isinstance(exc, DBAPIError):
        where = database_address(settings.database_url) if settings else "the configured URL"
        cause = exc.orig if exc.orig is not None else exc
        return ServiceUnavailable(f"the database at {where} failed: {reason(cause)}")
    if isinstance(exc, RedisError):
        where = maybe_sanitize_url(settings.redis_url or "") if settings else "the configured URL"
        return ServiceUnavailable(f"Redis at {where} failed: {reason(exc)}")
    where = maybe_sanitize_url(settings.broker_url) if settings else "the configured URL"
    return ServiceUnavailable(f"the broker at {where} failed: {reason(exc)}")


def database_address(url: str) -> str:
    """A database URL fit to print: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the configured SYNCWORKER_DATABASE_URL"


def reason(exc: BaseException) -> str:
    """An error's first line, without anything that looks like a secret, bounded."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    first = str(redact_value(lines[0].strip()))
    return first if len(first) <= MAX_REASON_CHARS else first[: MAX_REASON_CHARS - 3] + "..."
