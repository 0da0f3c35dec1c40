"""A webhook receiver on loopback: checks each delivery's signature and keeps it.

    with FakeReceiver(secret="whsec_test") as receiver:
        receiver.fail_next(3, status=500)  # the shared failure script of every fake
        ...  # point a WebhookSink at receiver.hook_url
        [delivery] = receiver.deliveries
        assert delivery.verified

Like a real receiver, it answers 200 to a delivery whose signature verifies and 400
to one whose does not; unlike one, it does not dedupe on `Webhook-Id`, so a test
sees every resend. Requests the failure script answered are not deliveries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fakes.server import FakeServer, Request, Response
from worker.errors import SignatureError
from worker.webhooks import ID_HEADER, SIGNATURE_HEADER, verify_signature

HOOK_PATH = "/hooks/syncworker"


@dataclass(frozen=True)
class Delivery:
    """One POST that reached the receiver's route (verified or not)."""

    event_id: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


class FakeReceiver(FakeServer):
    """Accepts signed POSTs on HOOK_PATH; failures come from the fake's script."""

    def __init__(
        self, secret: str, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        super().__init__()
        self.secret = secret
        self._now = now
        self._received: list[Delivery] = []
        self._received_lock = threading.Lock()
        self.route("POST", HOOK_PATH, self._accept)

    @property
    def hook_url(self) -> str:
        return self.url + HOOK_PATH

    @property
    def deliveries(self) -> list[Delivery]:
        """Every delivery, oldest first, resends included."""
        with self._received_lock:
            return list(self._received)

    def event_ids(self) -> list[str]:
        """The ids of the verified deliveries, oldest first."""
        return [d.event_id for d in self.deliveries if d.verified]

    def _accept(self, request: Request) -> Response:
        header = request.headers.get(SIGNATURE_HEADER.lower())
        try:
            verify_signature(self.secret, header, request.body, now=self._now())
        except SignatureError as exc:
            verified, response = False, Response.json({"error": str(exc)}, status=400)
        else:
            verified, response = True, Response.json({"received": True})
        event_id = request.headers.get(ID_HEADER.lower(), "")
        with self._received_lock:
            self._received.append(Delivery(event_id, request.headers, request.body, verified))
        return response
