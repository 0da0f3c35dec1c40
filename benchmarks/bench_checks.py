"""What every benchmark needs beside its measurements: its service arguments, stopping when
a check fails, waiting."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable


def require(condition: bool, message: str) -> None:
    """Stop the benchmark when it would measure something other than it claims."""
    if not condition:
        raise SystemExit(f"benchmark check failed: {message}")


def wait_until(
    condition: Callable[[], bool], *, what: str, timeout: float, poll: float = 0.01
) -> None:
    """Poll `condition` every `poll` seconds; stop the benchmark after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark timed out waiting for {what}")
        time.sleep(poll)


def service_arguments(
    parser: argparse.ArgumentParser, *, database_url: str, redis_url: str
) -> None:
    """`--database-url` and `--redis-url`, defaulting to BENCH_DATABASE_URL / BENCH_REDIS_URL."""
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", database_url)
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", redis_url))
