"""Per-integration sync leases: one integration never syncs twice at once.

A lease is a Redis key (`SET NX PX`) holding the run's token, renewed while the
sync runs by one background thread per process and released by compare-and-
delete, so a lease outlives neither its worker nor its owner. The SyncRun row's
`lease_expires_at` is renewed alongside: the reaper trusts the row, so a run
whose worker died is found once the row's lease lapses. Without Redis (the
embedded default: one process) an in-process table stands in for the key.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

import structlog
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from models.schema import SyncRun
from worker import redis_keys

log = structlog.get_logger(__name__)


# Take the key if it is free, or held by an earlier attempt of the same task: its token is
# "<owner><attempt>/<random>" with our owner prefix ARGV[3] (never empty) and an attempt
# below ours, ARGV[4]. That attempt is over (its task is being retried): the retry is us.
_ACQUIRE: Final = """
local held = redis.call('get', KEYS[1])
local earlier = false
if held and string.sub(held, 1, string.len(ARGV[3])) == ARGV[3] then
  local attempt = tonumber(string.match(string.sub(held, string.len(ARGV[3]) + 1), '^(%d+)/'))
  earlier = attempt ~= nil and attempt < tonumber(ARGV[4])
end
if (not held) or earlier then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Extend only if we still own the key; delete only if we still own it.
_RENEW: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaseStore(Protocol):
    """Where leases live: Redis in production, a dict in one process."""

    def acquire(
        self, integration_id: str, token: str, ttl_ms: int, *, owner: str, attempt: int
    ) -> bool:
        """Take the lease if free, or held by `owner` (never empty) at an earlier attempt."""

    def renew(self, integration_id: str, token: str, ttl_ms: int) -> bool: ...
    def release(self, integration_id: str, token: str) -> None: ...


class RedisLeaseStore:
    """Leases as Redis keys, shared by every worker process on every machine."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    def acquire(
        self, integration_id: str, token: str, ttl_ms: int, *, owner: str, attempt: int
    ) -> bool:
        key = redis_keys.lease(integration_id)
        return bool(self._acquire(keys=[key], args=[token, ttl_ms, owner, attempt]))

    def renew(self, integration_id: str, token: str, ttl_ms: int) -> bool:
        return bool(self._renew(keys=[redis_keys.lease(integration_id)], args=[token, ttl_ms]))

    def release(self, integration_id: str, token: str) -> None:
        self._release(keys=[redis_keys.lease(integration_id)], args=[token])


class LocalLeaseStore:
    """Leases in this process only; correct when one process runs every sync."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._leases: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def acquire(
        self, integration_id: str, token: str, ttl_ms: int, *, owner: str, attempt: int
    ) -> bool:
        with self._lock:
            held = self._leases.get(integration_id)
            live = held is not None and held[1] > self._monotonic()
            if held and live and not _earlier_attempt(held[0], owner, attempt):
                return False
            self._leases[integration_id] = (token, self._monotonic() + ttl_ms / 1000)
            return True

    def renew(self, integration_id: str, token: str, ttl_ms: int) -> bool:
        with self._lock:
            held = self._leases.get(integration_id)
            if not held or held[0] != token:
                return False
            self._leases[integration_id] = (token, self._monotonic() + ttl_ms / 1000)
            return True

    def release(self, integration_id: str, token: str) -> None:
        with self._lock:
            if self._leases.get(integration_id, ("",))[0] == token:
                del self._leases[integration_id]


def _earlier_attempt(token: str, owner: str, attempt: int) -> bool:
    """Whether `token` was taken by `owner` at an attempt before `attempt` (as _ACQUIRE)."""
    if not token.startswith(owner):
        return False
    held, _, _ = token.removeprefix(owner).partition("/")
    return held.isdigit() and int(held) < attempt


@dataclass
class _Held:
    token: str
    run_id: uuid.UUID | None = None
    deadline: float | None = None  # monotonic; past it the lease is no longer renewed
    overdue: bool = False  # seen past its deadline (on_overdue was called once)


# Told the run id of a sync found past its deadline, once, from the renewal thread.
OnOverdue = Callable[[uuid.UUID], object]


class Leases:
    """Takes, keeps and gives back sync leases; one renewal thread per process."""

    def __init__(
        self,
        store: LeaseStore,
        sessions: sessionmaker[Session],
        *,
        ttl: timedelta,
        app_ttl: timedelta,
        now: Callable[[], datetime],
        on_overdue: OnOverdue | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._on_overdue = on_overdue
        self._monotonic = monotonic
        self._sessions = sessions
        self._ttl_ms = int(ttl.total_seconds() * 1000)
        self._app_ttl = app_ttl
        self._now = now
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def app_ttl(self) -> timedelta:
        """The lease's length on the app clock, as written to SyncRun rows."""
        return self._app_ttl

    def acquire(
        self, integration_id: str, *, task_id: str | None = None, attempt: int = 0
    ) -> str | None:
        """Take the integration's lease; its token, or None if someone else holds it.

        The token names the task and attempt: a retry of the same task (a later attempt)
        takes over the lease an earlier attempt could not give back (its Redis call failed,
        its connection was lost), while a duplicate delivery of one attempt never does.
        Raises RedisError when the store cannot be reached.
        """
        owner = f"{task_id}/" if task_id else f"{uuid.uuid4().hex}/"
        token = f"{owner}{attempt}/{uuid.uuid4().hex}"
        taken = self._store.acquire(
            integration_id, token, self._ttl_ms, owner=owner, attempt=attempt
        )
        if not taken:
            return None
        with self._lock:
            self._held[integration_id] = _Held(token)
        self._ensure_renewer()
        return token

    def attach_run(
        self, integration_id: str, run_id: uuid.UUID, *, deadline: float | None = None
    ) -> None:
        """Renew this run's row along with the lease from now on, until `deadline`.

        Past its deadline (on the `monotonic` clock) a sync's lease is renewed no more, and
        `on_overdue` hears its run id: a sync stuck where it cannot notice its deadline
        (the threads pool enforces no time limit) is closed all the same, and its lease
        lapses instead of being kept alive forever.
        """
        with self._lock:
            held = self._held.get(integration_id)
            if held is not None:
                held.run_id = run_id
                held.deadline = deadline

    def release(self, integration_id: str, token: str) -> None:
        with self._lock:
            if self._holds_locked(integration_id, token):
                del self._held[integration_id]
        try:
            self._store.release(integration_id, token)
        except RedisError as exc:  # the key expires on its own; nothing is lost
            log.warning("lease.release_failed", integration_id=integration_id, error=str(exc))

    def renew_all(self) -> int:
        """Extend every lease this process holds, in the store and on the SyncRun rows.

        Leases past their deadline are left to lapse, and their runs reported overdue.
        """
        for run_id in self._newly_overdue():
            self._report_overdue(run_id)
        with self._lock:
            held = {key: _Held(h.token, h.run_id) for key, h in self._held.items() if not h.overdue}
        for integration_id, lease in held.items():
            renewed = self._store.renew(integration_id, lease.token, self._ttl_ms)
            # A sync that finished since the copy above released its lease: not a loss.
            if not renewed and self._holds(integration_id, lease.token):
                log.warning("lease.lost", integration_id=integration_id)
        run_ids = [lease.run_id for lease in held.values() if lease.run_id is not None]
        if run_ids:
            with self._sessions() as session, session.begin():
                session.execute(
                    update(SyncRun)
                    .where(SyncRun.id.in_(run_ids), SyncRun.finished_at.is_(None))
                    .values(lease_expires_at=self._now() + self._app_ttl)
                    .execution_options(synchronize_session=False)
                )
        return len(held)

    def _newly_overdue(self) -> list[uuid.UUID]:
        """Mark the leases that just passed their deadline; their run ids."""
        now = self._monotonic()
        found = []
        with self._lock:
            for held in self._held.values():
                if held.deadline is not None and now >= held.deadline and not held.overdue:
                    held.overdue = True
                    if held.run_id is not None:
                        found.append(held.run_id)
        return found

    def _report_overdue(self, run_id: uuid.UUID) -> None:
        log.error("lease.overdue", run_id=str(run_id))
        if self._on_overdue is None:
            return
        try:
            self._on_overdue(run_id)
        except Exception as exc:  # noqa: BLE001 - renewing the other leases comes first
            log.error("lease.overdue_failed", run_id=str(run_id), error=type(exc).__name__)

    def _holds(self, integration_id: str, token: str) -> bool:
        with self._lock:
            return self._holds_locked(integration_id, token)

    def _holds_locked(self, integration_id: str, token: str) -> bool:
        held = self._held.get(integration_id)
        return held is not None and held.token == token

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _ensure_renewer(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._renew_loop, name="lease-renewer", daemon=True
            )
            self._thread.start()

    def _renew_loop(self) -> None:
        interval = self._ttl_ms / 3000  # renew every third of the TTL: two renewals may fail
        while not self._stop.wait(interval):
            try:
                self.renew_all()
            except Exception as exc:  # noqa: BLE001 - the renewer must outlive a bad cycle
                log.error("lease.renew_failed", error=str(exc), error_type=type(exc).__name__)
