"""The App Store Connect connector: daily sales and subscription reports.

Documented API used (App Store Connect API 1.x, https://developer.apple.com/documentation/appstoreconnectapi):

- base `https://api.appstoreconnect.apple.com`, `Authorization: Bearer <JWT>`: ES256-signed
  with the team's API key (the .p8 PEM), header `kid` = key id, payload `iss` = issuer id,
  `iat`, `exp` at most 20 minutes later, `aud` = "appstoreconnect-v1" ("Generating tokens
  for API requests"); sales reports need a Team key with the Sales or Finance role;
- `GET /v1/salesReports` ("Download sales and trends reports") with `filter[frequency]=DAILY`,
  `filter[reportDate]=YYYY-MM-DD`, `filter[reportType]`, `filter[reportSubType]=SUMMARY`,
  `filter[vendorNumber]`, `filter[version]`: SALES 1_0 and SUBSCRIPTION 1_3 (1_2 is no longer
  served); the answer is a gzip-compressed TSV (`Content-Type: application/a-gzip`), header
  row first;
- errors are JSON:API `{"errors": [{"status", "code", "title", "detail"}]}`: 401 NOT_AUTHORIZED,
  403 for a key without the role, 404 NOT_FOUND for a day without a report, 429
  RATE_LIMIT_EXCEEDED; every answer carries `X-Rate-Limit: user-hour-lim:N;user-hour-rem:M;`
  over a rolling hour ("Identifying rate limits").

Incremental by report date: a stream's cursor is `last_date`, the last day stored; a sync
asks for each day after it up to yesterday (UTC), one page per day, records keyed
`<date>:<row>`. A 404 for a day less than NOT_FINAL_DAYS old means "not out yet": the stream
stops there, which is not an error. Apple writes no report for a day without sales, so a
404 for an older day is an empty day and the cursor moves past it. A first sync starts
`lookback_days` back; Apple keeps daily reports for a year.
"""

from __future__ import annotations

import gzip
import re
import uuid
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, ClassVar

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

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
from worker.connectors.errors import MalformedResponse, RequestRejected
from worker.connectors.http import HeaderAuth, HttpOptions, ProviderClient, ProviderSession
from worker.connectors.responses import error_fields

log = structlog.get_logger(__name__)

ENDPOINT = "/v1/salesReports"
AUDIENCE = "appstoreconnect-v1"
TOKEN_LIFETIME = 15 * 60  # seconds; Apple refuses tokens living longer than 20 minutes
TOKEN_REUSE = 10 * 60  # re-sign before a long download could outlive the token
LOOKBACK_DAYS = 30  # a first sync's reach: a month of history in a few dozen requests
RETENTION_DAYS = 365  # Apple keeps daily reports for a year
NOT_FINAL_DAYS = 2  # a day's report is out by 5 am PT the next day; allow one day's delay
ROLLING_HOUR_PAUSE = 60.0  # seconds; the rolling hour frees a slot as old requests age out
_KEY_ID = re.compile(r"[A-Z0-9]{10}")
_VENDOR = re.compile(r"[0-9]{1,12}")
_REMAINING = re.compile(r"user-hour-rem:(-?\d+)")


@dataclass(frozen=True)
class _Report:
    report_type: str
    version: str


REPORTS = {"sales": _Report("SALES", "1_0"), "subscriptions": _Report("SUBSCRIPTION", "1_3")}


class AppStoreConnectConnector(HttpConnector):
    """Syncs a vendor's daily App Store sales and subscription reports."""

    provider = Provider.APP_STORE_CONNECT
    streams: ClassVar[tuple[str, ...]] = tuple(REPORTS)
    required_credentials: tuple[str, ...] = ("issuer_id", "key_id", "private_key", "vendor_number")
    default_base_url: ClassVar[str] = "https://api.appstoreconnect.apple.com"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        http: HttpOptions | None = None,
        lookback_days: int = LOOKBACK_DAYS,
    ) -> None:
        if not 1 <= lookback_days <= RETENTION_DAYS:
            raise ValueError(f"lookback_days must be between 1 and {RETENTION_DAYS}")
        super().__init__(base_url=base_url, http=http)
        self.lookback_days = lookback_days

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        detail = error_fields(("errors", 0, "code"))  # the first error's; never title or detail
        return ProviderClient(
            base_url, options=options, rate_limit=_rate_limit, error_detail=detail
        )

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """Issuer id (a UUID), key id, the .p8 private key (EC P-256 PEM) and vendor number."""
        reject_unknown(raw, self.required_credentials, provider=self.provider)
        names = self.required_credentials
        # The .p8 key spans lines and only signs the token; the other fields reach requests.
        valid = {
            name: credential(raw, name, provider=self.provider, header_safe=name != "private_key")
            for name in names
        }
        prefix = f"{self.provider} credentials:"
        try:
            uuid.UUID(valid["issuer_id"])
        except ValueError:
            raise InvalidCredentials(f"{prefix} issuer_id must be a UUID") from None
        if not _KEY_ID.fullmatch(valid["key_id"]):
            raise InvalidCredentials(f"{prefix} key_id must be 10 capital letters or digits")
        if not _VENDOR.fullmatch(valid["vendor_number"]):
            raise InvalidCredentials(f"{prefix} vendor_number must be digits")
        _check_private_key(valid["private_key"], prefix)
        return valid

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        credentials = self.validate_credentials(ctx.credentials)
        signer = _TokenSigner(credentials, self.client.options.wall_clock)
        api = self.client.authorized(HeaderAuth(signer.headers))
        today = ctx.now.date()

        def sync_stream(stream: str, tally: SyncTally) -> None:
            start = _start(ctx.cursors.get(stream), stream, today, self.lookback_days, tally)
            _ReportDays(api, stream, credentials["vendor_number"], sink, tally).run(start, today)

        streams = select_streams(ctx.filters, [*REPORTS], provider=self.provider)
        return sync_streams(streams, sync_stream)


def _check_private_key(pem: str, prefix: str) -> None:
    """`InvalidCredentials` unless `pem` is an EC P-256 private key; never echoes it."""
    message = f"{prefix} private_key must be the .p8 key: an EC P-256 private key in PEM"
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):  # not PEM, encrypted, or an unsupported key
        raise InvalidCredentials(message) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise InvalidCredentials(message)


class _TokenSigner:
    """Signs the short-lived ES256 JWTs Apple asks for, re-signing well before they expire."""

    def __init__(self, credentials: Mapping[str, str], clock: Callable[[], float]) -> None:
        self._credentials = credentials
        self._clock = clock
        self._token: str | None = None
        self._signed_at = 0.0

    def headers(self, _: httpx.Request) -> dict[str, str]:
        now = self._clock()
        if self._token is None or now - self._signed_at > TOKEN_REUSE:
            claims = {
                "iss": self._credentials["issuer_id"],
                "iat": int(now),
                "exp": int(now) + TOKEN_LIFETIME,
                "aud": AUDIENCE,
            }
            headers = {"kid": self._credentials["key_id"], "typ": "JWT"}
            self._token = jwt.encode(
                claims, self._credentials["private_key"], algorithm="ES256", headers=headers
            )
            self._signed_at = now
        return {"Authorization": f"Bearer {self._token}"}

    def __repr__(self) -> str:
        return "_TokenSigner(<redacted>)"


def _rate_limit(response: httpx.Response, now: float) -> float | None:
    """A pause once `X-Rate-Limit` says the rolling hour's requests are spent."""
    found = _REMAINING.search(response.headers.get("x-rate-limit", ""))
    return ROLLING_HOUR_PAUSE if found and int(found.group(1)) <= 0 else None


def _start(
    stored: Mapping[str, Any] | None, stream: str, today: date, lookback: int, tally: SyncTally
) -> date:
    """The first day to ask for: after the stored `last_date`, else `lookback` days ago."""
    last = (stored or {}).get("last_date")
    try:
        start = date.fromisoformat(last) + timedelta(days=1) if last else None
    except (TypeError, ValueError):
        tally.warn(
            f"{stream}: stored cursor unreadable (last_date {last!r}); synced from the start"
        )
        start = None
    oldest = today - timedelta(days=RETENTION_DAYS)
    if start is not None and start < oldest:
        tally.warn(f"{stream}: reports before {oldest} are no longer kept by Apple; skipped")
    return max(start or today - timedelta(days=lookback), oldest)


@dataclass
class _ReportDays:
    """Downloads one report type day by day, each day a page stored with its date."""

    api: ProviderSession
    stream: str
    vendor_number: str
    sink: PageSink
    tally: SyncTally
    skipped: int = 0

    def run(self, day: date, today: date) -> None:
        while day < today:
            try:
                body = self.api.get_bytes(ENDPOINT, self._params(day))
            except RequestRejected as exc:
                if exc.status != 404:
                    raise
                if (today - day).days <= NOT_FINAL_DAYS:
                    log.info("sync.report_not_out_yet", stream=self.stream, day=day.isoformat())
                    break
                records: tuple[Record, ...] = ()  # no sales that day: Apple writes no report
            else:
                records = self._records(body, day)
            self.tally.store(self.sink, Page(self.stream, records, {"last_date": day.isoformat()}))
            day += timedelta(days=1)
        if self.skipped:
            self.tally.warn(f"{self.stream}: skipped {self.skipped} rows not matching the header")

    def _params(self, day: date) -> dict[str, str]:
        report = REPORTS[self.stream]
        return {
            "filter[frequency]": "DAILY",
            "filter[reportDate]": day.isoformat(),
            "filter[reportSubType]": "SUMMARY",
            "filter[reportType]": report.report_type,
            "filter[vendorNumber]": self.vendor_number,
            "filter[version]": report.version,
        }

    def _records(self, body: bytes, day: date) -> tuple[Record, ...]:
        """The report's rows as records keyed by date and row number."""
        where = f"GET {ENDPOINT}: the {day} {REPORTS[self.stream].report_type} report"
        try:
            text = gzip.decompress(body).decode("utf-8")
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedResponse(f"{where} is not gzip-compressed") from exc
        except UnicodeDecodeError as exc:
            raise MalformedResponse(f"{where} is not UTF-8 text") from exc
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            raise MalformedResponse(f"{where} has no header row")
        header = lines[0].split("\t")
        records: list[Record] = []
        for number, line in enumerate(lines[1:], start=1):
            cells = line.split("\t")
            if len(cells) != len(header):
                self.skipped += 1
                continue
            row: dict[str, Any] = dict(zip(header, cells, strict=True))
            records.append((f"{day}:{number}", {**row, "report_date": day.isoformat()}))
        return tuple(records)
