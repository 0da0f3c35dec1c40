"""The connector interface: what a sync gives a connector and what it gets back.

A connector pages through a provider's API and hands every page to a
`PageSink`, which commits the page's records and the stream's new cursor in one
transaction. The cursor therefore only advances once a page is stored: a crash
between pages resumes from the stored cursor, and records are upserted by
external id downstream, so nothing is lost or duplicated.

Stream-level failures (`sync_streams`): a connector syncs several streams
(Stripe's customers, subscriptions, ...). `AuthFailed` (a 401) and `TransientError`
abort the whole sync, because they concern the account or the moment, not a
stream. A `ProviderError` (a malformed answer, a rejected request) or a
`PermissionDenied` (a 403: a restricted key lacking one resource's permission) on
one stream skips that stream with a warning naming it, while the others carry on,
giving `succeeded_with_warnings`; if every stream fails that way the sync `failed`,
or `auth_failed` when every one was a permission denied.
Which streams a sync covers is the integration's choice: `filters["objects"]`
(`select_streams`), all of the provider's by default. `validate_filters` checks filters
when they are set, so a key or stream the connector lacks is refused at the door rather
than failing the first sync (which would send the integration to QA).
"""

from __future__ import annotations

import re
from abc import ABC
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Final, Protocol

import structlog

from models.errors import InvalidCredentials
from models.inputs import shown
from models.status import Provider, SyncOutcome
from models.sync_runs import SyncResult
from worker.connectors.errors import (
    AuthFailed,
    ConnectorError,
    InvalidFilters,
    PermissionDenied,
    ProviderError,
    SyncLimitExceeded,
    TransientError,
)
from worker.connectors.http import HttpOptions, ProviderClient
from worker.connectors.limits import SyncLimits, bounded
from worker.connectors.redaction import clean_message
from worker.connectors.stamps import StampCheck, checking_stamps, stamp_check

log = structlog.get_logger(__name__)

Record = tuple[str, dict[str, Any]]  # (external_id, data)


@dataclass(frozen=True)
class Page:
    """One page of one stream, stored atomically with the cursor that follows it."""

    stream: str  # object kind, e.g. "customers", "subscriptions"
    records: tuple[Record, ...]
    cursor: dict[str, Any] | None  # the stream's cursor AFTER this page (None = unchanged)


@dataclass(frozen=True)
class SyncContext:
    """What one sync of one integration starts from."""

    integration_id: str
    credentials: Mapping[str, str] = field(repr=False)  # decrypted: never log it
    filters: Mapping[str, Any]
    configurations: Mapping[str, Any]
    cursors: Mapping[str, Mapping[str, Any]]  # stream -> cursor stored by previous runs
    now: datetime  # from the app clock
    data_last_received_at: datetime | None
    limits: SyncLimits = field(default_factory=SyncLimits)  # deadline and page budget


class PageSink(Protocol):
    """Where a connector hands its pages."""

    def store(self, page: Page) -> None:
        """Commit the page's records and its cursor in one transaction."""


class Connector(Protocol):
    """A provider's connector, as the sync task sees it."""

    provider: Provider
    required_credentials: tuple[str, ...]

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """The credentials to store, or `InvalidCredentials` naming the field (never a value)."""

    def validate_filters(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """The filters to store, or `InvalidFilters` naming the key or stream that is wrong."""

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        """Fetch what changed since `ctx.cursors`, storing each page in `sink`."""

    def close(self) -> None:
        """Release connections."""


class HttpConnector(ABC):
    """The shared part of connectors that speak HTTP: one pooled client per instance."""

    provider: Provider
    required_credentials: tuple[str, ...]
    # The provider's API; "" where each integration has its own host (a Shopify shop),
    # which a sync names with `client.authorized(..., base_url=...)`.
    default_base_url: ClassVar[str] = ""
    # The most objects a list page may hold, and the default; 0 where the provider fixes it.
    max_page_size: ClassVar[int] = 0
    # The streams `filters["objects"]` may name, and the filter keys the connector reads.
    streams: ClassVar[tuple[str, ...]] = ()
    filter_keys: ClassVar[frozenset[str]] = frozenset({"objects"})

    def __init__(
        self,
        *,
        base_url: str | None = None,
        http: HttpOptions | None = None,
        page_size: int | None = None,
    ) -> None:
        most = self.max_page_size
        if page_size is not None and not 1 <= page_size <= most:
            raise ValueError(f"{self.provider}: page_size must be between 1 and {most}")
        self.page_size = page_size or most
        self.base_url = base_url  # an override for every integration (tests, the demo's fakes)
        self.client = self.make_client(base_url or self.default_base_url, http or HttpOptions())

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        """The client for this provider; override to add an error-detail or rate-limit hook."""
        return ProviderClient(base_url, options=options)

    def validate_filters(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """The filters to store: only `filter_keys`, `objects` naming some of `streams`."""
        return checked_filters(filters, self.streams, keys=self.filter_keys, provider=self.provider)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> HttpConnector:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def credential(
    raw: Mapping[str, Any], name: str, *, provider: Provider, header_safe: bool = True
) -> str:
    """A required non-empty text credential, or `InvalidCredentials` naming it.

    `header_safe` (all but key files): only printable ASCII without spaces, the characters
    an HTTP header or URL can carry, so a pasted non-ASCII or control character is
    refused here, naming the field (never the value), not met as a `UnicodeEncodeError`
    in the middle of a sync.
    """
    value = raw.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidCredentials(f"{provider} credentials: {name} is required (non-empty text)")
    if header_safe and not HEADER_SAFE.fullmatch(value.strip(" ")):
        raise InvalidCredentials(
            f"{provider} credentials: {name} must be printable ASCII without spaces "
            "(it holds a non-ASCII, control or space character)"
        )
    return value


def reject_unknown(raw: Mapping[str, Any], known: Sequence[str], *, provider: Provider) -> None:
    """Raise `InvalidCredentials` naming the first field the provider does not use."""
    for name in raw:
        if name not in known:
            raise InvalidCredentials(f"{provider} credentials: unexpected field {name!r}")


def select_streams(
    filters: Mapping[str, Any], streams: Sequence[str], *, provider: Provider
) -> tuple[str, ...]:
    """The streams `filters["objects"]` names, in `streams`' order; all when it is absent.

    `InvalidFilters` when it is not a non-empty list or names a stream the provider lacks.
    """
    chosen = filters.get("objects")
    if chosen is None:
        return tuple(streams)
    if not isinstance(chosen, list | tuple) or not chosen:
        raise InvalidFilters(
            f"{provider} filters: objects must be a non-empty list of some of {list(streams)}"
        )
    unknown = [name for name in chosen if name not in streams]
    if unknown:
        raise InvalidFilters(
            f"{provider} filters: unknown objects {_few(unknown)}; expected some of {list(streams)}"
        )
    return tuple(name for name in streams if name in chosen)


def checked_filters(
    filters: Mapping[str, Any],
    streams: Sequence[str],
    *,
    keys: Collection[str],
    provider: Provider,
) -> dict[str, Any]:
    """Filters that use only `keys` and whose `objects` name some of `streams`.

    Raises `InvalidFilters` naming the first thing wrong.
    """
    if not isinstance(filters, Mapping):
        raise InvalidFilters(f"{provider} filters must be a JSON object")
    unknown = [key for key in filters if key not in keys]
    if unknown:
        raise InvalidFilters(
            f"{provider} filters: unknown keys {_few(unknown)}; expected some of {sorted(keys)}"
        )
    select_streams(filters, streams, provider=provider)
    return dict(filters)


# What a credential sent in a header or URL may hold: printable ASCII, no space.
HEADER_SAFE: Final = re.compile(r"[\x21-\x7e]+")
# How many unknown names an error lists (the rest are counted).
SHOWN_NAMES: Final = 5


def _few(names: Sequence[Any]) -> str:
    listed = ", ".join(shown(name) for name in names[:SHOWN_NAMES])
    more = len(names) - SHOWN_NAMES
    return f"[{listed}]" + (f" and {more} more" if more > 0 else "")


@dataclass
class SyncTally:
    """What one run has stored and noticed so far (mutable, local to one sync)."""

    records: int = 0
    warnings: list[str] = field(default_factory=list)

    def store(self, sink: PageSink, page: Page) -> None:
        """Hand the page to the sink and count its records once stored."""
        sink.store(page)
        self.records += len(page.records)

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def sync_streams(
    streams: Sequence[str], sync_stream: Callable[[str, SyncTally], None]
) -> SyncResult:
    """Sync each stream in turn; a `ProviderError` in one becomes a warning naming it.

    A `SyncLimitExceeded` stops the sync (see `limited`).
    """
    tally = SyncTally()
    failures: list[str] = []
    denied = 0
    check = stamp_check()
    for stream in streams:
        try:
            sync_stream(stream, tally)
        except (ProviderError, PermissionDenied) as exc:
            log.warning("sync.stream_failed", stream=stream, error=str(exc))
            failures.append(f"{stream}: {exc}")
            denied += isinstance(exc, PermissionDenied)
        except SyncLimitExceeded as exc:
            _warn_ignored_stamps(stream, check, tally)
            return limited(tally, [*failures, f"{stream}: {exc}"])
        _warn_ignored_stamps(stream, check, tally)
    if streams and len(failures) == len(streams):
        # A key allowed to read none of the streams is as good as a wrong one.
        outcome = SyncOutcome.AUTH_FAILED if denied == len(streams) else SyncOutcome.FAILED
        return SyncResult(outcome, tally.records, (), "; ".join(failures))
    warnings = (*tally.warnings, *failures)
    outcome = SyncOutcome.SUCCEEDED_WITH_WARNINGS if warnings else SyncOutcome.SUCCEEDED
    return SyncResult(outcome, tally.records, warnings)


def _warn_ignored_stamps(stream: str, check: StampCheck, tally: SyncTally) -> None:
    ignored = check.take_ignored()
    if ignored:
        tally.warn(
            f"{stream}: {ignored} records had a date outside the sane range (after "
            f"{check.latest:%Y-%m-%d} or before 1970); stored, but they did not move the cursor"
        )


def limited(tally: SyncTally, failures: Sequence[str]) -> SyncResult:
    """A sync stopped at a limit: `succeeded_with_warnings` if it stored pages, else `failed`.

    Stored pages carried their cursors, so the next sync goes on from where this one
    stopped: what was stored is a real, if partial, success.
    """
    if tally.records == 0:
        return SyncResult(SyncOutcome.FAILED, error="; ".join(failures))
    warnings = (*tally.warnings, *failures)
    return SyncResult(SyncOutcome.SUCCEEDED_WITH_WARNINGS, tally.records, warnings)


def run_sync(connector: Connector, ctx: SyncContext, sink: PageSink) -> SyncResult:
    """Run a sync within `ctx.limits`, turning its errors into outcomes.

    `TransientError` propagates for a retry. Unusable stored credentials
    (`InvalidCredentials`) count as `auth_failed`: asking again will not help, new
    credentials will.
    """
    try:
        with bounded(ctx.limits), checking_stamps(ctx.now):
            result = connector.sync(ctx, sink)
    except TransientError:
        raise
    except (AuthFailed, InvalidCredentials) as exc:
        result = SyncResult(SyncOutcome.AUTH_FAILED, error=str(exc))
    except ConnectorError as exc:
        result = SyncResult(SyncOutcome.FAILED, error=str(exc))
    return cleaned(result)


def cleaned(result: SyncResult) -> SyncResult:
    """The result with its error and warnings bounded, printable and free of keys."""
    error = clean_message(result.error) if result.error is not None else None
    warnings = tuple(clean_message(warning) for warning in result.warnings)
    return replace(result, error=error, warnings=warnings)
