"""The one retry policy: exponential backoff with jitter, capped, never below a server's ask.

Three things retry, each with its own numbers and this one formula:

- a request inside a sync (`worker.connectors.http`): 0.5 s doubling to 5 s, in-process;
- a sync task after a transient failure (`worker.tasks`): 15 s doubling to
  SYNCWORKER_MAX_RETRY_DELAY, through the broker;
- a status-change event a sink refused (`worker.events`): 30 s doubling to 6 hours.

The wait for retry `n` (0 for the first) is drawn from
`[floor * ceiling, ceiling]` with `ceiling = min(cap, base * 2**n)`: `floor` 0 is
"full jitter" (spreads a herd of retries best), 0.5 "equal jitter" (never retries
too soon). A `Retry-After` the server sent raises the wait to at least that, and
the cap still holds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# 2**32 times any base is past every cap; bounding the exponent keeps the arithmetic finite
# for something retried forever (an event whose receiver is gone).
MAX_EXPONENT: Final = 32


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: how long to wait before retry `n`."""

    base: float  # seconds: the first retry's ceiling
    cap: float  # seconds: no wait is longer
    floor: float = 0.0  # the least fraction of the ceiling waited: 0 full, 0.5 equal jitter

    def delay(
        self,
        retry: int,
        *,
        at_least: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds before retry `retry` (0-based), never below `at_least` nor above the cap."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(retry, 0), MAX_EXPONENT))
        jittered = ceiling * (self.floor + (1.0 - self.floor) * rand())
        return min(self.cap, max(at_least or 0.0, jittered))
