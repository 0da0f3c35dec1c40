"""Resync (SPEC §11): cursors reset or rewound, stored records kept, refused mid-sync."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.errors import SyncInProgress
from models.records import store_page
from models.resync import resync, rewind
from models.schema import Integration, SyncCursor, SyncedRecord, SyncRun
from tests.conftest import IntegrationFactory

Sessions = sessionmaker[Session]
BACK_TO = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cursor", "rewound"),
    [
        ({"last_date": "2026-03-12"}, {"last_date": "2026-03-09"}),
        ({"last_date": "2026-03-01"}, {"last_date": "2026-03-01"}),  # never forward
        (
            {"mark": 1_773_500_000_000, "mark_ids": ["a"], "page": "t"},
            {"mark": int(BACK_TO.timestamp() * 1000), "mark_ids": []},
        ),
        (
            {"mark": "1773500000", "mark_ids": []},
            {"mark": int(BACK_TO.timestamp()), "mark_ids": []},
        ),
        ({"mark": 1_000, "mark_ids": []}, {"mark": 1_000, "mark_ids": []}),
        ({"starting_after": "cus_1"}, None),  # a shape it cannot move: from scratch
    ],
)
def test_a_backfill_rewinds_date_and_epoch_cursors_to_the_window_start(
    cursor: dict[str, object], rewound: dict[str, object] | None
) -> None:
    assert rewind(cursor, BACK_TO) == rewound


def _stored(sessions: Sessions, integration: Integration, clock: ManualClock) -> None:
    with sessions() as session, session.begin():
        for stream in ("customers", "charges"):
            store_page(
                session,
                integration_id=integration.id,
                run_id=None,
                stream=stream,
                records=[(f"{stream}-1", {"n": 1})],
                cursor={"last_date": "2026-03-01"},
                now=clock.now(),
            )


def _resync(sessions: Sessions, integration: Integration, clock: ManualClock, **kwargs: object):  # type: ignore[no-untyped-def]
    with sessions() as session, session.begin():
        locked = session.get_one(Integration, integration.id, with_for_update=True)
        return resync(session, locked, now=clock.now(), **kwargs)  # type: ignore[arg-type]


def test_a_resync_drops_the_chosen_streams_cursor_and_keeps_every_record(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration()
    _stored(sessions, integration, clock)

    done = _resync(sessions, integration, clock, streams=["customers"])

    assert done.from_scratch == ("customers",)
    with sessions() as session:
        left = session.scalars(select(SyncCursor.stream)).all()
        records = session.scalar(select(func.count()).select_from(SyncedRecord))
    assert left == ["charges"] and records == 2


def test_a_resync_is_refused_while_a_sync_runs_and_allowed_once_its_lease_lapsed(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration()
    _stored(sessions, integration, clock)
    with sessions() as session, session.begin():
        session.add(
            SyncRun(
                integration_id=integration.id,
                started_at=clock.now(),
                lease_expires_at=clock.now() + timedelta(seconds=90),
            )
        )

    with pytest.raises(SyncInProgress, match="is syncing now"):
        _resync(sessions, integration, clock, streams=["customers"])
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(SyncCursor)) == 2

    clock.advance(timedelta(seconds=90))  # the lease lapsed exactly now: the run is dead
    assert _resync(sessions, integration, clock, streams=["customers"]).from_scratch


def test_a_backfill_rewinds_the_stored_cursor_by_the_lookback(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    integration = make_integration()
    with sessions() as session, session.begin():
        session.add(
            SyncCursor(
                integration_id=integration.id,
                stream="sales",
                cursor={"last_date": clock.now().date().isoformat()},
                updated_at=clock.now(),
            )
        )

    done = _resync(
        sessions, integration, clock, streams=["sales", "never_synced"], lookback=timedelta(days=7)
    )

    assert done.rewound == ("sales",) and done.from_scratch == ()
    with sessions() as session:
        cursor = session.get_one(SyncCursor, (integration.id, "sales")).cursor
    assert cursor == {"last_date": (clock.now() - timedelta(days=8)).date().isoformat()}
