"""Prometheus metrics: sync outcomes and durations, dispatch lag, integrations, queue depths.

Two kinds of metric, collected two ways:

- Events the worker sees (a sync finished, a tick dispatched) are module-level
  prometheus_client metrics, updated where they happen: `record_sync` from the sync
  task, `record_dispatch` from the dispatch task. Defining them does no I/O.
- Facts about the world (integrations per status and provider, messages waiting per
  queue) are custom collectors that query the database or the broker when scraped,
  behind a short cache, so every worker reports the same numbers and a scrape storm
  costs one query per cache period.

`serve` starts the HTTP endpoint; the worker calls it on `worker_ready` when
SYNCWORKER_METRICS_PORT is set, on SYNCWORKER_METRICS_ADDR (see `worker.signals`).

Pools:

- threads (the Procfile's `-P threads`): one process, one registry. Nothing to set.
- prefork: each child process counts its own syncs. Set PROMETHEUS_MULTIPROC_DIR to
  an empty directory, writable by the worker, before the worker starts (prometheus_client
  reads it at import): children write their samples there, the parent's endpoint sums
  them (`MultiProcessCollector`), and `mark_dead` is called as each child exits. Empty
  the directory between worker starts (a fresh tmpfs per container does it), or counts
  of a previous run come back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from models.integrations import count_by_status_and_provider
from models.status import Provider, Status
from scheduler.dispatch import TickReport
from scheduler.providers import ProviderPolicy

log = structlog.get_logger(__name__)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# Prometheus scrapes every 15-60 s; a 10 s cache serves a few scrapers with one query.
COLLECT_CACHE_S: Final = 10.0
# Where `serve` binds unless told (SYNCWORKER_METRICS_ADDR): this host only.
DEFAULT_ADDR: Final = "127.0.0.1"
# Syncs last from under a second (nothing new) to minutes (a first sync of a big account).
DURATION_BUCKETS: Final = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
RETRIED: Final = "retried"
# The provider label of a sync whose queue several providers share, or that came unrouted.
UNKNOWN_PROVIDER: Final = "unknown"

SYNC_OUTCOMES: Final = Counter(
    "syncworker_sync_outcomes",
    "Sync attempts by provider and outcome (a SyncOutcome, or 'retried' for a transient failure)",
    ["provider", "outcome"],
)
SYNC_DURATION: Final = Histogram(
    "syncworker_sync_duration_seconds",
    "Wall-clock duration of one sync attempt",
    ["provider"],
    buckets=DURATION_BUCKETS,
)
DISPATCH_LAG: Final = Gauge(
    "syncworker_dispatch_lag_seconds",
    "How late the most overdue integration was when the provider's last tick claimed it",
    ["provider"],
    # Ticks run in whichever process takes them; the latest one is the truth.
    multiprocess_mode="mostrecent",
)


def record_sync(provider: str, outcome: str, duration_s: float) -> None:
    """Count one finished (or retried) sync attempt and how long it took."""
    SYNC_OUTCOMES.labels(provider=provider, outcome=outcome).inc()
    SYNC_DURATION.labels(provider=provider).observe(duration_s)


def provider_of_queue(
    policies: Mapping[Provider, ProviderPolicy], delivery_info: Mapping[str, Any] | None
) -> str:
    """The provider a sync message belongs to, from the queue it was routed to.

    The sync task carries only the integration id; each provider has its own queue
    (`sync.<provider>`), which the message's routing key names.
    """
    queue = (delivery_info or {}).get("routing_key")
    owners = [provider for provider, policy in policies.items() if policy.queue == queue]
    return owners[0].value if len(owners) == 1 else UNKNOWN_PROVIDER


def record_dispatch(report: TickReport) -> None:
    """Remember the lag of a provider's latest tick."""
    DISPATCH_LAG.labels(provider=report.provider.value).set(report.max_lag_s)


class Cached:
    """A value recomputed at most every `ttl_s`; the last good one is kept through errors."""

    def __init__(self, ttl_s: float, monotonic: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._value: Any = None
        self._at: float | None = None

    def get(self, compute: Callable[[], Any]) -> Any:
        with self._lock:
            now = self._monotonic()
            if self._at is None or now - self._at >= self._ttl_s:
                self._value, self._at = compute(), now
            return self._value


class IntegrationsCollector(Collector):
    """`syncworker_integrations{status,provider}`: counts from the database, every pair shown."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        ttl_s: float = COLLECT_CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._cache = Cached(ttl_s, monotonic)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        counts: Mapping[tuple[str, str], int] | None = self._cache.get(self._counts)
        if counts is None:
            return []
        family = self._family()
        # Zeros too, so a status that empties shows 0 instead of vanishing from the graph.
        for status in Status:
            for provider in Provider:
                key = (status.value, provider.value)
                family.add_metric(list(key), counts.get(key, 0))
        return [family]

    def _counts(self) -> Mapping[tuple[str, str], int] | None:
        try:
            with self._sessions() as session:
                return count_by_status_and_provider(session)
        except SQLAlchemyError as exc:
            log.warning("metrics.collect_failed", metric="integrations", error=str(exc))
            return None

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "syncworker_integrations",
            "Integrations by status and provider",
            labels=["status", "provider"],
        )


class QueueDepthCollector(Collector):
    """`syncworker_queue_depth{queue}`: messages waiting, read from the broker when scraped."""

    def __init__(
        self,
        depths: Callable[[], Mapping[str, int | None]],
        *,
        ttl_s: float = COLLECT_CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._depths = depths
        self._cache = Cached(ttl_s, monotonic)

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        depths: Mapping[str, int | None] = self._cache.get(self._depths)
        family = self._family()
        for queue, depth in sorted(depths.items()):
            if depth is not None:  # the broker could not say: no sample rather than a false 0
                family.add_metric([queue], depth)
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "syncworker_queue_depth", "Messages waiting on each queue", labels=["queue"]
        )


class _ProcessMetrics(Collector):
    """This process's own metrics (the default registry), included in a serving registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


@dataclass
class MetricsServer:
    """A running metrics endpoint."""

    port: int
    _shutdown: Callable[[], None]

    def close(self) -> None:
        self._shutdown()


def multiprocess_dir() -> str | None:
    """The prefork pool's shared sample directory, when multi-process mode is on."""
    return os.environ.get(MULTIPROC_ENV) or None


def build_registry(collectors: Iterable[Collector]) -> CollectorRegistry:
    """A registry serving this worker's metrics (every child's, in multi-process mode)."""
    registry = CollectorRegistry()
    path = multiprocess_dir()
    if path:
        # prometheus_client leaves these two unannotated.
        prometheus_multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ProcessMetrics())
    for collector in collectors:
        registry.register(collector)
    return registry


def serve(port: int, collectors: Iterable[Collector], *, addr: str = DEFAULT_ADDR) -> MetricsServer:
    """Serve the text exposition format on `port` (0: any free port) in a daemon thread."""
    server, thread = start_http_server(port, addr=addr, registry=build_registry(collectors))

    def shutdown() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    log.info("metrics.serving", addr=addr, port=server.server_port)
    return MetricsServer(server.server_port, shutdown)


def mark_dead(pid: int) -> None:
    """Forget a prefork child's live gauges once it exited (multi-process mode only)."""
    path = multiprocess_dir()
    if path:
        prometheus_multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
