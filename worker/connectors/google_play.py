"""The Google Play Console connector: an app's voided purchases and reviews.

Documented API used (Google Play Developer API, Android Publisher v3,
https://developers.google.com/android-publisher):

- OAuth 2.0 for server-to-server applications: the service account's JSON key
  (`client_email`, `private_key`, `token_uri`) signs an RS256 JWT (`iss` = client_email,
  `scope` = https://www.googleapis.com/auth/androidpublisher, `aud` = token_uri, `iat`,
  `exp` at most an hour later), exchanged by `POST token_uri` with
  `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` for `{"access_token",
  "expires_in", "token_type"}`; an `invalid_grant` (key deleted, disabled or not
  matching), `invalid_client` or `unauthorized_client` error is an auth failure, any other
  refusal fails the sync naming its code;
- base `https://androidpublisher.googleapis.com`, `Authorization: Bearer <access token>`:
  `GET /androidpublisher/v3/applications/{packageName}/purchases/voidedpurchases` with
  `startTime` (ms, at most 30 days back, ignored with a token), `type=1` (subscriptions too),
  `maxResults` (up to 1000) and `token`; `GET .../applications/{packageName}/reviews` (the
  last week's reviews) with `maxResults` and `token`. Lists answer `{"<items>": [...],
  "tokenPagination": {"nextPageToken"}}`, the list left out when empty;
- errors `{"error": {"code", "message", "status"}}`: 401/403 auth, 429 RESOURCE_EXHAUSTED.

`purchases.subscriptionsv2.get` needs a purchase token (from real-time developer
notifications), so it is no listable stream; voided purchases are.

The key's `token_uri` must be Google's documented token endpoint; only when the connector
has a base URL override (tests, the demo) is a `token_uri` under that base URL accepted
instead, so a key can never make the worker send a signed assertion to another host.

A stream's cursor, a `worker.connectors.cursors.WalkCursor`: `mark`/`mark_ids` (the newest
`voidedTimeMillis`, or review `lastModified` second, stored by a completed walk and the ids
at exactly it; the next lower bound), during a walk also `page` (the next page's token) and
`run`/`run_ids`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
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
from worker.connectors.cursors import EPOCH, WalkCursor, WalkKeys, epoch
from worker.connectors.errors import AuthFailed, MalformedResponse, RequestRejected
from worker.connectors.http import HeaderAuth, HttpOptions, ProviderClient, ProviderSession
from worker.connectors.responses import error_fields, json_type, require

# The documented token endpoint, and the one older key files name.
GOOGLE_TOKEN_URIS = (
    "https://oauth2.googleapis.com/token",
    "https://accounts.google.com/o/oauth2/token",
)
SCOPE = "https://www.googleapis.com/auth/androidpublisher"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # seconds: Google's maximum for the signed assertion
REFRESH_MARGIN = 300.0  # seconds before expiry a token is renewed, so no call meets a dead one
VOIDED_WINDOW = timedelta(days=30)  # startTime may not reach further back
# The token endpoint's OAuth errors that mean the key itself is refused (RFC 6749 §5.2).
AUTH_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
CURSOR = WalkKeys(EPOCH)
_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class _Stream:
    path: str  # under /androidpublisher/v3/applications/{packageName}
    items: str
    max_page: int
    key: Callable[[dict[str, Any]], object]
    stamp: Callable[[dict[str, Any]], object]


def _review_stamp(review: dict[str, Any]) -> object:
    try:
        return review["comments"][0]["userComment"]["lastModified"]["seconds"]
    except (KeyError, IndexError, TypeError):
        return None


STREAMS = {
    "voided_purchases": _Stream(
        "/purchases/voidedpurchases",
        "voidedPurchases",
        1000,
        lambda obj: obj.get("orderId"),
        lambda obj: obj.get("voidedTimeMillis"),
    ),
    "reviews": _Stream("/reviews", "reviews", 100, lambda obj: obj.get("reviewId"), _review_stamp),
}


class GooglePlayConnector(HttpConnector):
    """Syncs a Google Play app's voided purchases and reviews."""

    provider = Provider.GOOGLE_PLAY_CONSOLE
    streams: ClassVar[tuple[str, ...]] = tuple(STREAMS)
    required_credentials: tuple[str, ...] = ("service_account_json", "package_name")
    default_base_url: ClassVar[str] = "https://androidpublisher.googleapis.com"
    max_page_size: ClassVar[int] = max(stream.max_page for stream in STREAMS.values())

    def make_client(self, base_url: str, options: HttpOptions) -> ProviderClient:
        # The OAuth `error` code, or the API error's `status`; never a message.
        detail = error_fields(("error",), ("error", "status"))
        return ProviderClient(base_url, options=options, error_detail=detail)

    def validate_credentials(self, raw: Mapping[str, Any]) -> dict[str, str]:
        """The service account's JSON key file (as text) and the app's package name."""
        return self._read(raw, check_key=True)[0]

    def sync(self, ctx: SyncContext, sink: PageSink) -> SyncResult:
        # The key's consistency check (a tenth of a second) ran when it was stored.
        credentials, account = self._read(ctx.credentials, check_key=False)
        token = _AccessToken(self.client, account)
        token.refresh()
        api = self.client.authorized(HeaderAuth(token.headers))
        base = f"/androidpublisher/v3/applications/{credentials['package_name']}"
        oldest = int((ctx.now - VOIDED_WINDOW).timestamp() * 1000) + 60_000  # a minute's slack

        def sync_stream(name: str, tally: SyncTally) -> None:
            cursor = WalkCursor.restore(CURSOR, ctx.cursors.get(name), name, tally)
            size = min(self.page_size, STREAMS[name].max_page)
            _TokenWalk(api, base, name, size, cursor, sink, tally).run(oldest)

        streams = select_streams(ctx.filters, [*STREAMS], provider=self.provider)
        return sync_streams(streams, sync_stream)

    def _read(
        self, raw: Mapping[str, Any], *, check_key: bool
    ) -> tuple[dict[str, str], _ServiceAccount]:
        reject_unknown(raw, self.required_credentials, provider=self.provider)
        # A JSON key file (its private key spans lines); only its fields reach a request.
        key_file = credential(
            raw, "service_account_json", provider=self.provider, header_safe=False
        )
        package = credential(raw, "package_name", provider=self.provider)
        account = self._service_account(key_file, check_key)
        if not _PACKAGE.fullmatch(package):
            raise InvalidCredentials(f"{self.provider} credentials: package_name is not valid")
        return {"service_account_json": key_file, "package_name": package}, account

    def _service_account(self, key_file: str, check_key: bool) -> _ServiceAccount:
        """The key file's fields, or `InvalidCredentials` naming what is wrong (never a value)."""
        prefix = f"{self.provider} credentials: service_account_json"
        try:
            info = json.loads(key_file)
        except (ValueError, RecursionError):
            raise InvalidCredentials(f"{prefix} is not valid JSON") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise InvalidCredentials(f"{prefix} is not a service account key file")
        for name in ("client_email", "private_key", "token_uri"):
            if not isinstance(info.get(name), str) or not info[name]:
                raise InvalidCredentials(f"{prefix}: {name} is required")
        try:
            key = load_pem_private_key(
                info["private_key"].encode(),
                password=None,
                unsafe_skip_rsa_key_validation=not check_key,
            )
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidCredentials(f"{prefix}: private_key must be an RSA private key in PEM")
        uri = info["token_uri"]
        override = self.base_url.rstrip("/") + "/" if self.base_url else None
        if uri not in GOOGLE_TOKEN_URIS and not (override and uri.startswith(override)):
            raise InvalidCredentials(f"{prefix}: token_uri must be Google's token endpoint")
        return _ServiceAccount(info["client_email"], uri, key)


@dataclass(frozen=True)
class _ServiceAccount:
    client_email: str
    token_uri: str
    key: rsa.RSAPrivateKey = field(repr=False)


class _AccessToken:
    """An OAuth access token for the service account, renewed before it expires."""

    def __init__(self, client: ProviderClient, account: _ServiceAccount) -> None:
        self._session = client.authorized()
        self._clock = client.options.wall_clock
        self._account = account
        self._token = ""
        self._expires = 0.0

    def headers(self, _: httpx.Request) -> dict[str, str]:
        if self._clock() >= self._expires - REFRESH_MARGIN:
            self.refresh()
        return {"Authorization": f"Bearer {self._token}"}

    def refresh(self) -> None:
        uri, now = self._account.token_uri, int(self._clock())
        claims: dict[str, Any] = {"iss": self._account.client_email, "scope": SCOPE, "aud": uri}
        claims.update(iat=now, exp=now + ASSERTION_LIFETIME)
        assertion = jwt.encode(claims, self._account.key, algorithm="RS256")
        try:
            form = {"grant_type": GRANT_TYPE, "assertion": assertion}
            payload = self._session.post_form(uri, form)
        except RequestRejected as exc:
            if exc.code in AUTH_ERRORS:
                raise AuthFailed(str(exc)) from exc
            raise
        self._token = require(payload, "access_token", str, endpoint=f"POST {uri}")
        self._expires = now + require(payload, "expires_in", int, endpoint=f"POST {uri}")

    def __repr__(self) -> str:
        return "_AccessToken(<redacted>)"


@dataclass
class _TokenWalk:
    """Pages through one list by `tokenPagination`, storing each page with its cursor."""

    api: ProviderSession
    base: str
    name: str
    page_size: int
    cursor: WalkCursor[int]
    sink: PageSink
    tally: SyncTally
    unreadable: int = 0

    def run(self, oldest: int) -> None:
        stream = STREAMS[self.name]
        while True:
            payload = self._fetch(oldest)
            if not isinstance(payload, dict):
                raise MalformedResponse(
                    f"{self.endpoint}: expected an object, got {json_type(payload)}"
                )
            items = payload.get(stream.items, [])
            if not isinstance(items, list):
                raise MalformedResponse(f"{self.endpoint}: key {stream.items!r} should be a list")
            records = self._records(stream, items)
            pagination = payload.get("tokenPagination") or {}
            next_token = pagination.get("nextPageToken") if isinstance(pagination, dict) else None
            if next_token is not None and not isinstance(next_token, str):
                raise MalformedResponse(f"{self.endpoint}: nextPageToken should be a string")
            self.cursor.page = next_token or None
            if not next_token:
                self.cursor.finish()
            self.tally.store(self.sink, Page(self.name, records, self.cursor.dump()))
            if not next_token:
                break
        if self.unreadable:
            self.tally.warn(f"{self.name}: skipped {self.unreadable} items without an id or time")

    @property
    def endpoint(self) -> str:
        return f"GET {self.base}{STREAMS[self.name].path}"

    def _fetch(self, oldest: int) -> Any:
        def fetch() -> Any:
            return self.api.get_json(self.base + STREAMS[self.name].path, self._params(oldest))

        expired = f"{self.name}: stored page token expired; listed again from the mark"
        return self.cursor.fetch(fetch, self.tally, expired)

    def _params(self, oldest: int) -> dict[str, Any]:
        params: dict[str, Any] = {"maxResults": self.page_size}
        voided, mark = self.name == "voided_purchases", self.cursor.mark.bound
        if voided:
            params["type"] = 1
        if self.cursor.page:
            params["token"] = self.cursor.page
        elif voided and mark is not None:
            if mark < oldest:
                self.tally.warn(f"{self.name}: voids older than 30 days are no longer listed")
            params["startTime"] = max(mark, oldest)
        return params

    def _records(self, stream: _Stream, items: list[Any]) -> tuple[Record, ...]:
        records: list[Record] = []
        for obj in items:
            key = stream.key(obj) if isinstance(obj, dict) else None
            stamp = epoch(stream.stamp(obj)) if isinstance(obj, dict) else None
            if not isinstance(key, str) or stamp is None:
                self.unreadable += 1
            elif self.cursor.take(key, stamp):
                records.append((key, obj))
        return tuple(records)
