"""A fake of Whop's current REST API lists (`/api/v1/memberships`, `/api/v1/payments`).

Each API key owns one company (`biz_...`) and a deterministic dataset: ids like
`mem_000001`, `created_at` ISO 8601 one minute apart from `START`. Lists behave as the docs
describe: `company_id` required, `first` (page size), `after` (an opaque cursor),
`order=created_at`/`direction`, `created_after` (exclusive), answering
`{"data": [...], "page_info": {"end_cursor", "start_cursor", "has_next_page",
"has_previous_page"}}`. A key asking for another company gets 403.
"""

from __future__ import annotations

import base64
import binascii
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from fakes.server import FakeServer, Request, Response, append_new

START = datetime(2024, 3, 1, tzinfo=UTC)
SPACING = timedelta(minutes=1)
DEFAULT_FIRST = 10
MAX_FIRST = 100
PREFIXES = {"memberships": "mem", "payments": "pay"}


class FakeWhop(FakeServer):
    """Whop's `/api/v1/<kind>` lists over per-key datasets."""

    def __init__(self) -> None:
        super().__init__()
        self._companies: dict[str, str] = {}
        self._data: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._clock: dict[str, int] = {}
        self._data_lock = threading.Lock()
        for kind in PREFIXES:
            self.route("GET", f"/api/v1/{kind}", partial(self._list, kind))

    def auth_error(self, request: Request) -> Response:
        return self.error_response(401, "The API key supplied is invalid.")

    def error_response(self, status: int, message: str) -> Response:
        kinds = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited"}
        kind = kinds.get(status, "server_error" if status >= 500 else "bad_request")
        return Response.json({"error": {"type": kind, "message": message}}, status)

    def add_company(
        self, api_key: str, company_id: str, *, memberships: int = 0, payments: int = 0
    ) -> None:
        """Create the dataset for a key (replacing any earlier one)."""
        with self._data_lock:
            self._companies[api_key] = company_id
            self._data[api_key] = {kind: [] for kind in PREFIXES}
            self._clock[api_key] = 0
        self.add_objects(api_key, "memberships", memberships)
        self.add_objects(api_key, "payments", payments)

    def add_objects(self, api_key: str, kind: str, count: int) -> list[str]:
        """Append `count` new (newer) objects of `kind`; returns their ids."""
        objects = self._data[api_key][kind]
        return append_new(self._data_lock, objects, count, lambda n: self._make(api_key, kind, n))

    def update(self, api_key: str, kind: str, object_id: str, **changes: Any) -> None:
        """Change an existing object (Whop moves `updated_at`, never `created_at`)."""
        with self._data_lock:
            self._clock[api_key] += 1
            for obj in self._data[api_key][kind]:
                if obj["id"] == object_id:
                    obj.update(changes, updated_at=self._time(api_key))

    def _time(self, api_key: str) -> str:
        return (START + self._clock[api_key] * SPACING).isoformat().replace("+00:00", "Z")

    def _make(self, api_key: str, kind: str, number: int) -> dict[str, Any]:
        self._clock[api_key] += 1
        now = self._time(api_key)
        obj: dict[str, Any] = {"id": f"{PREFIXES[kind]}_{number:06d}", "created_at": now}
        obj["updated_at"] = now
        if kind == "memberships":
            obj.update(
                status="active", plan={"id": f"plan_{number % 3}"}, user={"id": f"user_{number}"}
            )
        else:
            obj.update(status="paid", total=9.99 + number, currency="usd")
        return obj

    def _list(self, kind: str, request: Request) -> Response:
        key = request.bearer_token or ""
        with self._data_lock:
            company = self._companies.get(key)
            objects = [dict(obj) for obj in self._data[key][kind]] if company else None
        if objects is None:
            return self.auth_error(request)
        if request.query.get("company_id") != company:
            return self.error_response(403, "You do not have access to this company")
        try:
            first = int(request.query.get("first", DEFAULT_FIRST))
            after = _decode(request.query["after"]) if "after" in request.query else -1
            floor = request.query.get("created_after")
            bound = datetime.fromisoformat(floor) if floor else None
        except (ValueError, binascii.Error):
            return self.error_response(400, "Invalid first, after or created_after")
        if not 1 <= first <= MAX_FIRST:
            return self.error_response(400, f"first must be between 1 and {MAX_FIRST}")
        if bound is not None:
            objects = [o for o in objects if datetime.fromisoformat(o["created_at"]) > bound]
        objects.sort(key=lambda obj: (obj["created_at"], obj["id"]))
        if request.query.get("direction", "desc") == "desc":
            objects.reverse()
        page = objects[after + 1 : after + 1 + first]
        end = after + len(page)
        body = {
            "data": page,
            "page_info": {
                "start_cursor": _encode(after + 1) if page else None,
                "end_cursor": _encode(end) if page else None,
                "has_next_page": end + 1 < len(objects),
                "has_previous_page": after >= 0,
            },
        }
        return Response.json(body)


def _encode(position: int) -> str:
    return base64.b64encode(f"cursor:{position}".encode()).decode()


def _decode(cursor: str) -> int:
    text = base64.b64decode(cursor.encode(), validate=True).decode()
    if not text.startswith("cursor:"):
        raise ValueError("not a cursor")
    return int(text.removeprefix("cursor:"))
