"""Every Redis key this project writes, named in one place.

All live under `syncworker:` so they never collide with the broker's own keys when one
Redis serves both, and an operator can find them (`SCAN MATCH syncworker:*`).
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "syncworker:"


def lease(integration_id: str) -> str:
    """The sync lease of one integration: its holder's token, with a TTL (worker.lease)."""
    return f"{NAMESPACE}lease:{integration_id}"


def budget(bucket: str) -> str:
    """One customer key's request token bucket at its provider (worker.budget)."""
    return f"{NAMESPACE}budget:{bucket}"


def deliveries(task_id: str, retries: int) -> str:
    """How often one attempt of a task was delivered, to drop a poison message (worker.tasks)."""
    return f"{NAMESPACE}deliveries:{task_id}:{retries}"
