"""A hostile provider: Stripe's list API shape, answering the ways a broken or malicious one does.

For fault injection (`benchmarks/faults.py`) and tests: point a `StripeConnector` at
it and watch every sync end, classified, in bounded memory.

    with FakeHostile() as hostile:
        connector = StripeConnector(base_url=hostile.url_for("same_cursor"))
        ...  # any key works: the path picks the behaviour
        connector = StripeConnector(base_url=hostile.url)
        ...  # credentials {"secret_key": hostile.key_for("gzip_bomb")}: the key picks it

A behaviour is chosen by the first path segment (`GET /<mode>/v1/<objects>`, i.e. a
base URL of `url_for(mode)`) or, on the plain `GET /v1/<objects>`, by the secret key
`sk_test_<mode>` (`key_for(mode)`); an unknown mode is Stripe's 401. `MODES`:

- `healthy`: a correct list of `HEALTHY_OBJECTS` objects, the baseline;
- `same_cursor`: `has_more: true` with the same page (so the same cursor) forever;
- `endless`: `has_more: true` with new objects, and so a new cursor, on every page;
- `slow_body`: a correct page sent one byte every `trickle_s` seconds (5 s by default);
- `gzip_bomb`: `Content-Encoding: gzip`, about 200 KiB inflating to `BOMB_MIB` MiB;
- `large_body`: a valid JSON page of `large_mib` MiB (50 by default), uncompressed;
- `deep_json`: a body of 100,000 nested arrays;
- `absurd`: healthy objects mixed with absurd ones: `created` 99999999999999999999999,
  `created` as a float and `NaN`/`Infinity` amounts, a NUL in an id, a 10,000-character
  id (`ABSURD_IDS` lists them; the healthy ones are `HEALTHY_OBJECTS` as usual);
- `garbage`: 200 with `Content-Type: application/json` and 4 KiB of random bytes;
- `forbidden`: Stripe's 403 `permission_error` (a restricted key lacking a permission).

Only the standard library and project fakes are imported: fakes ship with the package.
"""

from __future__ import annotations

import json
import random
import threading
import zlib
from collections.abc import Iterator
from functools import cache
from typing import Any, Final

from fakes.server import FakeServer, Request, Response

MODES: Final = (
    "healthy",
    "same_cursor",
    "endless",
    "slow_body",
    "gzip_bomb",
    "large_body",
    "deep_json",
    "absurd",
    "garbage",
    "forbidden",
)
START: Final = 1_700_000_000  # created of the first healthy object
HEALTHY_OBJECTS: Final = 3
BOMB_MIB: Final = 200
DEEP: Final = 100_000
GARBAGE_BYTES: Final = 4096
MIB: Final = 1024 * 1024
ABSURD_IDS: Final = (
    "obj_absurd_created",
    "obj_float_created",
    "obj_nan",
    "obj_infinity",
    "obj_\x00nul",
    "obj_" + "x" * 10_000,
)


def _objects(kind: str, count: int = HEALTHY_OBJECTS, first: int = 1) -> list[dict[str, Any]]:
    return [
        {"id": f"{kind[:3]}_{n:06d}", "object": kind[:-1], "created": START + n}
        for n in range(first + count - 1, first - 1, -1)  # newest first, like Stripe
    ]


def _absurd(kind: str) -> list[dict[str, Any]]:
    created, float_created, nan, infinity, nul, long_id = ABSURD_IDS
    return [
        {"id": created, "created": 99_999_999_999_999_999_999_999},
        {"id": float_created, "created": 1.7e9},
        {"id": nan, "created": START, "amount": float("nan")},
        {"id": infinity, "created": START, "amount": float("inf")},
        {"id": nul, "created": START},
        {"id": long_id, "created": START},
        *_objects(kind),
    ]


def _page(data: list[dict[str, Any]], has_more: bool) -> bytes:
    # allow_nan: Python writes NaN and Infinity, as a broken provider might.
    return json.dumps({"object": "list", "data": data, "has_more": has_more}).encode()


@cache
def _bomb() -> bytes:
    """`BOMB_MIB` MiB of zeros, gzipped to about 200 KiB (made once per process)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MIB)
    return b"".join(packer.compress(block) for _ in range(BOMB_MIB)) + packer.flush()


class FakeHostile(FakeServer):
    """A Stripe-shaped list API whose answers are hostile in the chosen `MODES` way."""

    def __init__(self, *, trickle_s: float = 5.0, large_mib: int = 50) -> None:
        super().__init__()
        self.trickle_s = trickle_s
        self.large_mib = large_mib
        self._served = 0  # endless pages served, numbering their new objects
        self._count_lock = threading.Lock()
        _bomb()  # made now (about a second, once per process), not while a client waits
        self.route("GET", "/v1/{kind}", self._by_key)
        self.route("GET", "/{mode}/v1/{kind}", self._by_path)

    def url_for(self, mode: str) -> str:
        """A base URL whose every list answers in `mode`'s way."""
        return f"{self.url}/{mode}"

    @staticmethod
    def key_for(mode: str) -> str:
        """A secret key whose every list answers in `mode`'s way (on the plain `url`)."""
        return f"sk_test_{mode}"

    def auth_error(self, request: Request) -> Response:
        return Response.json({"error": {"type": "invalid_request_error"}}, status=401)

    def _by_key(self, request: Request) -> Response:
        mode = (request.bearer_token or "").removeprefix("sk_test_")
        return self._answer(mode, request)

    def _by_path(self, request: Request) -> Response:
        return self._answer(request.path_params["mode"], request)

    def _answer(self, mode: str, request: Request) -> Response:
        answers = {
            "healthy": self._healthy,
            "same_cursor": self._same_cursor,
            "endless": self._endless,
            "slow_body": self._slow_body,
            "gzip_bomb": self._gzip_bomb,
            "large_body": self._large_body,
            "deep_json": self._deep_json,
            "absurd": self._absurd,
            "garbage": self._garbage,
            "forbidden": self._forbidden,
        }
        answer = answers.get(mode)
        return self.auth_error(request) if answer is None else answer(request.path_params["kind"])

    def _healthy(self, kind: str) -> Response:
        return Response(200, _page(_objects(kind), False), {"Content-Type": "application/json"})

    def _same_cursor(self, kind: str) -> Response:
        return Response(200, _page(_objects(kind), True), {"Content-Type": "application/json"})

    def _endless(self, kind: str) -> Response:
        with self._count_lock:
            self._served += 1
            first = self._served * 100
        page = _page(_objects(kind, 10, first), True)
        return Response(200, page, {"Content-Type": "application/json"})

    def _slow_body(self, kind: str) -> Response:
        body = _page(_objects(kind), False)
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        return Response(200, headers=headers, stream=self._trickle(body))

    def _trickle(self, body: bytes) -> Iterator[bytes]:
        for at in range(len(body)):
            if self._stopping.wait(self.trickle_s):
                return
            yield body[at : at + 1]

    def _gzip_bomb(self, kind: str) -> Response:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return Response(200, _bomb(), headers)

    def _large_body(self, kind: str) -> Response:
        filler = "x" * 1000
        count = self.large_mib * MIB // 1050
        data = [{"id": f"big_{n}", "created": START, "note": filler} for n in range(count)]
        return Response(200, _page(data, False), {"Content-Type": "application/json"})

    def _deep_json(self, kind: str) -> Response:
        return Response(200, b"[" * DEEP + b"]" * DEEP, {"Content-Type": "application/json"})

    def _absurd(self, kind: str) -> Response:
        return Response(200, _page(_absurd(kind), False), {"Content-Type": "application/json"})

    def _garbage(self, kind: str) -> Response:
        noise = random.randbytes(GARBAGE_BYTES)  # noqa: S311 - noise, not a secret
        return Response(200, noise, {"Content-Type": "application/json"})

    def _forbidden(self, kind: str) -> Response:
        body = {"error": {"type": "permission_error", "code": "restricted_key_permission"}}
        return Response.json(body, status=403)
