"""What the model accepts as names, keys and JSON documents from people and programs.

Checked where integrations and environments are made and changed, so every door (the
CLI, the API, an embedding application) refuses the same input with the same
`InvalidValue` line, before anything is written. Lengths follow the columns
(`models.schema`): a longer value would be cut short by SQLite and refused mid-transaction
by PostgreSQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from models.errors import InvalidValue

# Names and identifiers of integrations and environments: String(200) columns.
MAX_NAME_CHARS: Final = 200
# Environment and organization ids, actors (deleted_by, status_changes.actor): String(64).
MAX_ID_CHARS: Final = 64
# Filters, configurations and conditions are a few keys and lists; ten levels leave room
# for any real one and stop a document built to exhaust a parser or the stack.
MAX_JSON_DEPTH: Final = 10
# The same for size: a real one is a few hundred bytes.
MAX_JSON_BYTES: Final = 64 * 1024
# How much of a refused value an error shows.
SHOWN_CHARS: Final = 40


def checked_name(value: object, *, what: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """Printable text, not blank, without surrounding spaces, at most `max_chars` long."""
    text = _text(value, what=what, max_chars=max_chars)
    if not text.strip() or text != text.strip():
        raise InvalidValue(f"{what} must not be blank or start or end with spaces")
    return text


def checked_key(value: object, *, what: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """Printable text without spaces, not empty, at most `max_chars` long (ids, identifiers)."""
    text = _text(value, what=what, max_chars=max_chars)
    if not text or any(character.isspace() for character in text):
        raise InvalidValue(f"{what} must be non-empty text without spaces, got {shown(text)}")
    return text


def checked_actor(value: object) -> str:
    """Who acts, as the audit trail and `deleted_by` keep it."""
    return checked_name(value, what="actor", max_chars=MAX_ID_CHARS)


def checked_json(value: object, *, what: str) -> Any:
    """A plain JSON value: objects with text keys, lists, text, finite numbers, booleans, null.

    At most MAX_JSON_DEPTH levels deep and MAX_JSON_BYTES long once encoded.
    """
    _walk(value, what=what, depth=1)
    if len(json.dumps(value, separators=(",", ":"))) > MAX_JSON_BYTES:
        raise InvalidValue(f"{what} must be at most {MAX_JSON_BYTES // 1024} KiB of JSON")
    return value


def shown(value: object) -> str:
    """A value quoted for an error: repr'd (control characters escaped) and cut short."""
    if isinstance(value, str):
        return repr(value) if len(value) <= SHOWN_CHARS else repr(value[:SHOWN_CHARS]) + "..."
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


def _text(value: object, *, what: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be text, not {type(value).__name__}")
    if len(value) > max_chars:
        raise InvalidValue(f"{what} must be at most {max_chars} characters, got {len(value)}")
    if not value.isprintable():
        raise InvalidValue(f"{what} must be printable text (no control characters)")
    return value


def _walk(value: object, *, what: str, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidValue(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValue(f"{what}: object keys must be text, got {shown(key)}")
            _walk(item, what=what, depth=depth + 1)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        for item in value:
            _walk(item, what=what, depth=depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidValue(f"{what} must not hold NaN or Infinity (JSON has no such numbers)")
    elif value is not None and not isinstance(value, str | int | float):  # bool is an int
        raise InvalidValue(f"{what} must be JSON, not {type(value).__name__}")
