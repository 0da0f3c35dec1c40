"""Settings: one typed, immutable object read from the environment once, at the edge.

Each setting is declared once, as a field of `Settings`: its default is the field's
default, and its metadata names the environment variable and how its text is read
and checked (`worker.parsers`: `whole(1, 1000)`, `FLAG`, `url(...)`). A bad value is one
`InvalidValue` line naming the variable, what is wrong and the allowed range; a secret's
value is never quoted.

With no configuration at all the worker runs on the embedded default: a SQLite
database and a SQLite-backed broker under `./.syncworker/`, no Redis, and a
development credential key generated on first start.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from models.credentials import Keyring
from models.errors import CredentialKeyError, InvalidValue
from models.health import LatenessRule
from models.incidents import IncidentRule
from models.status import Provider
from scheduler.providers import DEFAULT_POLICIES, ProviderPolicy, resolve_policies
from worker.connectors.bodies import MIB
from worker.connectors.http import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_DEADLINE_S,
    HttpOptions,
)
from worker.connectors.limits import DEFAULT_DEADLINE_S, DEFAULT_MAX_PAGES, SyncLimits
from worker.parsers import (
    ADDRESS,
    BROKER_URL,
    DATABASE_URL,
    FLAG,
    FOLDER,
    REDIS_URL,
    TEXT,
    URLS,
    Parser,
    Problem,
    duration,
    name_text,
    number,
    one_of,
    secret_text,
    url,
    whole,
)

PREFIX: Final = "SYNCWORKER_"
DEFAULT_DATA_DIR: Final = ".syncworker"
DEV_KEY_FILE: Final = "credentials.key"
SESSION_KEY_FILE: Final = "session.key"
# The page's cookies are signed with HMAC-SHA256: a secret below 32 characters (about 190
# bits as base64) would be weaker than the hash it keys.
MIN_SESSION_SECRET_CHARS: Final = 32
# A sync interval below a minute would have the beat's 15 s tick dispatch an integration
# again before its previous sync finished; above 30 days data is stale beyond use.
MIN_INTERVAL_S: Final = 60
MAX_INTERVAL_S: Final = 30 * 86_400
# Where the metrics endpoint listens by default: this host only on the embedded default (a
# laptop or a small install), every interface with a broker of its own (a container that
# Prometheus scrapes from outside).
LOOPBACK: Final = "127.0.0.1"
ALL_INTERFACES: Final = "0.0.0.0"  # noqa: S104 - an exporter in a container is scraped from outside
# Only owner-readable: the embedded data folder holds customer records and the dev key.
DATA_DIR_MODE: Final = 0o700
# A threads worker's default concurrency. Each thread keeps one sync in flight and a sync
# mostly waits on its provider, so 64 keep a pinned core busy against providers answering
# within about a second (README; benchmarks/throughput.py). A prefork worker defaults to
# the CPU count instead, as in Celery: its processes are not there to wait.
THREADS_CONCURRENCY: Final = 64
# The most of a task's hard time limit a sync's deadline may take (the soft limit is 0.9).
SYNC_DEADLINE_SHARE: Final = 0.8
# Pools whose slots are threads or greenlets in one process, which THREADS_CONCURRENCY sizes.
THREADED_POOLS: Final = frozenset({"threads", "gevent", "eventlet"})


@dataclass(frozen=True)
class Env:
    """How one setting is read: its variable (after the prefix) and its parser."""

    name: str
    parser: Parser
    secret: bool = False  # never quote the value in an error

    @property
    def variable(self) -> str:
        return PREFIX + self.name

    def read(self, raw: str) -> Any:
        try:
            return self.parser.read(raw)
        except Problem as problem:
            shown = "" if self.secret else f", got {self.parser.shown(raw)}"
            raise InvalidValue(f"{self.variable} {problem}{shown}") from None


def env(name: str, parser: Parser, *, secret: bool = False) -> dict[str, Env]:
    """A field's metadata: read from SYNCWORKER_<name> with `parser`."""
    return {"env": Env(name, parser, secret)}


@dataclass(frozen=True)
class Settings:
    """Everything a worker, beat, API or CLI process is configured with."""

    data_dir: Path = field(default=Path(DEFAULT_DATA_DIR), metadata=env("DATA_DIR", FOLDER))
    # Empty: a SQLite file / the SQLite broker in data_dir, the embedded default (from_env).
    database_url: str = field(default="", metadata=env("DATABASE_URL", DATABASE_URL))
    broker_url: str = field(default="", metadata=env("BROKER_URL", BROKER_URL))
    # Redis for the cluster-wide leases and request budgets; None on the embedded default,
    # where one process runs everything and in-process equivalents suffice.
    redis_url: str | None = field(default=None, metadata=env("REDIS_URL", REDIS_URL))
    credential_keys: str | None = field(
        default=None,
        repr=False,
        metadata=env("CREDENTIAL_KEYS", Parser(str, "label:base64key, newest first"), secret=True),
    )
    providers: Mapping[Provider, ProviderPolicy] = field(
        default_factory=lambda: dict(DEFAULT_POLICIES)
    )
    log_format: str = field(
        default="auto", metadata=env("LOG_FORMAT", one_of("auto", "json", "console"))
    )
    log_level: str = field(
        default="INFO",
        metadata=env("LOG_LEVEL", one_of("debug", "info", "warning", "error", upper=True)),
    )
    # Webhook URLs often carry a token in their path: kept out of the repr, like the secret.
    webhook_urls: tuple[str, ...] = field(
        default=(), repr=False, metadata=env("WEBHOOK_URLS", URLS, secret=True)
    )
    webhook_secret: str | None = field(
        default=None, repr=False, metadata=env("WEBHOOK_SECRET", TEXT, secret=True)
    )
    # One webhook POST's budget; a delivery run sends many, all within the task time limit.
    webhook_timeout_s: int = field(default=10, metadata=env("WEBHOOK_TIMEOUT", whole(1, 60, " s")))
    metrics_port: int | None = field(default=None, metadata=env("METRICS_PORT", whole(0, 65535)))
    # None: LOOPBACK on the embedded default, ALL_INTERFACES with a broker of its own.
    metrics_addr: str | None = field(default=None, metadata=env("METRICS_ADDR", ADDRESS))
    # Where `syncworker api` listens: loopback unless told otherwise.
    api_host: str = field(default="127.0.0.1", metadata=env("API_HOST", name_text(253)))
    api_port: int = field(default=8000, metadata=env("API_PORT", whole(1, 65535)))
    # How long the API trusts a verified key without asking the database again: a key
    # check would otherwise double the queries of a read. Revocation takes effect within
    # it; 0 checks every request.
    api_key_cache_ttl_s: int = field(
        default=5, metadata=env("API_KEY_CACHE_TTL", whole(0, 60, " s"))
    )
    # The largest webhook body the receiver reads: a provider's event is a few KiB, so
    # 1 MiB leaves room for any real one while a flood is refused (413) after 1 MiB.
    api_webhook_max_bytes: int = field(
        default=1024 * 1024, metadata=env("API_WEBHOOK_MAX_BYTES", whole(1024, 16 * 1024 * 1024))
    )
    # Signs the integrations page's session cookies; generated in data_dir when embedded.
    api_session_secret: str | None = field(
        default=None,
        repr=False,
        metadata=env("API_SESSION_SECRET", secret_text(MIN_SESSION_SECRET_CHARS), secret=True),
    )
    # Demo only: the app clock runs this many times faster than the wall clock.
    clock_speed: float = 1.0
    # A task's hard time limit (the soft one is nine tenths of it); below the broker's
    # visibility timeout (see visibility_timeout).
    task_time_limit_s: int = field(
        default=300, metadata=env("TASK_TIME_LIMIT", whole(2, 3600, " s"))
    )
    # Redis redelivers a message not acked within this many seconds. Kept above the hard time
    # limit plus the longest retry countdown, so a live task is never delivered twice.
    visibility_timeout_s: int = field(
        default=1800, metadata=env("VISIBILITY_TIMEOUT", whole(3, 7 * 86_400, " s"))
    )
    # A transient failure is retried this many times, with backoff, before it counts as failed.
    max_retries: int = field(default=4, metadata=env("MAX_RETRIES", whole(0, 20)))
    # Longest countdown between retries; far below the visibility timeout (see above).
    max_retry_delay_s: int = field(
        default=600, metadata=env("MAX_RETRY_DELAY", whole(1, 3600, " s"))
    )
    # How long a sync's lease lasts without renewal; renewed every third of it.
    lease_ttl_s: int = field(default=90, metadata=env("LEASE_TTL", whole(2, 3600, " s")))
    # None: by pool, THREADS_CONCURRENCY threads or the CPU count (worker.signals).
    worker_concurrency: int | None = field(
        default=None, metadata=env("CONCURRENCY", whole(1, 1000))
    )
    # Celery task events, for Flower and `celery events`: three messages per task (received,
    # started, succeeded) that cost the worker 0.6-0.9 ms of CPU, a third of a no-op task
    # (benchmarks/throughput.py). Off by default, as in Celery: Flower turns them on in the
    # workers it watches, and `-E` or SYNCWORKER_TASK_EVENTS=true does it for good.
    task_events: bool = field(default=False, metadata=env("TASK_EVENTS", FLAG))
    # Ping each pooled database connection before use (see models.db.make_engine).
    db_pre_ping: bool = field(default=False, metadata=env("DB_PRE_PING", FLAG))
    # Health beyond status (SPEC §11; README "Health"). Lateness: sync intervals without a
    # success after which an integration is late, and overdue.
    late_after: float = field(default=2.0, metadata=env("LATE_AFTER", number(1, 1000, "x")))
    overdue_after: float = field(default=5.0, metadata=env("OVERDUE_AFTER", number(1, 1000, "x")))
    # Provider incidents: the sliding window, the share of at least `incident_min` of one
    # provider's integrations failing the same way in it, and the interval stretch meanwhile.
    incident_window_s: int = field(
        default=3600, metadata=env("INCIDENT_WINDOW", whole(60, 7 * 86_400, " s"))
    )
    incident_share: float = field(default=0.5, metadata=env("INCIDENT_SHARE", number(0.01, 1)))
    incident_min: int = field(default=10, metadata=env("INCIDENT_MIN", whole(2, 1_000_000)))
    incident_backoff: float = field(
        default=6.0, metadata=env("INCIDENT_BACKOFF", number(1, 1000, "x"))
    )

    # Recovery probes of `credentials_invalid` (worker.recovery): how often each is tried,
    # and whether credentials that work again move it back to active (off: seed 002 pauses
    # syncs until new credentials arrive; the probe then only announces the recovery).
    probe_interval_s: int = field(
        default=86_400, metadata=env("PROBE_INTERVAL", whole(3600, 30 * 86_400, " s"))
    )
    recover_credentials: bool = field(default=False, metadata=env("RECOVER_CREDENTIALS", FLAG))
    # `syncworker health` fails once a queue's oldest message waited longer than this.
    health_max_queue_age_s: int = field(
        default=900, metadata=env("HEALTH_MAX_QUEUE_AGE", whole(1, 7 * 86_400, " s"))
    )
    # One sync's wall-clock deadline and request budget (worker.connectors.limits); the
    # deadline is clipped below the task's time limit (`sync_limits`).
    sync_deadline_s: int = field(
        default=int(DEFAULT_DEADLINE_S), metadata=env("SYNC_DEADLINE", whole(1, 3600, " s"))
    )
    sync_max_pages: int = field(
        default=DEFAULT_MAX_PAGES, metadata=env("SYNC_MAX_PAGES", whole(1, 1_000_000))
    )
    # One request's total time, body included, and its decoded body size (worker.connectors).
    request_deadline_s: int = field(
        default=int(DEFAULT_REQUEST_DEADLINE_S),
        metadata=env("REQUEST_DEADLINE", whole(1, 3600, " s")),
    )
    max_response_mb: int = field(
        default=DEFAULT_MAX_RESPONSE_BYTES // MIB,
        metadata=env("MAX_RESPONSE_MB", whole(1, 1024, " MiB")),
    )
    # Customer-supplied hosts (a WooCommerce store) may be loopback: only for local fakes
    # (tests, the demo). Any other non-public address is refused regardless.
    allow_loopback_hosts: bool = field(default=False, metadata=env("ALLOW_LOOPBACK_HOSTS", FLAG))

    def __post_init__(self) -> None:
        self.lateness_rule()  # raises on inconsistent thresholds
        longest_live = self.task_time_limit_s + self.max_retry_delay_s
        if self.visibility_timeout_s <= longest_live:
            raise InvalidValue(
                f"{PREFIX}VISIBILITY_TIMEOUT must be above {PREFIX}TASK_TIME_LIMIT plus "
                f"{PREFIX}MAX_RETRY_DELAY ({longest_live} s), got {self.visibility_timeout_s}: "
                "a live task would be delivered twice"
            )

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @property
    def metrics_bind_address(self) -> str:
        """Where the metrics endpoint listens."""
        return self.metrics_addr or (LOOPBACK if self.embedded else ALL_INTERFACES)

    @property
    def sync_limits(self) -> SyncLimits:
        """Each sync's deadline and page budget.

        The deadline is at most SYNC_DEADLINE_SHARE of the task's hard time limit: a sync
        ends on its own, classified and with its pages stored, before the soft limit
        (nine tenths) interrupts it.
        """
        deadline = min(self.sync_deadline_s, self.task_time_limit_s * SYNC_DEADLINE_SHARE)
        return SyncLimits(deadline_s=deadline, max_pages=self.sync_max_pages)

    def http_options(self, max_connections: int) -> HttpOptions:
        """The connectors' HTTP options: per-request deadline and body cap, and pool size."""
        return HttpOptions(
            max_connections=max_connections,
            request_deadline=self.request_deadline_s,
            max_response_bytes=self.max_response_mb * MIB,
            allow_loopback=self.allow_loopback_hosts,
        )

    @property
    def lease_ttl_real(self) -> timedelta:
        return timedelta(seconds=self.lease_ttl_s)

    def lateness_rule(self) -> LatenessRule:
        """The lateness thresholds; raises InvalidValue unless late < overdue."""
        try:
            return LatenessRule(self.late_after, self.overdue_after)
        except InvalidValue:
            raise InvalidValue(
                f"{PREFIX}LATE_AFTER ({self.late_after}) must be below "
                f"{PREFIX}OVERDUE_AFTER ({self.overdue_after})"
            ) from None

    def incident_rule(self) -> IncidentRule:
        return IncidentRule(
            timedelta(seconds=self.incident_window_s),
            self.incident_share,
            self.incident_min,
            self.incident_backoff,
        )

    def intervals(self) -> dict[Provider, timedelta]:
        """Each provider's sync interval."""
        return {provider: policy.interval for provider, policy in self.providers.items()}

    @property
    def lease_ttl(self) -> timedelta:
        """The lease in app-clock time (the demo's clock runs fast)."""
        return timedelta(seconds=self.lease_ttl_s * self.clock_speed)

    def keyring(self) -> Keyring:
        """The configured keys; on the embedded default, a development key kept in data_dir.

        Raises CredentialKeyError when a deployment with its own broker has no keys.
        """
        if self.credential_keys:
            return Keyring.from_config(self.credential_keys)
        if not self.embedded:
            raise CredentialKeyError(
                f"{PREFIX}CREDENTIAL_KEYS is not set; a deployment with its own broker must "
                "configure its credential keys (generate one with `syncworker credentials "
                "generate-key`)"
            )
        return Keyring.from_config(_development_key(self.data_dir))

    def session_secret(self) -> str:
        """The page's cookie-signing secret; on the embedded default, one kept in data_dir.

        Raises InvalidValue when a deployment with its own broker has none: every process
        serving the page must sign with the same secret, so it cannot be made up here.
        """
        if self.api_session_secret:
            return self.api_session_secret
        if not self.embedded:
            raise InvalidValue(
                f"{PREFIX}API_SESSION_SECRET is not set; a deployment with its own broker must "
                "configure it to serve the integrations page (any random text of at least "
                f"{MIN_SESSION_SECRET_CHARS} characters, e.g. `openssl rand -base64 48`)"
            )
        return _kept_secret(self.data_dir, SESSION_KEY_FILE, lambda: secrets.token_urlsafe(48))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `environ` (default: the process environment).

        Raises InvalidValue, one line naming the variable, for a value it cannot use.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            declared = spec.metadata.get("env")
            raw = environ.get(declared.variable, "").strip() if declared else ""
            if declared and raw:
                values[spec.name] = declared.read(raw)
        data_dir = Path(values.get("data_dir", DEFAULT_DATA_DIR)).absolute()
        values["data_dir"] = data_dir
        values.setdefault("database_url", f"sqlite:///{data_dir / 'syncworker.db'}")
        values.setdefault("broker_url", f"sqla+sqlite:///{data_dir / 'broker.db'}")
        values["providers"] = resolve_policies(_provider_overrides(environ))
        return cls(**values)

    @classmethod
    def variables(cls) -> list[Env]:
        """Every variable read into a field, in declaration order (the README's table)."""
        return [spec.metadata["env"] for spec in fields(cls) if "env" in spec.metadata]


def _development_key(data_dir: Path) -> str:
    """The embedded default's key: generated on first use, kept beside the SQLite files."""
    return _kept_secret(data_dir, DEV_KEY_FILE, lambda: f"dev:{Keyring.generate_key()}")


def _kept_secret(data_dir: Path, name: str, generate: Callable[[], str]) -> str:
    """A secret generated on first use and kept owner-only in `data_dir`."""
    path = data_dir / name
    if not path.exists():
        data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        try:
            # Created owner-only from the first byte, never readable by others even briefly.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_text().strip()
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{generate()}\n")
    return path.read_text().strip()


# Per-provider overrides, SYNCWORKER_<PROVIDER>_<SUFFIX>: the policy field each sets.
PROVIDER_SETTINGS: Final[dict[str, tuple[str, Parser]]] = {
    "INTERVAL": ("interval", duration(MIN_INTERVAL_S, MAX_INTERVAL_S)),
    "QUEUE": ("queue", name_text(100)),
    "RATE": ("rate_per_s", number(0.001, 10_000, " requests/s")),
    "BURST": ("burst", whole(1, 100_000)),
    "BASE_URL": ("base_url", url("http", "https")),
    "LOOKBACK": ("lookback", duration(3600, 365 * 86_400)),
}


def _provider_overrides(environ: Mapping[str, str]) -> dict[Provider, dict[str, Any]]:
    """Per-provider overrides: SYNCWORKER_<PROVIDER>_<SUFFIX> for each PROVIDER_SETTINGS."""
    overrides: dict[Provider, dict[str, Any]] = {}
    for provider in Provider:
        for suffix, (attribute, parser) in PROVIDER_SETTINGS.items():
            declared = Env(f"{provider.name}_{suffix}", parser)
            raw = environ.get(declared.variable, "").strip()
            if raw:
                overrides.setdefault(provider, {})[attribute] = declared.read(raw)
    return overrides
