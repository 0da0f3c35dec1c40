"""A fake of RevenueCat's REST API v2: customers and their subscriptions and purchases.

Each secret key owns one project and a deterministic dataset: customers `cust_00001`, ...
(every fifth an anonymous `$RCAnonymousID:...`, so ids need URL-encoding), `last_seen_at`
one minute apart, odd customers with a subscription, every third with a purchase. Lists
behave as documented: ordered by id, `limit` clamped to 1-100 (default 20),
`starting_after`, `next_page` present only when more follow, RevenueCat's error body and
rate-limit headers. A key used on another project gets 403.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote

from fakes.server import FakeServer, Request, Response

START_MS = 1_700_000_000_000  # a fixed epoch in milliseconds, so data is the same every run
SPACING_MS = 60_000
RATE_LIMIT = 480  # the documented per-minute limit of the customer information domain
ERROR_TYPES = {
    401: "authentication_error",
    403: "authorization_error",
    404: "resource_missing",
    429: "rate_limit_error",
}


@dataclass
class _Customer:
    data: dict[str, Any]
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Project:
    project_id: str
    customers: dict[str, _Customer] = field(default_factory=dict)
    made: int = 0
    purchases: int = 0
    clock: int = START_MS


class FakeRevenueCat(FakeServer):
    """RevenueCat's customer list endpoints over per-key projects."""

    def __init__(self) -> None:
        super().__init__()
        self._projects: dict[str, _Project] = {}
        self._data_lock = threading.Lock()
        self._usage = 1  # what RevenueCat-Rate-Limit-Current-Usage reports
        base = "/v2/projects/{project_id}/customers"
        self.route("GET", base, self._customers)
        for child in ("subscriptions", "purchases"):
            self.route("GET", base + "/{customer_id}/" + child, partial(self._children, child))

    def add_project(self, secret_key: str, project_id: str, *, customers: int = 0) -> None:
        """Create the project a key may read (replacing any earlier one)."""
        with self._data_lock:
            self._projects[secret_key] = _Project(project_id)
        self.add_customers(secret_key, customers)

    def add_customers(self, secret_key: str, count: int) -> list[str]:
        """Add `count` customers seen after every earlier one; returns their ids."""
        with self._data_lock:
            project = self._projects[secret_key]
            ids = [self._make(project) for _ in range(count)]
        return ids

    def touch(self, secret_key: str, customer_id: str) -> None:
        """The customer came back and bought again: a newer `last_seen_at`, one more purchase."""
        with self._data_lock:
            project = self._projects[secret_key]
            project.clock += SPACING_MS
            customer = project.customers[customer_id]
            customer.data["last_seen_at"] = project.clock
            project.purchases += 1
            customer.purchases.append(_purchase(customer_id, project.purchases, project.clock))

    def spend_budget(self) -> None:
        """Report every later answer as the minute's last allowed request."""
        self._usage = RATE_LIMIT

    def customer_ids(self, secret_key: str) -> list[str]:
        with self._data_lock:
            return sorted(self._projects[secret_key].customers)

    def error_response(self, status: int, message: str) -> Response:
        kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "parameter_error")
        body: dict[str, Any] = {
            "type": kind,
            "message": message,
            "retryable": status == 429 or status >= 500,
            "doc_url": f"https://errors.rev.cat/{kind.replace('_', '-')}",
        }
        if status == 429:
            body["backoff_ms"] = 1000
        return Response.json(body, status)

    def _make(self, project: _Project) -> str:
        project.made += 1
        project.clock += SPACING_MS
        number = project.made
        key = f"$RCAnonymousID:{number:032x}" if number % 5 == 0 else f"cust_{number:05d}"
        customer = _Customer(
            {
                "object": "customer",
                "id": key,
                "project_id": project.project_id,
                "first_seen_at": project.clock,
                "last_seen_at": project.clock,
            }
        )
        if number % 2:
            customer.subscriptions.append(_subscription(key, number, project.clock))
        if number % 3 == 0:
            project.purchases += 1
            customer.purchases.append(_purchase(key, project.purchases, project.clock))
        project.customers[key] = customer
        return key

    def _project(self, request: Request) -> _Project | Response:
        with self._data_lock:
            project = self._projects.get(request.bearer_token or "")
        if project is None:
            return self.auth_error(request)
        if project.project_id != request.path_params["project_id"]:
            return self.error_response(403, "This API key cannot access the project.")
        return project

    def _customers(self, request: Request) -> Response:
        project = self._project(request)
        if isinstance(project, Response):
            return project
        with self._data_lock:
            items = [dict(project.customers[key].data) for key in sorted(project.customers)]
        return self._list(request, items)

    def _children(self, child: str, request: Request) -> Response:
        project = self._project(request)
        if isinstance(project, Response):
            return project
        key = unquote(request.path_params["customer_id"])
        with self._data_lock:
            customer = project.customers.get(key)
            items = [dict(obj) for obj in getattr(customer, child)] if customer else None
        if items is None:
            return self.error_response(404, "Customer not found.")
        return self._list(request, items)

    def _list(self, request: Request, items: list[dict[str, Any]]) -> Response:
        try:
            limit = min(100, max(1, int(request.query.get("limit", 20))))
        except ValueError:
            return self.error_response(400, "limit must be an integer")
        after = request.query.get("starting_after")
        rest = [obj for obj in items if after is None or obj["id"] > after]
        page = rest[:limit]
        url = request.path
        body: dict[str, Any] = {"object": "list", "items": page, "url": url}
        if len(rest) > limit:
            body["next_page"] = f"{url}?starting_after={page[-1]['id']}"
        headers = {
            "RevenueCat-Rate-Limit-Current-Usage": str(self._usage),
            "RevenueCat-Rate-Limit-Current-Limit": str(RATE_LIMIT),
        }
        return Response.json(body, headers=headers)


def _subscription(customer_id: str, number: int, at: int) -> dict[str, Any]:
    return {
        "object": "subscription",
        "id": f"sub{number:08d}",
        "customer_id": customer_id,
        "product_id": "prod_monthly",
        "starts_at": at,
        "current_period_ends_at": at + 30 * 86_400_000,
        "status": "active",
        "gives_access": True,
        "store": "app_store",
    }


def _purchase(customer_id: str, number: int, at: int) -> dict[str, Any]:
    return {
        "object": "purchase",
        "id": f"purch{number:08d}",
        "customer_id": customer_id,
        "product_id": "prod_lifetime",
        "purchased_at": at,
        "status": "owned",
        "store": "play_store",
    }
