"""What every benchmark needs beside its measurements: stopping when a check fails, waiting."""

from __future__ import annotations

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
