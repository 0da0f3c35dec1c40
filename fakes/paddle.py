"""A fake of Paddle Billing's list API (transactions, subscriptions, customers).

Each API key owns a deterministic dataset: ids like `txn_000001` (sortable by creation, as
Paddle's are), RFC 3339 `created_at`/`updated_at` with microseconds one minute apart from
`START`. Lists behave as documented: `per_page` (capped at the list's maximum), `after`,
`order_by=<field>[ASC|DESC]` (transactions by `id`, `created_at` or `updated_at`; the others
by `id` only), `updated_at[GTE]`-style operators on transactions only, customers `active` by
default. Answers carry `meta.pagination.next` as a full URL with `after`. Errors are
`{"error": {"type", "code", "detail", "documentation_url"}, "meta": {"request_id"}}`.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

from fakes.server import FakeServer, Request, Response, append_new

START = datetime(2024, 5, 1, tzinfo=UTC)
SPACING = timedelta(minutes=1)
PREFIXES = {"transactions": "txn", "subscriptions": "sub", "customers": "ctm"}
MAX_PER_PAGE = {"transactions": 30, "subscriptions": 200, "customers": 200}
DEFAULT_PER_PAGE = {"transactions": 30, "subscriptions": 50, "customers": 50}
ORDER_FIELDS = {"transactions": {"id", "created_at", "updated_at"}}
ARCHIVED_EVERY = 5  # every fifth customer is archived: listed only when asked for
OPERATORS = {"LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}
ORDER_BY = re.compile(r"(\w+)\[(ASC|DESC)\]")
CODES = {
    400: ("request_error", "bad_request"),
    401: ("request_error", "authentication_malformed"),
    403: ("request_error", "forbidden"),
    404: ("request_error", "not_found"),
    429: ("api_error", "too_many_requests"),
}


class FakePaddle(FakeServer):
    """Paddle's `/<entities>` lists over per-key datasets."""

    def __init__(self) -> None:
        super().__init__()
        self._data: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._clock: dict[str, int] = {}
        self._data_lock = threading.Lock()
        for kind in PREFIXES:
            self.route("GET", f"/{kind}", partial(self._list, kind))

    def auth_error(self, request: Request) -> Response:
        return self.error_response(401, "Authentication header included, but incorrectly formatted")

    def error_response(self, status: int, message: str) -> Response:
        kind, code = CODES.get(status, ("api_error", "internal_error"))
        body = {
            "error": {
                "type": kind,
                "code": code,
                "detail": message,
                "documentation_url": f"https://developer.paddle.com/errors/shared/{code}",
            },
            "meta": {"request_id": "00000000-0000-0000-0000-000000000000"},
        }
        return Response.json(body, status)

    def add_account(
        self, api_key: str, *, transactions: int = 0, subscriptions: int = 0, customers: int = 0
    ) -> None:
        """Create the dataset for a key (replacing any earlier one)."""
        with self._data_lock:
            self._data[api_key] = {kind: [] for kind in PREFIXES}
            self._clock[api_key] = 0
        for kind, count in zip(PREFIXES, (transactions, subscriptions, customers), strict=True):
            self.add_objects(api_key, kind, count)

    def add_objects(self, api_key: str, kind: str, count: int) -> list[str]:
        """Append `count` new (newer) entities of `kind`; returns their ids."""
        objects = self._data[api_key][kind]
        return append_new(self._data_lock, objects, count, lambda n: self._make(api_key, kind, n))

    def update(self, api_key: str, kind: str, entity_id: str, **changes: Any) -> None:
        """Change an entity: its `updated_at` becomes the newest."""
        with self._data_lock:
            for obj in self._data[api_key][kind]:
                if obj["id"] == entity_id:
                    obj.update(changes, updated_at=self._tick(api_key))

    def _tick(self, api_key: str) -> str:
        self._clock[api_key] += 1
        moment = START + self._clock[api_key] * SPACING + timedelta(microseconds=123456)
        return moment.isoformat().replace("+00:00", "Z")

    def _make(self, api_key: str, kind: str, number: int) -> dict[str, Any]:
        now = self._tick(api_key)
        obj: dict[str, Any] = {"id": f"{PREFIXES[kind]}_{number:06d}", "created_at": now}
        obj["updated_at"] = now
        if kind == "transactions":
            obj.update(status="completed", currency_code="USD", customer_id=f"ctm_{number:06d}")
        elif kind == "subscriptions":
            obj.update(status="active", customer_id=f"ctm_{number:06d}")
        else:
            archived = number % ARCHIVED_EVERY == 0
            obj.update(status="archived" if archived else "active", email=f"c{number}@example.com")
        return obj

    def _list(self, kind: str, request: Request) -> Response:
        with self._data_lock:
            dataset = self._data.get(request.bearer_token or "")
            objects = [dict(obj) for obj in dataset[kind]] if dataset is not None else None
        if objects is None:
            return self.auth_error(request)
        query = dict(request.query)
        try:
            objects, order = self._filter(kind, objects, query)
            per_page = min(int(query.get("per_page", DEFAULT_PER_PAGE[kind])), MAX_PER_PAGE[kind])
        except ValueError as exc:
            return self.error_response(400, str(exc))
        field_name, direction = order
        objects.sort(key=lambda obj: (obj[field_name], obj["id"]), reverse=direction == "DESC")
        if after := query.get("after"):
            keys = {obj["id"]: (obj[field_name], obj["id"]) for obj in self._data_of(request, kind)}
            if after not in keys:
                return self.error_response(400, f"after: {after} is not a valid id")
            mark, ascending = keys[after], direction == "ASC"
            objects = [
                obj
                for obj in objects
                if (
                    (obj[field_name], obj["id"]) > mark
                    if ascending
                    else (obj[field_name], obj["id"]) < mark
                )
            ]
        page, more = objects[:per_page], len(objects) > per_page
        next_query = {**query, "after": page[-1]["id"]} if page else query
        host = request.headers.get("host", "api.paddle.com")
        pagination = {
            "per_page": per_page,
            "next": f"http://{host}/{kind}?{urlencode(next_query)}",
            "has_more": more,
            "estimated_total": len(objects),
        }
        return Response.json({"data": page, "meta": {"request_id": "r", "pagination": pagination}})

    def _data_of(self, request: Request, kind: str) -> list[dict[str, Any]]:
        with self._data_lock:
            return list(self._data[request.bearer_token or ""][kind])

    def _filter(
        self, kind: str, objects: list[dict[str, Any]], query: dict[str, str]
    ) -> tuple[list[dict[str, Any]], tuple[str, str]]:
        """Apply status and date filters; the order asked for, or `ValueError` naming the fault."""
        match = ORDER_BY.fullmatch(query.get("order_by", "id[DESC]"))
        if match is None or match[1] not in ORDER_FIELDS.get(kind, {"id"}):
            raise ValueError("order_by: invalid field or direction")
        if kind == "customers":
            statuses = query.get("status", "active").split(",")
            objects = [obj for obj in objects if obj["status"] in statuses]
        for name, value in query.items():
            date = re.fullmatch(r"(created_at|updated_at)\[(LT|LTE|GT|GTE)\]", name)
            if date is None:
                continue
            if kind != "transactions":
                raise ValueError(f"{name}: unknown query parameter")
            bound, op = datetime.fromisoformat(value), OPERATORS[date[2]]
            objects = [
                o for o in objects if _compare(datetime.fromisoformat(o[date[1]]), op, bound)
            ]
        return objects, (match[1], match[2])


def _compare(left: datetime, op: str, right: datetime) -> bool:
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
