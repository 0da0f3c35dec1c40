"""Settings read at the door: URLs that would fail later are refused now, without a password."""

from __future__ import annotations

import pytest

from models.errors import InvalidValue
from worker.settings import Settings


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("DATABASE_URL", "postgres://sync:hunter2@db/sync", "must be a URL starting postgresql:"),
        ("DATABASE_URL", "postgresql+asyncpg://sync:hunter2@db/sync", "names a driver not"),
        ("DATABASE_URL", "postgresql://sync:hunter2@db:port/sync", "is not a URL"),
        ("DATABASE_URL", "postgresql://sync:hunter2@[db/sync", "is not a URL"),
        ("BROKER_URL", "sqla+mysql://sync:hunter2@db/sync", "names a driver not"),
        ("BROKER_URL", "redis://:hunter2@redis/0?socket_timeout=soon", "has a query option"),
        ("REDIS_URL", "redis://:hunter2@redis/0?health_check_interval=x", "has a query option"),
        ("REDIS_URL", "redis://:hunter2@redis/cache", "must name its database by number"),
        ("BROKER_URL", "redis://:hunter2@redis:6379/zero", "must name its database by number"),
    ],
)
def test_a_url_that_would_fail_later_is_refused_at_start_without_its_password(
    name: str, value: str, problem: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        Settings.from_env({f"SYNCWORKER_{name}": value})

    message = str(refused.value)
    assert message.startswith(f"SYNCWORKER_{name} {problem}")
    assert "hunter2" not in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "value", ["postgresql://sync@db/sync", "postgresql+psycopg://db/sync", "sqlite:////tmp/s.db"]
)
def test_the_installed_database_drivers_are_accepted(value: str) -> None:
    assert Settings.from_env({"SYNCWORKER_DATABASE_URL": value}).database_url == value


@pytest.mark.parametrize("value", ["127.0.0.1", "0.0.0.0", "::1", "metrics.internal", "worker"])  # noqa: S104
def test_the_metrics_address_is_an_ip_or_a_host_name(value: str) -> None:
    assert Settings.from_env({"SYNCWORKER_METRICS_ADDR": value}).metrics_addr == value


@pytest.mark.parametrize("value", ["not an address", "http://x", "a..b", "-x"])
def test_a_metrics_address_that_is_neither_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(InvalidValue, match="SYNCWORKER_METRICS_ADDR must be an IP address"):
        Settings.from_env({"SYNCWORKER_METRICS_ADDR": value})


def test_concurrency_is_left_to_the_pool_unless_configured() -> None:
    assert Settings.from_env({}).worker_concurrency is None
    assert Settings.from_env({"SYNCWORKER_CONCURRENCY": "12"}).worker_concurrency == 12
