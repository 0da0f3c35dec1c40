"""A bad value never stalls a stream: stamps outside a sane range never move a cursor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from fakes.hostile import ABSURD_IDS, START, FakeHostile
from fakes.stripe import FakeStripe
from models.status import SyncOutcome
from tests.worker.connectors.conftest import RecordingSink
from worker.connectors.base import SyncContext, run_sync
from worker.connectors.cursors import EPOCH, INSTANT, UTC_DATE, Mark, MarkKeys, Stamps, epoch
from worker.connectors.stamps import checking_stamps
from worker.connectors.stripe import StripeConnector

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamps", "good", "absurd"),
    [
        (EPOCH, 1_767_000_000, 99_999_999_999_999_999_999_999),  # seconds
        (EPOCH, 1_767_000_000_000, 4_102_444_800_000),  # milliseconds; 2100 is absurd
        (EPOCH, 1_767_000_000, 10**400),  # too large for a float: no OverflowError
        (INSTANT, "2025-12-31T10:00:00+00:00", "9999-12-31T00:00:00+00:00"),
        (UTC_DATE, "2025-12-31T10:00:00", "2031-01-01T00:00:00"),
    ],
)
def test_a_stamp_past_now_plus_a_day_never_moves_a_mark(
    stamps: Stamps[Any], good: int | str, absurd: int | str
) -> None:
    mark: Mark[Any] = Mark(MarkKeys(stamps))
    with checking_stamps(NOW) as check:
        assert mark.add("good", good)
        assert not mark.add("absurd", absurd)
        assert not mark.covers("absurd", absurd)  # so the record is still stored

    assert mark.at == good and mark.ids == {"good"}
    assert check.ignored == 1


@pytest.mark.parametrize("text", ["9" * 5000, "\u00b2", "12\u0663"])
def test_a_digit_string_no_int64_can_hold_is_no_stamp_rather_than_an_error(text: str) -> None:
    # more digits than int() takes; digits to str.isdigit that int() refuses or misreads
    assert epoch(text) is None
    assert epoch("1767000000") == 1_767_000_000


def test_an_absurd_created_is_stored_but_leaves_the_cursor_where_it_was(
    make_context: Callable[..., SyncContext],
) -> None:
    # given a provider sending created 99999999999999999999999 among healthy objects
    sink = RecordingSink()
    with FakeHostile() as hostile, StripeConnector(base_url=hostile.url_for("absurd")) as stripe:
        ctx = make_context({"secret_key": "sk_test_x"}, filters={"objects": ["customers"]})
        result = run_sync(stripe, ctx, sink)

    # then the record is stored, the cursor is the newest sane stamp, and a warning says so
    assert ("customers", ABSURD_IDS[0]) in sink.records
    assert sink.cursors["customers"]["events"]["created_gte"] == START + 3
    assert result.outcome is SyncOutcome.SUCCEEDED_WITH_WARNINGS
    assert any(
        "customers: 1 records had a date outside the sane range" in w for w in result.warnings
    )


def test_a_stored_absurd_cursor_restarts_the_stream_instead_of_stalling_it(
    fake_stripe: FakeStripe,
    make_stripe: Callable[..., StripeConnector],
    make_context: Callable[..., SyncContext],
) -> None:
    # given a cursor stored by an earlier version from an absurd record
    fake_stripe.add_account("sk_test_stuck", customers=5)
    absurd = 99_999_999_999_999_999_999_999
    stuck = {"customers": {"events": {"created_gte": absurd, "checked": 1_767_225_600}}}
    ctx = make_context({"secret_key": "sk_test_stuck"}, cursors=stuck)
    sink = RecordingSink()

    result = run_sync(make_stripe(), replace(ctx, filters={"objects": ["customers"]}), sink)

    assert result.records == 5
    assert "(created_gte is outside the sane range); listed again in full" in result.warnings[0]
    assert "created[gte]" not in fake_stripe.requests_to("/v1/customers")[0].query
    assert fake_stripe.requests_to("/v1/events") == []
