"""When each scheduled job last ran, kept in the database for the overview and liveness.

Beside the last run, each mark counts its runs and its missed runs (SPEC §11, beat
liveness): when a job expected every `every` comes back after a gap of several
periods, the periods it skipped are counted as missed (a gap under twice the period
is on time: beat and task latency jitter). Expected runs are runs plus missed.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import upsert
from models.schema import SchedulerMark


def mark(
    session: Session, name: str, *, now: datetime, every: timedelta | None = None, **detail: Any
) -> None:
    """Record that the job `name` ran at `now`, with a few figures of what it did.

    `every` is how often the job is expected (in the app clock's time); with it, the runs
    it skipped since its last recorded run are counted as missed.
    """
    existing = session.get(SchedulerMark, name, with_for_update=True)
    if existing is None:
        # An upsert: a job's first two runs may race to create its mark (two workers).
        first = {"name": name, "at": now, "detail": detail, "runs": 1, "missed": 0}
        first["every_s"] = every.total_seconds() if every else None
        upsert(session, SchedulerMark, [first], keys=["name"], refresh=["at", "detail"])
        return
    existing.missed += missed_between(existing.at, now, every)
    existing.runs += 1
    existing.at = now
    existing.detail = detail
    existing.every_s = every.total_seconds() if every else existing.every_s


def missed_between(last: datetime, now: datetime, every: timedelta | None) -> int:
    """Runs expected every `every` that did not happen between `last` and `now`."""
    if every is None or every <= timedelta(0) or now <= last:
        return 0
    return max(int((now - last) / every) - 1, 0)


def marks(session: Session) -> dict[str, SchedulerMark]:
    """Every recorded mark by name."""
    return {m.name: m for m in session.scalars(select(SchedulerMark))}
