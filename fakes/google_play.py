"""A fake of Google's OAuth token endpoint and the Android Publisher v3 lists.

`add_service_account` makes a service account (an RSA key) allowed to read one package and
returns its JSON key file, whose `token_uri` is this fake's `/token`. The token endpoint
takes the JWT-bearer grant and checks the assertion as Google does (RS256 signature by the
account's key, `aud` = the token URI, the androidpublisher scope, at most an hour long);
a revoked or unknown account gets 400 `invalid_grant`. Access tokens (`ya29.fake-N`) open
the voided purchases list (oldest first, `startTime`, `maxResults`, page `token`) and the
reviews list (newest first). Lists leave out empty item lists and int64s are strings, as
Google's JSON does. `expire_tokens()` makes every issued token 401.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from fakes.server import FakeServer, Request, Response

SCOPE = "https://www.googleapis.com/auth/androidpublisher"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
START_MS = 1_767_000_000_000  # 2025-12-29: within the 30 days before the tests' "now"
SPACING_MS = 60_000
TOKEN_LIFETIME = 3599
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
}
BASE = "/androidpublisher/v3/applications/{package}"


@cache
def private_key(name: str) -> str:
    """A 2048-bit RSA key in PKCS#8 PEM, one per name (generating one takes a while)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


@dataclass
class _App:
    voided: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    clock: int = START_MS


@dataclass
class _Account:
    package: str
    public_key: Any


class FakeGooglePlay(FakeServer):
    """Google's token endpoint and the voided purchases and reviews lists."""

    def __init__(self) -> None:
        super().__init__()
        self._accounts: dict[str, _Account] = {}
        self._apps: dict[str, _App] = {}
        self._tokens: dict[str, str] = {}  # access token -> client_email
        self._data_lock = threading.Lock()
        self.assertions: list[dict[str, Any]] = []  # verified claims, for tests of the JWT
        self.route("POST", "/token", self._token)
        self.route("GET", BASE + "/purchases/voidedpurchases", partial(self._list, "voided"))
        self.route("GET", BASE + "/reviews", partial(self._list, "reviews"))

    def add_service_account(self, client_email: str, package: str) -> str:
        """Allow an account to read `package`; returns its JSON key file."""
        pem = private_key(client_email)
        public = _public_key(pem)
        with self._data_lock:
            self._accounts[client_email] = _Account(package, public)
            self._apps.setdefault(package, _App())
        return json.dumps(
            {
                "type": "service_account",
                "project_id": "demo-project",
                "private_key_id": "0123456789abcdef",
                "private_key": pem,
                "client_email": client_email,
                "client_id": "100000000000000000000",
                "token_uri": f"{self.url}/token",
            }
        )

    def add_voided(self, package: str, count: int) -> list[str]:
        """Void `count` more purchases, later than every earlier one; returns their order ids."""
        with self._data_lock:
            app = self._apps[package]
            made = [
                _voided(len(app.voided) + n + 1, app.clock + n * SPACING_MS) for n in range(count)
            ]
            app.voided.extend(made)
            app.clock += count * SPACING_MS
        return [obj["orderId"] for obj in made]

    def add_reviews(self, package: str, count: int) -> list[str]:
        """Add `count` newer reviews; returns their ids."""
        with self._data_lock:
            app = self._apps[package]
            made = []
            for _ in range(count):
                app.clock += SPACING_MS
                made.append(_review(len(app.reviews) + 1, app.clock // 1000))
                app.reviews.append(made[-1])
        return [obj["reviewId"] for obj in made]

    def edit_review(self, package: str, review_id: str) -> None:
        """The author edited the review: its comment's `lastModified` moves forward."""
        with self._data_lock:
            app = self._apps[package]
            app.clock += SPACING_MS
            review = next(obj for obj in app.reviews if obj["reviewId"] == review_id)
            review["comments"][0]["userComment"]["lastModified"]["seconds"] = str(app.clock // 1000)

    def expire_tokens(self) -> None:
        with self._data_lock:
            self._tokens.clear()

    def credential_of(self, request: Request) -> str | None:
        """The client email behind a request: the assertion's `iss`, or the token's owner."""
        if request.path == "/token":
            try:
                claims = jwt.decode(
                    request.form().get("assertion", ""), options={"verify_signature": False}
                )
            except jwt.PyJWTError:
                return None
            issuer = claims.get("iss")
            return issuer if isinstance(issuer, str) else None
        with self._data_lock:
            return self._tokens.get(request.bearer_token or "")

    def auth_error(self, request: Request) -> Response:
        if request.path == "/token":
            body = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return Response.json(body, 400)
        return self.error_response(401, "Request had invalid authentication credentials.")

    def error_response(self, status: int, message: str) -> Response:
        status_name = STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return Response.json(
            {"error": {"code": status, "message": message, "status": status_name}}, status
        )

    def _token(self, request: Request) -> Response:
        form = request.form()
        email = self.credential_of(request)
        with self._data_lock:
            account = self._accounts.get(email or "")
        if form.get("grant_type") != GRANT_TYPE:
            return Response.json({"error": "unsupported_grant_type"}, 400)
        try:
            claims = jwt.decode(
                form.get("assertion", ""),
                account.public_key if account else "",
                algorithms=["RS256"],
                audience=f"{self.url}/token",
                options={"verify_exp": False, "verify_iat": False, "require": ["iat", "exp"]},
            )
        except (jwt.PyJWTError, ValueError):
            return self.auth_error(request)
        if claims.get("scope") != SCOPE or not 0 < claims["exp"] - claims["iat"] <= 3600:
            return Response.json({"error": "invalid_scope"}, 400)
        with self._data_lock:
            self.assertions.append(claims)
            token = f"ya29.fake-{len(self.assertions)}"
            self._tokens[token] = claims["iss"]
        return Response.json(
            {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"}
        )

    def _list(self, kind: str, request: Request) -> Response:
        with self._data_lock:
            account = self._accounts.get(self._tokens.get(request.bearer_token or "", ""))
            app = self._apps.get(request.path_params["package"])
            objects = json.loads(json.dumps(getattr(app, kind))) if app else []
        if account is None:
            return self.auth_error(request)
        if account.package != request.path_params["package"]:
            return self.error_response(403, "The current user has insufficient permissions.")
        try:
            size = int(request.query.get("maxResults", 100))
            start = _offset(request.query.get("token"))
            since = int(request.query.get("startTime", 0))
        except ValueError:
            return self.error_response(400, "Invalid pagination token.")
        if kind == "voided":
            objects = [obj for obj in objects if int(obj["voidedTimeMillis"]) >= since]
        else:
            objects.sort(key=lambda obj: -int(_seconds(obj)))
        page, body = objects[start : start + size], {}
        if page:
            body[{"voided": "voidedPurchases", "reviews": "reviews"}[kind]] = page
        if start + size < len(objects):
            body["tokenPagination"] = {"nextPageToken": _token_for(start + size)}
        body["pageInfo"] = {
            "totalResults": len(objects),
            "resultPerPage": size,
            "startIndex": start,
        }
        return Response.json(body)


@cache
def _public_key(pem: str) -> Any:
    return load_pem_private_key(pem.encode(), password=None).public_key()


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    decoded = base64.urlsafe_b64decode(token.encode()).decode()
    if not decoded.startswith("offset:"):
        raise ValueError("not a page token")
    return int(decoded.removeprefix("offset:"))


def _token_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _seconds(review: dict[str, Any]) -> str:
    return str(review["comments"][0]["userComment"]["lastModified"]["seconds"])


def _voided(number: int, at: int) -> dict[str, Any]:
    return {
        "kind": "androidpublisher#voidedPurchase",
        "purchaseToken": f"token-{number:06d}",
        "orderId": f"GPA.3371-{number:04d}-0000-00000",
        "purchaseTimeMillis": str(at - 86_400_000),
        "voidedTimeMillis": str(at),
        "voidedSource": 1,
        "voidedReason": 0,
        "voidedQuantity": 1,
    }


def _review(number: int, seconds: int) -> dict[str, Any]:
    comment = {"text": f"Review {number}", "starRating": 1 + number % 5}
    comment["lastModified"] = {"seconds": str(seconds), "nanos": 0}
    return {
        "reviewId": f"gp:review-{number:05d}",
        "authorName": f"User {number}",
        "comments": [{"userComment": comment}],
    }
