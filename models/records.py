"""Synced records and cursors: what a sync brings in, stored so a re-run never duplicates.

A page of records and the stream's cursor after it are stored in one
transaction, so a crash between pages resumes from the last stored page with
nothing lost and nothing twice.

What a provider sends is checked before the insert, on every backend alike: PostgreSQL
refuses a NUL character in text or JSON, NaN and Infinity in JSON, text that is not
UTF-8, and an id longer than its column, and one such value would fail the whole
page's transaction. A record whose data holds such a value is stored cleaned (NUL
removed, NaN as null, broken text replaced); a record whose id holds one is skipped,
since a changed id would be another record. Either way the sync says so in a warning.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Protocol

import structlog
from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from models.db import table_of, upsert
from models.schema import SyncCursor, SyncedRecord, SyncRun

log = structlog.get_logger(__name__)

# The longest external id the column holds (synced_records.external_id is String(255)).
MAX_EXTERNAL_ID_CHARS: Final = 255
# How deeply a record's data may nest. Provider objects nest a few levels; JSON encoders
# recurse per level and give up near 1,000, so anything past this is refused.
MAX_DATA_DEPTH: Final = 256
# The widest integer a record may hold: ~1,200 digits, far past any real amount or id, and
# inside what Python's JSON encoder writes (4,300 digits) and PostgreSQL reads.
MAX_INT_BITS: Final = 4000

# Adds a page's records to its run's count. Built once, as Core: every page runs it, and a
# prebuilt statement skips construction, cache key and ORM bookkeeping (~0.1 ms a page).
_RUNS = table_of(SyncRun)
_COUNT_RECORDS = (
    update(_RUNS)
    .where(_RUNS.c.id == bindparam("run_id"))
    .values(records_received=_RUNS.c.records_received + bindparam("stored"))
)

Warn = Callable[[str], None]


class PageWrite(Protocol):
    """A page to store: the connectors' `Page` has this shape."""

    @property
    def stream(self) -> str: ...
    @property
    def records(self) -> Sequence[tuple[str, Mapping[str, Any]]]: ...
    @property
    def cursor(self) -> Mapping[str, Any] | None: ...


class Unstorable(ValueError):
    """Raised when a value cannot be stored at all (too deep, or not JSON)."""


def _log_warning(message: str) -> None:
    log.warning("records.cleaned", warning=message)


def store_page(
    session: Session,
    *,
    integration_id: uuid.UUID,
    run_id: uuid.UUID | None,
    stream: str,
    records: Iterable[tuple[str, Mapping[str, Any]]],
    cursor: Mapping[str, Any] | None,
    now: datetime,
    warn: Warn = _log_warning,
) -> int:
    """Upsert a page of records by (integration, kind, external id) and advance the cursor.

    Records are checked first (module docstring); `warn` hears, once per kind of problem
    in the page, what was skipped or cleaned. Returns how many records were stored.
    """
    problems = _Problems(stream)
    rows: dict[str, dict[str, Any]] = {}
    for external_id, data in records:
        clean = _storable(external_id, data, problems)
        if clean is not None:
            rows[external_id] = {
                "integration_id": integration_id,
                "kind": stream,
                "external_id": external_id,
                "data": clean,
                "first_seen_at": now,
                "updated_at": now,
            }
    if rows:
        upsert(
            session,
            SyncedRecord,
            list(rows.values()),
            keys=["integration_id", "kind", "external_id"],
            refresh=["data", "updated_at"],
        )
    stored_cursor = _storable_cursor(cursor, problems)
    if stored_cursor is not None:
        upsert(
            session,
            SyncCursor,
            [
                {
                    "integration_id": integration_id,
                    "stream": stream,
                    "cursor": stored_cursor,
                    "updated_at": now,
                }
            ],
            keys=["integration_id", "stream"],
            refresh=["cursor", "updated_at"],
        )
    if run_id is not None and rows:
        session.execute(_COUNT_RECORDS, {"run_id": run_id, "stored": len(rows)})
    problems.report(warn)
    return len(rows)


class _Problems:
    """What one page's check found, counted by kind, for one warning per kind."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.counts: dict[str, int] = {}

    def add(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def report(self, warn: Warn) -> None:
        for what, count in self.counts.items():
            warn(f"{self.stream}: {what} ({count} record{'s' if count != 1 else ''})")


def _storable(external_id: Any, data: Mapping[str, Any], problems: _Problems) -> Any:
    """The record's data as it can be stored, or None (noted in `problems`) to skip it."""
    refused = _refused_id(external_id)
    if refused is not None:
        problems.add(f"skipped: id {refused}")
        return None
    return _cleaned(data, problems, refused="skipped: data", fixed="cleaned")


def _refused_id(external_id: Any) -> str | None:
    """Why the database would refuse this id, or None if it is storable."""
    if not isinstance(external_id, str) or not external_id:
        return "empty or not text"
    if len(external_id) > MAX_EXTERNAL_ID_CHARS:
        return f"longer than {MAX_EXTERNAL_ID_CHARS} characters"
    if "\x00" in external_id:
        return "contains a NUL character"
    try:
        external_id.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    return None


def _storable_cursor(cursor: Mapping[str, Any] | None, problems: _Problems) -> Any:
    """The cursor to store, cleaned like data: a cleaned id in it at worst fetches a record
    again (upserted, so not twice), while a cursor left behind would stall the stream.
    """
    if cursor is None:
        return None
    return _cleaned(cursor, problems, refused="cursor not advanced: it", fixed="cleaned cursor")


def _cleaned(value: Mapping[str, Any], problems: _Problems, *, refused: str, fixed: str) -> Any:
    """`value` as every backend stores it, or None (noted in `problems`) if it cannot be."""
    if _clean_json(value):
        return dict(value)
    try:
        cleaned, fixes = sanitized(value)
    except Unstorable as exc:
        problems.add(f"{refused} {exc}")
        return None
    for fix in fixes:
        problems.add(f"{fixed}: {fix}")
    return cleaned


def _clean_json(value: Any) -> bool:
    """Whether `value` is JSON every backend stores as is (the fast path: one C encode)."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    # The encoder writes NUL as an escape; a literal backslash-u0000 only costs the slow path.
    return "\\u0000" not in text


def sanitized(value: Any) -> tuple[Any, set[str]]:
    """A copy of JSON `value` that every backend stores, and the fixes it needed.

    Iterative, so hostile nesting cannot exhaust the stack; raises `Unstorable` past
    MAX_DATA_DEPTH levels or for a value that is not JSON.
    """
    fixes: set[str] = set()
    root: list[Any] = [None]
    # Each entry: (container to fill, key or index in it, value to convert, depth).
    pending: list[tuple[Any, Any, Any, int]] = [(root, 0, value, 0)]
    while pending:
        target, slot, item, depth = pending.pop()
        if depth > MAX_DATA_DEPTH:
            raise Unstorable(f"is nested deeper than {MAX_DATA_DEPTH} levels")
        if isinstance(item, Mapping):
            made: Any = {}
            for key, child in item.items():
                pending.append((made, _text(str(key), fixes), child, depth + 1))
        elif isinstance(item, list | tuple):
            made = [None] * len(item)
            pending.extend((made, index, child, depth + 1) for index, child in enumerate(item))
        else:
            made = _scalar(item, fixes)
        target[slot] = made
    return root[0], fixes


def _scalar(item: Any, fixes: set[str]) -> Any:
    if item is None or isinstance(item, bool):
        return item
    if isinstance(item, int):
        if item.bit_length() > MAX_INT_BITS:
            raise Unstorable(f"holds a number wider than {MAX_INT_BITS} bits")
        return item
    if isinstance(item, float):
        if math.isfinite(item):
            return item
        fixes.add("NaN or Infinity stored as null")
        return None
    if isinstance(item, str):
        return _text(item, fixes)
    raise Unstorable(f"holds a value that is not JSON ({type(item).__name__})")


def _text(text: str, fixes: set[str]) -> str:
    if "\x00" in text:
        fixes.add("NUL characters removed")
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        fixes.add("text that is not UTF-8 replaced")
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
