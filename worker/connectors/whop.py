"""The Whop connector: a company's memberships and payments.

Documented API used (the current REST API, https://docs.whop.com/api-reference, served at
`https://api.whop.com/api/v1`; the v2 and v5 APIs are documented as legacy):

- `Authorization: Bearer <company API key>`; every list names the company with
  `company_id=biz_...`;
- `GET /api/v1/memberships` and `GET /api/v1/payments`, sorted with `order=created_at` and
  `direction=asc`, paged by `first` (the page size) and `after` (the previous page's
  `page_info.end_cursor`), answering `{"data": [...], "page_info": {"end_cursor",
  "has_next_page", ...}}`; `created_at` is an ISO 8601 timestamp;
- `created_after` (ISO 8601) is the only time filter documented: there is none on
  `updated_at`.
- rate limits: 429 (with `Retry-After` or `X-RateLimit-*` headers), handled by the HTTP layer.

Incremental: payments are listed from the newest `created_at` stored (`created_after`), so a
run fetches only new payments. Memberships change after creation (renewals, cancellations)
and no filter finds the changed ones, so every run lists them all; upserts make that
idempotent. Changes to older payments (refunds) are not seen by this sync.

A stream's cursor, a `worker.connectors.cursors.Mark`: `created_after` (the newest
`created_at` stored) and `skip_ids` (the ids stored at exactly that instant, in case Whop's
bound is inclusive), updated with every stored page. Pages come in ascending `created_at`,
so that mark is also where a crashed run resumes; a completed memberships listing clears it,
so the next run lists from the start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import structlog

from models.errors import InvalidCredentials
from models.status import Provider
from models.sync_runs import SyncResult
from worker.connectors.base import (
    HttpConnector,
    Page,
    PageSink,
    Record,
    SyncContext,
    SyncTally,
    credential,
    reject_unknown,
    select_streams,
    sync_streams,
)
from worker.connectors.cursors import INSTANT, Mark, MarkKeys, instant, restore
from worker.connectors.errors import MalformedResponse
from worker.connectors.http import BearerAuth, HttpOptions, ProviderClient, ProviderSession
from worker.connectors.responses import error_fields, json_type, require

log = structlog.get_logger(__name__)

PAGE_SIZE = 50  # the largest page the legacy APIs documented; v1 names no maximum
STREAMS = ("memberships", "payments")
SNAPSHOT_STREAMS = frozenset({"memberships"})  # listed in full every run (no change filter)
MARK = MarkKeys(INSTANT, "created_after", "skip_ids")


class WhopConnector(HttpConnector):
    """Syncs a Whop company's memberships and payments."""

    provider = Provider.WHOP
    streams: ClassVar[tuple[str, ...]] = STREAMS
    required_credentials: tuple[str, ...] = ("api_key", "company_id")
    default_base_url: ClassVar[str] = "https://api.whop.com"
    max_page_size: ClassVar[int] = PAGE_SIZE

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        # Whop's error type; never its message.
        detail = error_fields(("error", "type"))
        return ProviderClient(base_url, options=options, error_detail=detail)

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """`api_key` (a company API key) and `company_id` (`biz_...`)."""
        reject_unknown(raw, self.required_credentials, provider=self.provider)
        key = credential(raw, "api_key", provider=self.provider)
        if key != key.strip() or " " in key:
            raise InvalidCredentials("whop credentials: api_key must not contain spaces")
        company = credential(raw, "company_id", provider=self.provider)
        if not company.startswith("biz_"):
            raise InvalidCredentials("whop credentials: company_id must start with biz_")
        return {"api_key": key, "company_id": company}

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        credentials = self.validate_credentials(ctx.credentials)
        api = self.client.authorized(BearerAuth(credentials["api_key"]))
        company = credentials["company_id"]

        def sync_stream(stream: str, tally: SyncTally) -> None:
            stored = ctx.cursors.get(stream) or {}
            cursor = restore(stream, tally, lambda: MARK.load(stored), lambda: Mark(MARK))
            _StreamSync(api, stream, company, self.page_size, cursor, sink, tally).run()
            log.debug("sync.stream_done", integration_id=ctx.integration_id, stream=stream)

        streams = select_streams(ctx.filters, STREAMS, provider=self.provider)
        return sync_streams(streams, sync_stream)


@dataclass
class _StreamSync:
    """Pages through one stream, storing each page with the cursor that follows it."""

    api: ProviderSession
    stream: str
    company: str
    page_size: int
    cursor: Mark[datetime]
    sink: PageSink
    tally: SyncTally
    unreadable: int = 0

    @property
    def path(self) -> str:
        return f"/api/v1/{self.stream}"

    def run(self) -> None:
        params: dict[str, Any] = {
            "company_id": self.company,
            "first": self.page_size,
            "order": "created_at",
            "direction": "asc",
        }
        if self.cursor.at is not None:
            params["created_after"] = self.cursor.at
        while True:
            payload = self.api.get_json(self.path, params)
            data = require(payload, "data", list, endpoint=f"GET {self.path}")
            page_info = require(payload, "page_info", dict, endpoint=f"GET {self.path}")
            more, end_cursor = page_info.get("has_next_page"), page_info.get("end_cursor")
            if not isinstance(more, bool) or (more and not isinstance(end_cursor, str)):
                raise MalformedResponse(
                    f"GET {self.path}: page_info needs has_next_page and end_cursor, "
                    f"got {json_type(more)} and {json_type(end_cursor)}"
                )
            records = self._records(data)
            if not more and self.stream in SNAPSHOT_STREAMS:
                self.cursor = Mark(MARK)  # listed in full: the next run starts over
            self.tally.store(self.sink, Page(self.stream, records, self.cursor.dump()))
            if not more:
                break
            params["after"] = end_cursor
        if self.unreadable:
            self.tally.warn(
                f"{self.stream}: skipped {self.unreadable} objects without a readable id/created_at"
            )

    def _records(self, data: list[Any]) -> tuple[Record, ...]:
        """The page's new records, moving the mark past them; unreadable objects are counted."""
        records: list[Record] = []
        for obj in data:
            external_id = obj.get("id") if isinstance(obj, dict) else None
            created_at = obj.get("created_at") if isinstance(obj, dict) else None
            if not isinstance(external_id, str) or not instant(created_at):
                self.unreadable += 1
            elif not self.cursor.holds(external_id, str(created_at)):
                self.cursor.add(external_id, str(created_at))
                records.append((external_id, obj))
        return tuple(records)
