"""A fake of Shopify's REST Admin API list endpoints (orders, customers, products).

Every shop is served at the fake's address; the `X-Shopify-Access-Token` picks the
dataset. Objects get integer ids and `updated_at` one minute apart from `START` (written
with a -05:00 offset, as shops outside UTC answer), so a later change is always newer.
Lists behave as Shopify documents them: `limit` (1-250, default 50), ascending ids, a
`Link` header with `rel="next"`/`rel="previous"` URLs carrying `page_info`, with which only
`limit` and `fields` may be sent; `updated_at_min` (inclusive); orders default to
`status=open`. Every answer carries `X-Shopify-Shop-Api-Call-Limit` (see `call_limit`).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

from fakes.server import FakeServer, Request, Response, append_new

START = datetime(2024, 1, 1, tzinfo=UTC)  # fixed, so generated data is the same every run
SPACING = timedelta(minutes=1)  # between consecutive changes in one shop
SHOP_TZ = timezone(timedelta(hours=-5))
MAX_LIMIT = 250
DEFAULT_LIMIT = 50
KINDS = ("orders", "customers", "products")
CLOSED_EVERY = 4  # every fourth order is closed: listed only with status=any
PAGE_INFO_ALONE = {"limit", "fields", "page_info"}


class FakeShopify(FakeServer):
    """`/admin/api/{version}/{kind}.json` over per-token datasets."""

    secret_headers = FakeServer.secret_headers | {"x-shopify-access-token"}

    def __init__(self) -> None:
        super().__init__()
        self._shops: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self._clock: dict[str, int] = {}
        self._data_lock = threading.Lock()
        self.call_limit = "1/40"  # the bucket level every answer reports
        for kind in KINDS:
            self.route("GET", f"/admin/api/{{version}}/{kind}.json", partial(self._list, kind))

    def credential_of(self, request: Request) -> str | None:
        return request.headers.get("x-shopify-access-token")

    def auth_error(self, request: Request) -> Response:
        message = "[API] Invalid API key or access token (unrecognized login or wrong password)"
        return self.error_response(401, message)

    def error_response(self, status: int, message: str) -> Response:
        return Response.json({"errors": message}, status, {"X-Shopify-Shop-Api-Call-Limit": "1/40"})

    def add_shop(
        self, token: str, *, orders: int = 0, customers: int = 0, products: int = 0
    ) -> None:
        """Create the dataset for a token (replacing any earlier one)."""
        with self._data_lock:
            self._shops[token] = {kind: [] for kind in KINDS}
            self._clock[token] = 0
        for kind, count in (("orders", orders), ("customers", customers), ("products", products)):
            self.add_objects(token, kind, count)

    def add_objects(self, token: str, kind: str, count: int) -> list[str]:
        """Append `count` new objects of `kind`, updated after everything before; their ids."""
        objects = self._shops[token][kind]
        return append_new(self._data_lock, objects, count, lambda n: self._make(token, kind, n))

    def touch(self, token: str, kind: str, ids: list[str]) -> None:
        """Change existing objects: they become the newest."""
        with self._data_lock:
            for obj in self._shops[token][kind]:
                if str(obj["id"]) in ids:
                    obj["updated_at"] = self._tick(token)
                    obj["note"] = f"changed at {obj['updated_at']}"

    def newest_updated_at(self, token: str, kind: str) -> str:
        """The `updated_at` of the most recently changed object of `kind`."""
        with self._data_lock:
            objects = self._shops[token][kind]
            return str(max((obj["updated_at"] for obj in objects), key=datetime.fromisoformat))

    def _tick(self, token: str) -> str:
        self._clock[token] += 1
        return (START + self._clock[token] * SPACING).astimezone(SHOP_TZ).isoformat()

    def _make(self, token: str, kind: str, number: int) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": 1000 + number,
            "admin_graphql_api_id": f"gid://{kind}/{number}",
        }
        obj["created_at"] = obj["updated_at"] = self._tick(token)
        if kind == "orders":
            closed = number % CLOSED_EVERY == 0
            obj.update(status="closed" if closed else "open", total_price=f"{10 + number}.00")
        elif kind == "customers":
            obj["email"] = f"customer{number}@example.com"
        else:
            obj["title"] = f"Product {number}"
        return obj

    def _list(self, kind: str, request: Request) -> Response:
        with self._data_lock:
            shop = self._shops.get(self.credential_of(request) or "")
            objects = [dict(obj) for obj in shop[kind]] if shop is not None else None
        if objects is None:
            return self.auth_error(request)
        try:
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
            query = self._query(request)
        except (ValueError, binascii.Error):
            return self.error_response(400, "Invalid value for limit, page_info or updated_at_min")
        if query is None:
            return self.error_response(400, "page_info cannot be combined with other filters")
        if not 1 <= limit <= MAX_LIMIT:
            return self.error_response(400, f"limit must be between 1 and {MAX_LIMIT}")
        if kind == "orders" and query.get("status", "open") != "any":
            objects = [obj for obj in objects if obj["status"] == query.get("status", "open")]
        if minimum := query.get("updated_at_min"):
            bound = datetime.fromisoformat(minimum)
            objects = [o for o in objects if datetime.fromisoformat(o["updated_at"]) >= bound]
        after = int(query.get("after_id", 0))
        rest = [obj for obj in objects if obj["id"] > after]
        page = rest[:limit]
        links = []
        if len(rest) > limit:
            links.append(
                self._link(request, kind, limit, {**query, "after_id": page[-1]["id"]}, "next")
            )
        if after:
            links.append(self._link(request, kind, limit, {**query, "after_id": 0}, "previous"))
        headers = {"X-Shopify-Shop-Api-Call-Limit": self.call_limit}
        if links:
            headers["Link"] = ", ".join(links)
        return Response.json({kind: page}, headers=headers)

    def _query(self, request: Request) -> dict[str, Any] | None:
        """The filters in force: from `page_info` alone if given (None if mixed), else the query."""
        token = request.query.get("page_info")
        if token is None:
            return dict(request.query)
        if set(request.query) - PAGE_INFO_ALONE:
            return None
        decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.encode()))
        return decoded

    def _link(
        self, request: Request, kind: str, limit: int, query: dict[str, Any], rel: str
    ) -> str:
        token = base64.urlsafe_b64encode(json.dumps(query).encode()).decode()
        version = request.path_params["version"]
        host = request.headers.get("host", "shop.myshopify.com")
        url = f"http://{host}/admin/api/{version}/{kind}.json?limit={limit}&page_info={token}"
        return f'<{url}>; rel="{rel}"'
