"""How long and how far one sync may go: a wall-clock deadline, a page budget, a moving cursor.

A hostile or broken provider can page forever (`has_more: true` with the same
cursor), or slowly (a new cursor on every page, each page dribbled out). Every
sync therefore carries `SyncLimits` (in its `SyncContext`, from the settings), and
`worker.connectors.base.run_sync` binds a `SyncBudget` for the sync's duration
(`bounded`). The shared HTTP layer spends from it before every request, so every
connector is bounded the same way without a line of its own:

- past the deadline, `SyncDeadlineExceeded`; each request's own total deadline is
  also clipped to what is left of the sync's;
- past `max_pages` requests, `PageBudgetExceeded`;
- a GET of exactly the URL (path and query) already fetched in this sync,
  `PaginationStalled`: a pagination cursor or next link that did not move.

Outside a sync (validating credentials, a CLI probe) nothing is bound and only the
per-request limits of `worker.connectors.http.HttpOptions` apply.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

from worker.connectors.errors import PageBudgetExceeded, PaginationStalled, SyncDeadlineExceeded

# Below the task's 300 s hard time limit (SYNCWORKER_TASK_TIME_LIMIT), so a sync ends on its
# own, classified and with its pages stored, before Celery would kill it.
DEFAULT_DEADLINE_S: Final = 240.0
# 5,000 requests of up to 100-250 objects is a backfill of 0.5-1.25 M objects per sync; the
# stored cursors let the next sync carry on. A provider asking for more is looping.
DEFAULT_MAX_PAGES: Final = 5_000


@dataclass(frozen=True)
class SyncLimits:
    """The limits of one sync (SYNCWORKER_SYNC_DEADLINE and SYNCWORKER_SYNC_MAX_PAGES)."""

    deadline_s: float = DEFAULT_DEADLINE_S
    max_pages: int = DEFAULT_MAX_PAGES
    monotonic: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)


class SyncBudget:
    """What one sync has spent of its limits so far (one per sync, one thread)."""

    def __init__(self, limits: SyncLimits) -> None:
        self.limits = limits
        self.started = limits.monotonic()
        self.pages = 0
        self._fetched: set[bytes] = set()

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once past it)."""
        return self.limits.deadline_s - (self.limits.monotonic() - self.started)

    def check_deadline(self, endpoint: str) -> float:
        """The seconds left, or `SyncDeadlineExceeded` naming the endpoint and the limit."""
        left = self.remaining()
        if left <= 0:
            raise SyncDeadlineExceeded(
                f"{endpoint}: the sync reached its deadline of {self.limits.deadline_s:g} s "
                "(SYNCWORKER_SYNC_DEADLINE)"
            )
        return left

    def spend(self, method: str, endpoint: str, url: str) -> None:
        """Count one request; refuse it past the budget or when it repeats a fetched GET."""
        if self.pages >= self.limits.max_pages:
            raise PageBudgetExceeded(
                f"{endpoint}: the sync made its budget of {self.limits.max_pages} requests "
                "(SYNCWORKER_SYNC_MAX_PAGES)"
            )
        self.pages += 1
        if method != "GET":
            return
        # A digest, not the URL: a query may carry a signature or a token.
        seen = hashlib.blake2b(url.encode(), digest_size=16).digest()
        if seen in self._fetched:
            raise PaginationStalled(
                f"{endpoint}: asked for the same page twice in one sync; "
                "the provider's pagination cursor did not move"
            )
        self._fetched.add(seen)


_BUDGET: ContextVar[SyncBudget | None] = ContextVar("syncworker_sync_budget", default=None)


@contextmanager
def bounded(limits: SyncLimits) -> Iterator[SyncBudget]:
    """Bind a fresh budget for `limits` to the requests made in this context (one sync)."""
    budget = SyncBudget(limits)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def current_budget() -> SyncBudget | None:
    """The budget of the sync running in this context, if any."""
    return _BUDGET.get()
