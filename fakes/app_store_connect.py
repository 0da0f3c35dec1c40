"""A fake of App Store Connect's sales reports: `GET /v1/salesReports` behind ES256 JWTs.

A team is an API key (key id, issuer id, the public half of its .p8 key) and a vendor
number. Requests must carry a JWT signed with that key: `kid` = key id, `iss` = issuer id,
`aud` = appstoreconnect-v1, at most 20 minutes between `iat` and `exp` (the fake does not
compare them with its own clock: tests run on a fixed one). Reports are gzip-compressed
TSV; a day without one answers 404 NOT_FOUND as Apple does. Every answer carries
`X-Rate-Limit`. `revoke(key_id)` makes that key's tokens 401.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from fakes.server import FakeServer, Request, Response

AUDIENCE = "appstoreconnect-v1"
MAX_TOKEN_LIFETIME = 20 * 60  # Apple's documented ceiling
VERSIONS = {"SALES": "1_0", "SUBSCRIPTION": "1_3"}
COLUMNS = {
    "SALES": [
        "Provider",
        "SKU",
        "Title",
        "Units",
        "Developer Proceeds",
        "Begin Date",
        "Country Code",
    ],
    "SUBSCRIPTION": [
        "App Name",
        "Subscription Name",
        "Subscription Apple ID",
        "Active Standard Price Subscriptions",
        "Country",
    ],
}
HOURLY_LIMIT = 3500
CODES = {
    400: "PARAMETER_ERROR.INVALID",
    401: "NOT_AUTHORIZED",
    403: "FORBIDDEN_ERROR",
    404: "NOT_FOUND",
    429: "RATE_LIMIT_EXCEEDED",
}


def make_private_key() -> str:
    """A fresh .p8-style key: an EC P-256 private key in PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@dataclass
class _Team:
    issuer_id: str
    public_key: Any
    vendor_number: str
    reports: dict[tuple[str, str], list[list[str]]] = field(default_factory=dict)


class FakeAppStoreConnect(FakeServer):
    """`GET /v1/salesReports` over per-key teams."""

    def __init__(self) -> None:
        super().__init__()
        self._teams: dict[str, _Team] = {}
        self._refused: set[str] = set()
        self._data_lock = threading.Lock()
        self.tokens: list[str] = []  # every bearer token received, for tests of the JWT itself
        self.route("GET", "/v1/salesReports", self._sales_reports)

    def add_team(self, key_id: str, issuer_id: str, private_key: str, vendor_number: str) -> None:
        """Register an API key (its public half) and the vendor it may read."""
        public = load_pem_private_key(private_key.encode(), password=None).public_key()
        with self._data_lock:
            self._teams[key_id] = _Team(issuer_id, public, vendor_number)

    def add_report(
        self, key_id: str, report_type: str, day: date, *, rows: int, broken: int = 0
    ) -> None:
        """A day's report with `rows` rows (plus `broken` rows with a missing column)."""
        columns = COLUMNS[report_type]
        made = [[f"{name} {day} {n}" for name in columns] for n in range(1, rows + 1)]
        made += [[f"broken {n}"] for n in range(broken)]
        with self._data_lock:
            self._teams[key_id].reports[(report_type, day.isoformat())] = made

    def refuse(self, report_type: str) -> None:
        """Answer 400 for this report type, as for a vendor without such reports."""
        with self._data_lock:
            self._refused.add(report_type)

    def credential_of(self, request: Request) -> str | None:
        """The key id (`kid`) of the request's token: what `revoke` takes."""
        token = request.bearer_token
        try:
            kid = jwt.get_unverified_header(token).get("kid") if token else None
        except jwt.PyJWTError:
            return None
        return kid if isinstance(kid, str) else None

    def auth_error(self, request: Request) -> Response:
        return self.error_response(401, "Authentication credentials are missing or invalid.")

    def error_response(self, status: int, message: str) -> Response:
        error = {
            "status": str(status),
            "code": CODES.get(status, "UNEXPECTED_ERROR"),
            "title": message,
            "detail": message,
        }
        return Response.json({"errors": [error]}, status, self._rate_headers())

    def _rate_headers(self) -> dict[str, str]:
        return {"X-Rate-Limit": f"user-hour-lim:{HOURLY_LIMIT};user-hour-rem:{HOURLY_LIMIT - 1};"}

    def _team(self, request: Request) -> _Team | None:
        kid = self.credential_of(request)
        with self._data_lock:
            team = self._teams.get(kid or "")
            self.tokens.append(request.bearer_token or "")
        if team is None or request.bearer_token is None:
            return None
        try:
            claims = jwt.decode(
                request.bearer_token,
                team.public_key,
                algorithms=["ES256"],
                audience=AUDIENCE,
                issuer=team.issuer_id,
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
            )
        except jwt.PyJWTError:
            return None
        return team if 0 < claims["exp"] - claims["iat"] <= MAX_TOKEN_LIFETIME else None

    def _sales_reports(self, request: Request) -> Response:
        team = self._team(request)
        if team is None:
            return self.auth_error(request)
        query = request.query
        kind = query.get("filter[reportType]", "")
        if (
            query.get("filter[frequency]") != "DAILY"
            or query.get("filter[reportSubType]") != "SUMMARY"
            or VERSIONS.get(kind) != query.get("filter[version]")
            or kind in self._refused
        ):
            return self.error_response(400, "An invalid value was provided for a parameter.")
        if query.get("filter[vendorNumber]") != team.vendor_number:
            return self.error_response(403, "The API key cannot read this vendor's reports.")
        with self._data_lock:
            rows = team.reports.get((kind, query.get("filter[reportDate]", "")))
        if rows is None:
            return self.error_response(404, "There were no sales for the date specified.")
        lines = ["\t".join(COLUMNS[kind]), *("\t".join(row) for row in rows)]
        body = gzip.compress(("\n".join(lines) + "\n").encode())
        return Response(200, body, {"Content-Type": "application/a-gzip", **self._rate_headers()})
