"""Storing synced records: values the database would refuse never fail a page.

Runs on SQLite and, when TEST_DATABASE_URL is set, on PostgreSQL, which is the one that
refuses NUL characters, NaN/Infinity and over-long ids.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.records import MAX_DATA_DEPTH, MAX_EXTERNAL_ID_CHARS, sanitized, store_page
from models.schema import SyncCursor, SyncedRecord
from tests.conftest import START, IntegrationFactory

Sessions = sessionmaker[Session]


def nested(levels: int) -> dict[str, Any]:
    data: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        data = {"child": data}
    return data


def stored_data(sessions: Sessions) -> dict[str, Any]:
    with sessions() as session:
        rows = session.execute(select(SyncedRecord.external_id, SyncedRecord.data))
        return {external_id: data for external_id, data in rows}


def store(
    sessions: Sessions, integration_id: Any, records: list[tuple[str, Any]], **kw: Any
) -> Any:
    warnings: list[str] = []
    with sessions() as session, session.begin():
        stored = store_page(
            session,
            integration_id=integration_id,
            run_id=None,
            stream="customers",
            records=records,
            cursor=kw.get("cursor"),
            now=START,
            warn=warnings.append,
        )
    return stored, warnings


def test_records_the_database_would_refuse_are_cleaned_or_skipped_and_the_page_is_stored(
    sessions: Sessions, make_integration: IntegrationFactory
) -> None:
    # given: a page with good records among ones PostgreSQL refuses as they are
    integration = make_integration()
    records = [
        ("cus_good", {"email": "a@example.com"}),
        ("cus_nul_text", {"name": "Ac\x00me", "tags": ["x\x00y"]}),
        ("cus_nan", {"balance": math.nan, "limit": math.inf, "floor": -math.inf}),
        ("cus_surrogate", {"name": "bad \ud800 text"}),
        ("cus_nul\x00id", {"email": "b@example.com"}),
        ("c" * (MAX_EXTERNAL_ID_CHARS + 1), {"email": "c@example.com"}),
        ("cus_deep", nested(2_000)),  # past what JSON encoders recurse
        ("cus_huge", {"amount": 10**5_000}),  # past what JSON encoders write
    ]

    # when
    stored, warnings = store(sessions, integration.id, records)

    # then: every storable record is in, cleaned; the rest skipped, each kind named once
    assert stored == 4
    assert stored_data(sessions) == {
        "cus_good": {"email": "a@example.com"},
        "cus_nul_text": {"name": "Acme", "tags": ["xy"]},
        "cus_nan": {"balance": None, "limit": None, "floor": None},
        "cus_surrogate": {"name": "bad ? text"},
    }
    assert sorted(warnings) == [
        "customers: cleaned: NUL characters removed (1 record)",
        "customers: cleaned: NaN or Infinity stored as null (1 record)",
        "customers: cleaned: text that is not UTF-8 replaced (1 record)",
        "customers: skipped: data holds a number wider than 4000 bits (1 record)",
        f"customers: skipped: data is nested deeper than {MAX_DATA_DEPTH} levels (1 record)",
        "customers: skipped: id contains a NUL character (1 record)",
        f"customers: skipped: id longer than {MAX_EXTERNAL_ID_CHARS} characters (1 record)",
    ]


def test_a_cursor_holding_a_refused_value_is_stored_cleaned_so_the_stream_moves_on(
    sessions: Sessions, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    cursor = {"created_gte": 1_700_000_060, "skip_ids": ["cus_nul\x00id"]}

    stored, warnings = store(sessions, integration.id, [], cursor=cursor)

    assert stored == 0
    with sessions() as session:
        assert session.scalars(select(SyncCursor.cursor)).one() == {
            "created_gte": 1_700_000_060,
            "skip_ids": ["cus_nulid"],
        }
    assert warnings == ["customers: cleaned cursor: NUL characters removed (1 record)"]


def test_a_clean_page_is_stored_as_is_without_warnings(
    sessions: Sessions, make_integration: IntegrationFactory
) -> None:
    integration = make_integration()
    data = {"name": "Zoë", "nested": nested(MAX_DATA_DEPTH - 2), "ratio": 0.5, "ok": True}

    stored, warnings = store(sessions, integration.id, [("cus_1", data)])

    assert (stored, warnings) == (1, [])
    assert stored_data(sessions) == {"cus_1": data}


@pytest.mark.parametrize("levels", [10_000, 200_000])
def test_sanitizing_hostile_nesting_refuses_it_without_exhausting_the_stack(levels: int) -> None:
    data: list[Any] = []
    for _ in range(levels):
        data = [data]

    with pytest.raises(ValueError, match="nested deeper than"):
        sanitized(data)
