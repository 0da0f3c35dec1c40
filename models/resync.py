"""Resync: restart a stream, or all, without deleting stored data (SPEC §11).

From scratch, a stream's cursor is dropped: its next sync reads it as a first sync
would, and the records it brings are upserted over the stored ones (nothing is deleted,
nothing is stored twice). A backfill only rewinds the cursor by the provider's lookback
window, for report data that arrives or is restated late (App Store Connect's daily
reports, Google Play's voided purchases):

    {"last_date": "YYYY-MM-DD"}         the day before the window (App Store Connect)
    {"mark": epoch, "mark_ids": [...]}  the window's start, same unit (Google Play)

A walk under way (`run`, `page`) is dropped with the rewind. Refused while a sync of the
integration runs: its cursor writes would race the reset.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.errors import SyncInProgress
from models.schema import Integration, SyncCursor, SyncRun

# Epoch stamps above this are milliseconds (1e11 seconds is the year 5138).
MILLISECONDS_FROM: Final = 10**11


@dataclass(frozen=True)
class Resynced:
    """What a resync did: the streams restarted from scratch, and those rewound."""

    from_scratch: tuple[str, ...]
    rewound: tuple[str, ...]


def running_run(session: Session, integration_id: uuid.UUID, *, now: datetime) -> uuid.UUID | None:
    """The id of the integration's run in progress (its lease still live), if any."""
    return session.scalars(
        select(SyncRun.id).where(
            SyncRun.integration_id == integration_id,
            SyncRun.finished_at.is_(None),
            SyncRun.lease_expires_at > now,
        )
    ).first()


def resync(
    session: Session,
    integration: Integration,
    *,
    streams: Sequence[str],
    now: datetime,
    lookback: timedelta | None = None,
) -> Resynced:
    """Reset (or, with `lookback`, rewind) the cursors of `streams` of a locked integration.

    Raises SyncInProgress while one of its syncs runs.
    """
    run = running_run(session, integration.id, now=now)
    if run is not None:
        raise SyncInProgress(integration.id, integration.status, run)
    if lookback is None:
        session.execute(
            delete(SyncCursor).where(
                SyncCursor.integration_id == integration.id, SyncCursor.stream.in_(streams)
            )
        )
        return Resynced(tuple(streams), ())
    rewound, scratch = [], []
    for stream in streams:
        cursor = session.get(SyncCursor, (integration.id, stream), with_for_update=True)
        if cursor is None:
            continue  # never synced: its next sync starts from scratch anyway
        earlier = rewind(cursor.cursor, now - lookback)
        if earlier is None:
            session.delete(cursor)
            scratch.append(stream)
        else:
            cursor.cursor = earlier
            cursor.updated_at = now
            rewound.append(stream)
    return Resynced(tuple(scratch), tuple(rewound))


def rewind(cursor: dict[str, Any], back_to: datetime) -> dict[str, Any] | None:
    """The cursor moved back to `back_to` (never forward); None for a shape it cannot move."""
    last = cursor.get("last_date")
    if isinstance(last, str):
        day_before = (back_to - timedelta(days=1)).date().isoformat()
        return {**cursor, "last_date": min(last, day_before)}
    mark = cursor.get("mark")
    if isinstance(mark, str) and mark.isdigit():
        mark = int(mark)
    if isinstance(mark, int) and not isinstance(mark, bool):
        seconds = back_to.timestamp()
        stamp = int(seconds * 1000) if mark >= MILLISECONDS_FROM else int(seconds)
        return {"mark": min(mark, stamp), "mark_ids": []}
    return None
