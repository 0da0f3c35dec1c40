"""When each scheduled job last ran, kept in the database for the status overview."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import upsert
from models.schema import SchedulerMark


def mark(session: Session, name: str, *, now: datetime, **detail: Any) -> None:
    """Record that the job `name` ran at `now`, with a few figures of what it did."""
    upsert(
        session,
        SchedulerMark,
        [{"name": name, "at": now, "detail": detail}],
        keys=["name"],
        refresh=["at", "detail"],
    )


def marks(session: Session) -> dict[str, SchedulerMark]:
    """Every recorded mark by name."""
    return {m.name: m for m in session.scalars(select(SchedulerMark))}
