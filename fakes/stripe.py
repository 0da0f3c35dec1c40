"""A fake of Stripe's list API (customers, subscriptions, invoices, charges) and its events.

Each secret key owns a deterministic dataset: ids like `cus_000001`, `created`
one minute apart from `START`, so a later object is always newer. Lists behave
as Stripe documents them: newest first, `limit` (1-100, default 10),
`starting_after`, `has_more`, `created[gte]`; subscriptions leave out
`canceled` ones unless `status=all`. An unknown or revoked key gets Stripe's 401
body, which, like Stripe's, echoes a masked key.

`GET /v1/events` lists the account's events newest first, as Stripe documents it:
`type` (a name or a `prefix.*` wildcard), `created[gte]`/`created[gt]`, `limit` and
`starting_after`. Adding objects emits `<object>.created` events at their `created`;
`update_object` changes one and emits `<object>.updated` (or the type given), with
the object's new state as `data.object`.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any

from fakes.server import FakeServer, Request, Response, append_new

START = 1_700_000_000  # a fixed epoch, so generated data is the same on every run
SPACING = 60  # seconds between consecutive objects of one kind
MAX_LIMIT = 100  # Stripe's documented maximum page size
DEFAULT_LIMIT = 10
PREFIXES = {"customers": "cus", "subscriptions": "sub", "invoices": "in", "charges": "ch"}
OBJECT_NAMES = {
    "customers": "customer",
    "subscriptions": "subscription",
    "invoices": "invoice",
    "charges": "charge",
}
CANCELED_EVERY = 5  # every fifth subscription is canceled, hidden without status=all
EVENT_PREFIXES = {
    "customers": "customer",
    "subscriptions": "customer.subscription",
    "invoices": "invoice",
    "charges": "charge",
}

Dataset = dict[str, list[dict[str, Any]]]


class FakeStripe(FakeServer):
    """Stripe's `/v1/<objects>` list endpoints over per-key datasets."""

    def __init__(self) -> None:
        super().__init__()
        self._accounts: dict[str, Dataset] = {}
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._data_lock = threading.Lock()
        for kind in PREFIXES:
            self.route("GET", f"/v1/{kind}", partial(self._list, kind))
        self.route("GET", "/v1/events", self._list_events)

    def add_account(
        self,
        secret_key: str,
        *,
        customers: int = 0,
        subscriptions: int = 0,
        invoices: int = 0,
        charges: int = 0,
    ) -> None:
        """Create the dataset for a key (replacing any earlier one)."""
        with self._data_lock:
            self._accounts[secret_key] = {kind: [] for kind in PREFIXES}
            self._events[secret_key] = []
        counts = {
            "customers": customers,
            "subscriptions": subscriptions,
            "invoices": invoices,
            "charges": charges,
        }
        for kind, count in counts.items():
            self.add_objects(secret_key, kind, count)

    def add_objects(self, secret_key: str, kind: str, count: int) -> list[str]:
        """Append `count` new (newer) objects of `kind`; returns their ids."""
        objects = self._accounts[secret_key][kind]
        ids = append_new(self._data_lock, objects, count, lambda number: _make(kind, number))
        for obj in objects[len(objects) - count :]:
            self._emit(secret_key, f"{EVENT_PREFIXES[kind]}.created", obj["created"], obj)
        return ids

    def update_object(
        self,
        secret_key: str,
        kind: str,
        object_id: str,
        *,
        at: int,
        event_type: str | None = None,
        **changes: Any,
    ) -> None:
        """Change one object and emit its event at `at` (`<object>.updated` by default)."""
        with self._data_lock:
            obj = next(o for o in self._accounts[secret_key][kind] if o["id"] == object_id)
            obj.update(changes)
            state = dict(obj)
        self._emit(secret_key, event_type or f"{EVENT_PREFIXES[kind]}.updated", at, state)

    def _emit(self, secret_key: str, event_type: str, at: int, state: dict[str, Any]) -> None:
        with self._data_lock:
            events = self._events[secret_key]
            event = {
                "id": f"evt_{len(events) + 1:06d}",
                "object": "event",
                "type": event_type,
                "created": at,
                "data": {"object": dict(state)},
            }
            events.append(event)

    def objects(self, secret_key: str, kind: str) -> list[dict[str, Any]]:
        """Every object of `kind` for the key, oldest first."""
        with self._data_lock:
            return [dict(obj) for obj in self._accounts[secret_key][kind]]

    def auth_error(self, request: Request) -> Response:
        key = request.bearer_token or ""
        masked = f"{key[:8]}****{key[-4:]}" if key else "(none)"
        body = {
            "error": {
                "type": "invalid_request_error",
                "message": f"Invalid API Key provided: {masked}",
            }
        }
        return Response.json(body, status=401)

    def error_response(self, status: int, message: str) -> Response:
        kind = "api_error" if status >= 500 else "invalid_request_error"
        code = "rate_limit" if status == 429 else None
        return Response.json({"error": {"type": kind, "code": code, "message": message}}, status)

    def _list(self, kind: str, request: Request) -> Response:
        with self._data_lock:
            dataset = self._accounts.get(request.bearer_token or "")
            objects = list(dataset[kind]) if dataset is not None else None
        if objects is None:
            return self.auth_error(request)
        try:
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
            gte = int(request.query.get("created[gte]", 0))
        except ValueError:
            return self.error_response(400, "limit and created[gte] must be integers")
        if not 1 <= limit <= MAX_LIMIT:
            return self.error_response(400, f"limit must be between 1 and {MAX_LIMIT}")
        if kind == "subscriptions" and request.query.get("status") != "all":
            objects = [obj for obj in objects if obj["status"] != "canceled"]
        matching = [obj for obj in objects if obj["created"] >= gte]
        return self._page(request, matching, limit, f"/v1/{kind}", OBJECT_NAMES[kind])

    def _page(
        self, request: Request, items: list[dict[str, Any]], limit: int, url: str, name: str
    ) -> Response:
        """One page of `items` newest first, after `starting_after`, as Stripe lists answer."""
        newest_first = sorted(items, key=lambda item: (item["created"], item["id"]), reverse=True)
        start = 0
        if after := request.query.get("starting_after"):
            ids = [item["id"] for item in newest_first]
            if after not in ids:
                return self.error_response(400, f"No such {name}: '{after}'")
            start = ids.index(after) + 1
        page = newest_first[start : start + limit]
        has_more = start + limit < len(newest_first)
        return Response.json({"object": "list", "data": page, "url": url, "has_more": has_more})

    def _list_events(self, request: Request) -> Response:
        with self._data_lock:
            events = self._events.get(request.bearer_token or "")
            events = list(events) if events is not None else None
        if events is None:
            return self.auth_error(request)
        try:
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
            gte = int(request.query.get("created[gte]", 0))
            gt = int(request.query.get("created[gt]", -1))
        except ValueError:
            return self.error_response(400, "limit and created must be integers")
        wanted = request.query.get("type", "*")
        matching = [
            event
            for event in events
            if event["created"] >= gte
            and event["created"] > gt
            and (wanted == "*" or _type_matches(event["type"], wanted))
        ]
        return self._page(request, matching, limit, "/v1/events", "event")


def _type_matches(event_type: str, wanted: str) -> bool:
    """Stripe's `type` filter: an exact name, or `prefix.*` for every name under it."""
    if wanted.endswith(".*"):
        return event_type.startswith(wanted[:-1])
    return event_type == wanted


def _make(kind: str, number: int) -> dict[str, Any]:
    """The `number`th object of `kind`: the same on every run."""
    obj: dict[str, Any] = {
        "id": f"{PREFIXES[kind]}_{number:06d}",
        "object": OBJECT_NAMES[kind],
        "created": START + number * SPACING,
        "livemode": False,
    }
    customer = f"cus_{number:06d}"
    if kind == "customers":
        obj["email"] = f"customer{number}@example.com"
    elif kind == "subscriptions":
        canceled = number % CANCELED_EVERY == 0
        obj.update(customer=customer, status="canceled" if canceled else "active", currency="usd")
    elif kind == "invoices":
        obj.update(customer=customer, status="paid", amount_due=1000 + number, currency="usd")
    else:
        obj.update(customer=customer, status="succeeded", amount=1000 + number, currency="usd")
    return obj
