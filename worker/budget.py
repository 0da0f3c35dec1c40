"""Request budgets per provider key, shared by every worker process and machine.

Celery's `rate_limit` counts per worker process, so adding workers would get a
customer's key throttled by the provider. A token bucket in Redis (one Lua call,
atomic) holds the budget cluster-wide instead: a caller reserves a token and is
told how long to wait for it. Without Redis (the embedded default, one process)
the same bucket runs in memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

from redis import Redis

from worker import redis_keys

# Refill by elapsed time, then take one token; a negative balance is a reservation the
# caller pays for by waiting. State expires once the bucket would be full again. The time
# is the server's, read inside the script: one clock for every process, in one round trip
# (Redis 5+ replicates a script's effects, so reading TIME before writing is allowed).
_RESERVE: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('time')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('hmget', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate) - 1
redis.call('hset', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('pexpire', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
"""


class Budget(Protocol):
    """Reserves one request from a key's bucket; returns the seconds to wait before sending."""

    def reserve(self, key: str, rate_per_s: float, burst: int) -> float: ...


class RedisBudget:
    """Token buckets in Redis; the time comes from the Redis server, one clock for all."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)

    def reserve(self, key: str, rate_per_s: float, burst: int) -> float:
        wait = self._reserve(keys=[redis_keys.budget(key)], args=[rate_per_s, burst])
        return float(wait)


class LocalBudget:
    """Token buckets in this process's memory."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def reserve(self, key: str, rate_per_s: float, burst: int) -> float:
        with self._lock:
            now = self._monotonic()
            tokens, at = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + (now - at) * rate_per_s) - 1
            self._buckets[key] = (tokens, now)
        return 0.0 if tokens >= 0 else -tokens / rate_per_s
