"""A fake of Superwall: the `GET /v2/projects` probe and signed webhook deliveries.

`add_key` registers an organization API key and its projects; `/v2/projects` answers a
cursor-paginated list (`data`, `has_more`) to it and 401 to anything else. `webhook`
builds a delivery signed as Svix signs Superwall's: the headers and the raw body a test
hands to `worker.connectors.webhooks`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from datetime import datetime
from typing import Any

from fakes.server import FakeServer, Request, Response

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"superwall-fake-signing-key-32byt").decode()
CODES = {401: "unauthorized", 404: "not_found", 429: "rate_limited"}


class FakeSuperwall(FakeServer):
    """Superwall's `/v2/projects` list over registered organization keys."""

    def __init__(self) -> None:
        super().__init__()
        self._keys: dict[str, list[dict[str, Any]]] = {}
        self._data_lock = threading.Lock()
        self.route("GET", "/v2/projects", self._projects)

    def add_key(self, api_key: str, *, projects: int = 1) -> None:
        with self._data_lock:
            self._keys[api_key] = [
                {"id": 3827 + n, "name": f"Project {n + 1}", "applications": []}
                for n in range(projects)
            ]

    def error_response(self, status: int, message: str) -> Response:
        code = CODES.get(status, "internal_error" if status >= 500 else "bad_request")
        return Response.json({"error": {"code": code, "message": message}}, status)

    def _projects(self, request: Request) -> Response:
        with self._data_lock:
            projects = self._keys.get(request.bearer_token or "")
        if projects is None:
            return self.auth_error(request)
        limit = int(request.query.get("limit", 10))
        return Response.json({"data": projects[:limit], "has_more": len(projects) > limit})


def event(event_id: str, kind: str = "renewal", *, at_ms: int = 1_754_067_715_103) -> bytes:
    """A Superwall webhook body (the legacy format), as raw bytes."""
    payload = {
        "object": "event",
        "type": kind,
        "projectId": 3827,
        "applicationId": 1,
        "timestamp": at_ms,
        "data": {
            "id": event_id,
            "name": kind,
            "price": 9.99,
            "proceeds": 6.99,
            "store": "APP_STORE",
            "transactionId": "700002054157982",
        },
    }
    return json.dumps(payload).encode()


def webhook(
    body: bytes, *, sent_at: datetime, message_id: str = "msg_2Lh9KRb0pzN4jD", secret: str = ""
) -> dict[str, str]:
    """Svix headers signing `body` as sent at `sent_at` (with `secret`, default the fake's)."""
    key = base64.b64decode((secret or WEBHOOK_SECRET).removeprefix("whsec_"))
    stamp = str(int(sent_at.timestamp()))
    digest = hmac.new(key, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "svix-id": message_id,
        "svix-timestamp": stamp,
        "svix-signature": "v1," + base64.b64encode(digest).decode(),
        "content-type": "application/json",
    }
