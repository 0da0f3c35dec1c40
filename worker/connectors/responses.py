"""Reading a provider's answers: JSON bodies, their expected shape, safe error details.

Every check names the endpoint (`METHOD /path`) and what was wrong, raising
`MalformedResponse`; nothing here quotes a body, which may hold personal data or
a secret. Error details (`error_fields`) read only fields that hold codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import httpx

from worker.connectors.errors import MalformedResponse, ResponseTooDeep

T = TypeVar("T")

# Provider documents nest a dozen levels at most; a hostile one nesting thousands would
# overflow the recursion of whatever walks it.
MAX_JSON_DEPTH: Final = 64

# Extracts a safe, short detail (an error type or code, never free text) from an error body.
ErrorDetail = Callable[[httpx.Response], "str | None"]

JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


def decode_json(response: httpx.Response, endpoint: str) -> Any:
    """The decoded JSON body, or `MalformedResponse` naming the endpoint.

    Nesting deeper than `MAX_JSON_DEPTH` is `ResponseTooDeep`: past Python's recursion
    limit the decoder itself would raise `RecursionError`, and below it such a document
    would still overflow whatever walks it next (serialising it for the database).
    """
    try:
        payload = response.json()
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MalformedResponse(f"{endpoint}: response body is not valid JSON") from exc
    except RecursionError:
        payload = None
        too_deep = True
    else:
        too_deep = json_depth_exceeds(payload, MAX_JSON_DEPTH)
    if too_deep:
        raise ResponseTooDeep(
            f"{endpoint}: response JSON nests deeper than {MAX_JSON_DEPTH} levels"
        )
    return payload


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether decoded JSON nests objects or arrays more than `limit` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def require(payload: Any, key: str, kind: type[T], *, endpoint: str) -> T:
    """The value at `key` of a JSON object, or `MalformedResponse` naming endpoint and key."""
    if not isinstance(payload, dict):
        raise MalformedResponse(f"{endpoint}: expected an object, got {json_type(payload)}")
    if key not in payload:
        raise MalformedResponse(f"{endpoint}: missing key {key!r}")
    value = payload[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = JSON_TYPES.get(kind, kind.__name__)
        raise MalformedResponse(
            f"{endpoint}: key {key!r} should be {expected}, got {json_type(value)}"
        )
    return value


def json_type(value: object) -> str:
    """How a decoded JSON value's type reads in an error message."""
    return JSON_TYPES.get(type(value), type(value).__name__)


def error_fields(*paths: Sequence[str | int]) -> ErrorDetail:
    """An `ErrorDetail` joining, with "/", the text found at each path of an error body.

    `error_fields(("error", "type"), ("error", "code"))` reads Stripe's
    `{"error": {"type": "invalid_request_error", "code": "resource_missing", "message": ...}}`
    as `invalid_request_error/resource_missing`. Name only fields that hold codes, never a
    message: providers echo parts of the request (a masked key) in theirs.
    """

    def detail(response: httpx.Response) -> str | None:
        try:
            body = decode_json(response, "error")
        except MalformedResponse:
            return None
        found = (_text_at(body, path) for path in paths)
        return "/".join(part for part in found if part) or None

    return detail


def _text_at(value: object, path: Sequence[str | int]) -> str | None:
    for step in path:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict):
            value = value.get(step)
        else:
            return None
    return value if isinstance(value, str) else None
