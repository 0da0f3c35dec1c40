"""Report backfills: the report providers' cursors rewound daily by their lookback window."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models.clock import ManualClock
from models.schema import SyncCursor, SyncRun
from scheduler.backfill import backfill_reports
from scheduler.providers import DEFAULT_POLICIES
from tests.conftest import START, IntegrationFactory

Sessions = sessionmaker[Session]


def _cursor(sessions: Sessions, integration_id: uuid.UUID, cursor: dict[str, Any]) -> None:
    with sessions() as session, session.begin():
        session.add(
            SyncCursor(
                integration_id=integration_id, stream="sales", cursor=cursor, updated_at=START
            )
        )


def _stored(sessions: Sessions, integration_id: uuid.UUID) -> dict[str, Any]:
    with sessions() as session:
        return dict(session.get_one(SyncCursor, (integration_id, "sales")).cursor)


def test_report_providers_cursors_are_rewound_by_their_lookback_and_others_left_alone(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    today = clock.now().date().isoformat()
    app_store = make_integration(provider="app_store_connect")
    stripe = make_integration(provider="stripe")
    paused = make_integration(provider="app_store_connect", status="inactive")
    for integration in (app_store, stripe, paused):
        _cursor(sessions, integration.id, {"last_date": today})

    with sessions() as session, session.begin():
        batch = backfill_reports(session, DEFAULT_POLICIES, now=clock.now())

    assert batch.rewound == [app_store.id] and batch.last is None
    week_back = (clock.now() - timedelta(days=8)).date().isoformat()  # re-read from 7 days ago
    assert _stored(sessions, app_store.id) == {"last_date": week_back}
    assert _stored(sessions, stripe.id) == {"last_date": today}
    assert _stored(sessions, paused.id) == {"last_date": today}


def test_an_integration_syncing_now_is_left_for_the_next_day_and_batches_go_on(
    sessions: Sessions, make_integration: IntegrationFactory, clock: ManualClock
) -> None:
    today = clock.now().date().isoformat()
    first, second = sorted(
        (make_integration(provider="app_store_connect") for _ in range(2)), key=lambda i: i.id
    )
    for integration in (first, second):
        _cursor(sessions, integration.id, {"last_date": today})
    with sessions() as session, session.begin():
        session.add(
            SyncRun(
                integration_id=first.id,
                started_at=clock.now(),
                lease_expires_at=clock.now() + timedelta(seconds=90),
            )
        )

    with sessions() as session, session.begin():
        batch = backfill_reports(session, DEFAULT_POLICIES, now=clock.now(), limit=1)
    assert batch.rewound == [] and batch.last == first.id
    with sessions() as session, session.begin():
        batch = backfill_reports(session, DEFAULT_POLICIES, now=clock.now(), after=batch.last)

    assert batch.rewound == [second.id]
    assert _stored(sessions, first.id) == {"last_date": today}
