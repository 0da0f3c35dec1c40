"""Settings: one typed, immutable object read from the environment once, at the edge.

With no configuration at all the worker runs on the embedded default: a SQLite
database and a SQLite-backed broker under `./.syncworker/`, no Redis, and a
development credential key generated on first start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from models.credentials import Keyring
from models.errors import CredentialKeyError, InvalidValue
from models.status import Provider, parse_enum
from scheduler.providers import ProviderPolicy, resolve_policies

PREFIX: Final = "SYNCWORKER_"
DEFAULT_DATA_DIR: Final = ".syncworker"
DEV_KEY_FILE: Final = "credentials.key"


@dataclass(frozen=True)
class Settings:
    """Everything a worker, beat or CLI process is configured with."""

    data_dir: Path
    database_url: str
    broker_url: str
    # Redis for the cluster-wide leases and request budgets; None on the embedded default,
    # where one process runs everything and in-process equivalents suffice.
    redis_url: str | None
    credential_keys: str | None = field(repr=False)
    providers: Mapping[Provider, ProviderPolicy]
    log_format: str = "auto"
    log_level: str = "INFO"
    # Webhook URLs often carry a token in their path: kept out of the repr, like the secret.
    webhook_urls: tuple[str, ...] = field(default=(), repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    # One webhook POST's budget; a delivery run sends many, all within the task time limit.
    webhook_timeout_s: int = 10
    metrics_port: int | None = None
    # Demo only: the app clock runs this many times faster than the wall clock.
    clock_speed: float = 1.0
    # A sync's hard time limit; below the broker's visibility timeout (see visibility_timeout).
    task_time_limit_s: int = 300
    # Redis redelivers a message not acked within this many seconds. Kept above the hard time
    # limit plus the longest retry countdown, so a live task is never delivered twice.
    visibility_timeout_s: int = 1800
    # A transient failure is retried this many times, with backoff, before it counts as failed.
    max_retries: int = 4
    # Longest countdown between retries; far below the visibility timeout (see above).
    max_retry_delay_s: int = 600
    # How long a sync's lease lasts without renewal; renewed every third of it.
    lease_ttl_s: int = 90
    worker_concurrency: int = 64
    # Celery task events, for Flower and `celery events`: three messages per task (received,
    # started, succeeded) that cost the worker 0.6-0.9 ms of CPU, a third of a no-op task
    # (benchmarks/throughput.py). Off by default, as in Celery: Flower turns them on in the
    # workers it watches, and `-E` or SYNCWORKER_TASK_EVENTS=true does it for good.
    task_events: bool = False
    # Ping each pooled database connection before use (see models.db.make_engine).
    db_pre_ping: bool = False

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("sqla+")

    @property
    def lease_ttl_real(self) -> timedelta:
        return timedelta(seconds=self.lease_ttl_s)

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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (default: the process environment)."""
        env = os.environ if env is None else env
        get = _reader(env)
        data_dir = Path(get("DATA_DIR") or DEFAULT_DATA_DIR).absolute()
        return cls(
            data_dir=data_dir,
            database_url=get("DATABASE_URL") or f"sqlite:///{data_dir / 'syncworker.db'}",
            broker_url=get("BROKER_URL") or f"sqla+sqlite:///{data_dir / 'broker.db'}",
            redis_url=get("REDIS_URL"),
            credential_keys=get("CREDENTIAL_KEYS"),
            providers=resolve_policies(_provider_overrides(env)),
            log_format=get("LOG_FORMAT") or "auto",
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            webhook_urls=_webhook_urls(get("WEBHOOK_URLS")),
            webhook_secret=get("WEBHOOK_SECRET"),
            webhook_timeout_s=_int_or(get("WEBHOOK_TIMEOUT"), "WEBHOOK_TIMEOUT", 10),
            metrics_port=_int(get("METRICS_PORT"), "METRICS_PORT"),
            worker_concurrency=_int_or(get("CONCURRENCY"), "CONCURRENCY", 64),
            max_retries=_int_or(get("MAX_RETRIES"), "MAX_RETRIES", 4),
            max_retry_delay_s=_int_or(get("MAX_RETRY_DELAY"), "MAX_RETRY_DELAY", 600),
            lease_ttl_s=_int_or(get("LEASE_TTL"), "LEASE_TTL", 90),
            visibility_timeout_s=_int_or(get("VISIBILITY_TIMEOUT"), "VISIBILITY_TIMEOUT", 1800),
            task_events=_bool_or(get("TASK_EVENTS"), "TASK_EVENTS", False),
            db_pre_ping=_bool_or(get("DB_PRE_PING"), "DB_PRE_PING", False),
        )


def _reader(env: Mapping[str, str]) -> Callable[[str], str | None]:
    def get(name: str) -> str | None:
        value = env.get(PREFIX + name)
        return value.strip() if value and value.strip() else None

    return get


def _int_or(value: str | None, name: str, default: int) -> int:
    parsed = _int(value, name)
    return default if parsed is None else parsed


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def _bool_or(value: str | None, name: str, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise InvalidValue(f"{PREFIX}{name} must be true or false (1/0, yes/no, on/off), got {value!r}")


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidValue(f"{PREFIX}{name} must be a whole number, got {value!r}") from None


def _webhook_urls(value: str | None) -> tuple[str, ...]:
    """The configured webhook URLs, comma-separated; each must be http(s)."""
    urls = tuple(url.strip() for url in (value or "").split(",") if url.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            # Not the URL itself in the message: webhook URLs often embed a token.
            raise InvalidValue(f"{PREFIX}WEBHOOK_URLS must hold http(s) URLs, got one that is not")
    return urls


def _development_key(data_dir: Path) -> str:
    """The embedded default's key: generated on first use, kept beside the SQLite files."""
    key_file = data_dir / DEV_KEY_FILE
    if not key_file.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # Created owner-only from the first byte, never readable by others even briefly.
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"dev:{Keyring.generate_key()}\n")
    return key_file.read_text().strip()


def _provider_overrides(env: Mapping[str, str]) -> dict[Provider, dict[str, Any]]:
    """Per-provider overrides: SYNCWORKER_<PROVIDER>_{INTERVAL,QUEUE,RATE,BURST,BASE_URL}."""
    fields: dict[str, tuple[str, Callable[[str], Any]]] = {
        "INTERVAL": ("interval", lambda v: timedelta(seconds=float(v))),
        "QUEUE": ("queue", str),
        "RATE": ("rate_per_s", float),
        "BURST": ("burst", int),
        "BASE_URL": ("base_url", str),
    }
    overrides: dict[Provider, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith(PREFIX) or not value.strip():
            continue
        for suffix, (attribute, convert) in fields.items():
            head = name[len(PREFIX) : -len(suffix) - 1]
            if name.endswith("_" + suffix) and head.lower() in Provider._value2member_map_:
                provider = parse_enum(Provider, head.lower(), what="provider")
                try:
                    overrides.setdefault(provider, {})[attribute] = convert(value.strip())
                except (ValueError, OverflowError):  # OverflowError: an interval of "inf"/"1e20"
                    raise InvalidValue(f"{name} has an invalid value {value!r}") from None
    return overrides
