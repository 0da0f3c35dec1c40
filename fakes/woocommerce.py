"""A fake of the WooCommerce REST API v3 lists (orders, products, customers, subscriptions).

Every store is served at the fake's address; the consumer key of the HTTP Basic header picks
the dataset (and is what `revoke` takes), its secret must match. Objects get integer ids and
`date_modified_gmt` one second apart from `START`. Lists behave as documented: a JSON array
with `X-WP-Total`/`X-WP-TotalPages`, `page`, `per_page` (1-100, default 10), `orderby`
(`id`, `date`, `modified`), `order`, `exclude`, and on orders, products and subscriptions
`modified_after` (exclusive). `/subscriptions` answers 404 `rest_no_route` unless the store
was given subscriptions (the extension installed). Errors are `{"code", "message", "data"}`.
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from fakes.server import FakeServer, Request, Response, append_new

START = datetime(2024, 6, 1, 12, 0, 0)  # GMT, as `date_modified_gmt` is written
SPACING = timedelta(seconds=1)
KINDS = ("orders", "products", "customers", "subscriptions")
DATED = frozenset({"orders", "products", "subscriptions"})  # those with `modified_after`
MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 10
CODES = {
    400: "rest_invalid_param",
    401: "woocommerce_rest_authentication_error",
    403: "woocommerce_rest_cannot_view",
    404: "rest_no_route",
    429: "rest_too_many_requests",
}


class FakeWooCommerce(FakeServer):
    """`/wp-json/wc/v3/<kind>` over per-key datasets."""

    secret_params = frozenset({"consumer_key", "consumer_secret"})

    def __init__(self) -> None:
        super().__init__()
        self._stores: dict[str, tuple[str, dict[str, list[dict[str, Any]]]]] = {}
        self._clock: dict[str, int] = {}
        self._data_lock = threading.Lock()
        for kind in KINDS:
            self.route("GET", f"/wp-json/wc/v3/{kind}", partial(self._list, kind))

    def credential_of(self, request: Request) -> str | None:
        return _basic(request)[0]

    def auth_error(self, request: Request) -> Response:
        return self.error_response(401, "Consumer key is invalid.")

    def error_response(self, status: int, message: str) -> Response:
        code = CODES.get(status, "internal_server_error")
        return Response.json({"code": code, "message": message, "data": {"status": status}}, status)

    def add_store(
        self,
        consumer_key: str,
        consumer_secret: str,
        *,
        orders: int = 0,
        products: int = 0,
        customers: int = 0,
        subscriptions: int | None = None,
    ) -> None:
        """Create a store's dataset; `subscriptions=None`: the extension is not installed."""
        with self._data_lock:
            data: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS if k != "subscriptions"}
            if subscriptions is not None:
                data["subscriptions"] = []
            self._stores[consumer_key] = (consumer_secret, data)
            self._clock[consumer_key] = 0
        counts = {"orders": orders, "products": products, "customers": customers}
        if subscriptions is not None:
            counts["subscriptions"] = subscriptions
        for kind, count in counts.items():
            self.add_objects(consumer_key, kind, count)

    def add_objects(self, consumer_key: str, kind: str, count: int) -> list[str]:
        """Append `count` new objects of `kind`, modified after everything before; their ids."""
        objects = self._stores[consumer_key][1][kind]
        make = lambda number: self._make(consumer_key, kind, number)  # noqa: E731
        return append_new(self._data_lock, objects, count, make)

    def touch(
        self, consumer_key: str, kind: str, ids: list[str], *, same_second: bool = False
    ) -> None:
        """Modify objects: they become the newest (all in one second if `same_second`)."""
        with self._data_lock:
            when = self._tick(consumer_key)
            for obj in self._stores[consumer_key][1][kind]:
                if str(obj["id"]) in ids:
                    obj["date_modified_gmt"] = when if same_second else self._tick(consumer_key)
                    obj["status"] = "completed"

    def _tick(self, consumer_key: str) -> str:
        self._clock[consumer_key] += 1
        return (START + self._clock[consumer_key] * SPACING).isoformat()

    def _make(self, consumer_key: str, kind: str, number: int) -> dict[str, Any]:
        when = self._tick(consumer_key)
        obj: dict[str, Any] = {
            "id": 100 + number,
            "date_created_gmt": when,
            "date_modified_gmt": when,
        }
        if kind in ("orders", "subscriptions"):
            obj.update(status="processing", total=f"{20 + number}.00", customer_id=number)
        elif kind == "products":
            obj.update(name=f"Product {number}", price=f"{5 + number}.00")
        else:
            obj.update(email=f"buyer{number}@example.com", role="customer")
        return obj

    def _list(self, kind: str, request: Request) -> Response:
        key, secret = _basic(request)
        with self._data_lock:
            store = self._stores.get(key or "")
            known = store is not None and store[0] == secret
            objects = [dict(obj) for obj in store[1].get(kind, [])] if store and known else None
            installed = store is not None and kind in store[1]
        if not known or objects is None:
            return self.auth_error(request)
        if not installed:
            return self.error_response(
                404, "No route was found matching the URL and request method."
            )
        try:
            objects = self._filter(kind, objects, request.query)
            page = int(request.query.get("page", 1))
            per_page = int(request.query.get("per_page", DEFAULT_PER_PAGE))
        except ValueError as exc:
            return self.error_response(400, f"Invalid parameter(s): {exc}")
        if not 1 <= per_page <= MAX_PER_PAGE or page < 1:
            return self.error_response(400, "Invalid parameter(s): per_page, page")
        pages = math.ceil(len(objects) / per_page)
        chosen = objects[(page - 1) * per_page : page * per_page]
        headers = {"X-WP-Total": str(len(objects)), "X-WP-TotalPages": str(pages)}
        return Response.json(chosen, headers=headers)

    def _filter(self, kind: str, objects: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
        """Apply `modified_after`, `exclude`, `orderby` and `order`; `ValueError` names a fault."""
        if (after := query.get("modified_after")) is not None:
            if kind not in DATED:
                raise ValueError("modified_after")
            bound = datetime.fromisoformat(after)
            objects = [o for o in objects if datetime.fromisoformat(o["date_modified_gmt"]) > bound]
        if excluded := query.get("exclude"):
            ids = {int(part) for part in excluded.split(",")}
            objects = [obj for obj in objects if obj["id"] not in ids]
        sort_fields = {"id": "id", "date": "date_created_gmt", "modified": "date_modified_gmt"}
        orderby = query.get("orderby", "date")
        if orderby not in sort_fields or (orderby == "modified" and kind not in DATED):
            raise ValueError("orderby")
        field_name = sort_fields[orderby]
        return sorted(
            objects,
            key=lambda obj: (obj[field_name], obj["id"]),
            reverse=query.get("order", "desc") == "desc",
        )


def _basic(request: Request) -> tuple[str | None, str | None]:
    """The (consumer key, secret) of a request's HTTP Basic header."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return key, secret
