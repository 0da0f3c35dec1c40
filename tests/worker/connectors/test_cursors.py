"""The shared cursors: marks, walks, stamp readers and unreadable stored cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.connectors.base import SyncTally
from worker.connectors.cursors import (
    EPOCH,
    INSTANT,
    Mark,
    MarkKeys,
    WalkCursor,
    WalkKeys,
    epoch,
    instant,
    utc_instant,
)
from worker.connectors.errors import RequestRejected

SECONDS = MarkKeys(EPOCH, "created_gte", "skip_ids")
INSTANTS = MarkKeys(INSTANT, "updated_at", "skip_ids")


def test_stamp_readers_accept_only_what_they_can_compare() -> None:
    assert instant("2024-06-01T12:00:00+02:00") == datetime(2024, 6, 1, 10, tzinfo=UTC)
    assert instant("2024-06-01T12:00:00") is None  # no offset: which zone is unknowable
    assert utc_instant("2024-06-01T12:00:00") == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert [epoch(v) for v in (1_700, "1700", True, "17.5")] == [1_700, 1_700, None, None]


def test_a_mark_holds_the_ids_at_its_stamp_and_covers_what_is_older() -> None:
    mark = Mark(INSTANTS, "2024-06-01T12:00:00+02:00", {"a"})
    assert mark.holds("a", "2024-06-01T10:00:00Z")  # the same instant, written in UTC
    assert not mark.holds("b", "2024-06-01T10:00:00Z")  # same second, new id: not stored yet
    assert mark.covers("b", "2024-06-01T09:59:59Z")  # older than the mark
    assert not mark.holds("b", "2024-06-01T09:59:59Z")  # but not at it
    assert not mark.covers("a", "2024-06-01T10:00:01Z")


def test_adding_raises_the_mark_or_notes_an_id_at_it_and_keeps_the_stamp_as_written() -> None:
    mark = Mark(INSTANTS)
    assert mark.add("a", "2024-06-01T12:00:00+02:00")
    assert mark.add("b", "2024-06-01T10:00:00Z")  # same instant: noted, the stamp kept
    assert not mark.add("b", "2024-06-01T10:00:00Z")
    assert not mark.add("c", "2024-01-01T00:00:00Z")
    assert mark.dump() == {"updated_at": "2024-06-01T12:00:00+02:00", "skip_ids": ["a", "b"]}


def test_numeric_ids_load_only_as_digits_and_sort_as_numbers() -> None:
    keys = MarkKeys(EPOCH, "modified", "skip_ids", numeric_ids=True)
    assert keys.load({"modified": 5, "skip_ids": ["100", "99"]}).sorted_ids() == ["99", "100"]
    with pytest.raises(TypeError, match="skip_ids is not a list of ids"):
        keys.load({"modified": 5, "skip_ids": ["abc"]})


def test_a_finished_walk_moves_the_mark_and_merges_ids_at_the_same_stamp() -> None:
    cursor = WalkCursor.start(WalkKeys(EPOCH))
    cursor.mark.add("a", 10)
    assert not cursor.take("a", 10) and not cursor.take("z", 9)  # stored by the last walk
    assert cursor.take("b", 10) and cursor.take("c", 10)
    cursor.page = "next"
    assert cursor.dump() == {
        "mark": 10,
        "mark_ids": ["a"],
        "run": 10,
        "run_ids": ["b", "c"],
        "page": "next",
    }
    cursor.finish()
    assert cursor.dump() == {"mark": 10, "mark_ids": ["a", "b", "c"]}


def test_an_unreadable_stored_walk_restarts_with_a_warning_naming_the_key() -> None:
    tally = SyncTally()
    stored = {"newest": "yesterday", "starting_after": "cus_1"}
    keys = WalkKeys(EPOCH, ("created_gte", "skip_ids"), ("newest", "newest_ids"), "starting_after")
    cursor = WalkCursor.restore(keys, stored, "customers", tally)
    assert cursor.dump() == {}
    assert tally.warnings == [
        "customers: stored cursor unreadable (newest is not an integer); synced from the start"
    ]


def test_only_a_stored_page_falls_back_to_the_mark_when_refused() -> None:
    # given a walk resumed from a crashed run's page, refused once
    tally, calls = SyncTally(), []

    def fetch() -> str:
        calls.append(cursor.page)
        if len(calls) == 1:
            raise RequestRejected("GET /v1/things: 400 Bad Request", status=400)
        return "page"

    cursor = WalkCursor.restore(WalkKeys(EPOCH), {"page": "stale"}, "things", tally)
    # when / then it lists again from the mark, with a warning
    assert cursor.fetch(fetch, tally, "things: gone") == "page"
    assert (calls, tally.warnings) == (["stale", None], ["things: gone"])
    # and a later page refused is the provider's error, not a resume problem
    cursor.page, calls[:] = "fresh", []
    with pytest.raises(RequestRejected):
        cursor.fetch(fetch, tally, "things: gone")
