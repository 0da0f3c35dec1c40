"""Reading a response body within a total deadline and a decoded-size cap.

httpx's timeouts are per read: a body sent one byte every few seconds never trips
them, and `response.read()` inflates a gzip body whole, so a 200 KB bomb becomes
200 MB in memory. The HTTP layer therefore streams every body through `read_body`,
which decodes gzip and deflate itself, a bounded slice at a time
(`zlib.decompressobj.decompress(data, max_length)`), counts the decoded bytes and
checks the clock after every chunk:

- past the request's deadline: `RequestTimedOut` (retried like any timeout);
- past `limit` decoded bytes: `ResponseTooLarge`, before more than `limit` plus one
  slice is ever held;
- an encoding other than gzip, deflate or none (the client asks for only those):
  `MalformedResponse`, as is a body that does not inflate.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Final, Protocol

import httpx

from worker.connectors.errors import MalformedResponse, RequestTimedOut, ResponseTooLarge

# What the client asks for: encodings `read_body` can inflate in bounded slices.
ACCEPT_ENCODING: Final = "gzip, deflate"
# The most decoded bytes produced from one input slice before counting them.
SLICE: Final = 64 * 1024
MIB: Final = 1024 * 1024


class _Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...


class _Identity:
    def decode(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data


class _Inflate:
    """zlib's streaming inflate, at most `SLICE` bytes out per step."""

    def __init__(self, wbits: int) -> None:
        self._inflate = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        while data:
            out = self._inflate.decompress(data, SLICE)
            data = self._inflate.unconsumed_tail
            if out:
                yield out
            if self._inflate.eof:
                return


DECODERS: Final[dict[str, Callable[[], _Decoder]]] = {
    "": _Identity,
    "identity": _Identity,
    "gzip": lambda: _Inflate(16 + zlib.MAX_WBITS),
    "x-gzip": lambda: _Inflate(16 + zlib.MAX_WBITS),
    # HTTP's deflate is zlib-wrapped; +32 also reads a gzip header some servers send.
    "deflate": lambda: _Inflate(32 + zlib.MAX_WBITS),
}


def read_body(
    response: httpx.Response,
    endpoint: str,
    *,
    limit: int,
    deadline: float,
    monotonic: Callable[[], float],
) -> None:
    """Read and decode `response`'s body into it (`response.content`), within both bounds."""
    if response.is_stream_consumed:  # built in memory (`httpx.MockTransport`): read already
        _check_size(len(response.content), limit, endpoint)
        return
    encoding = response.headers.get("content-encoding", "").strip().lower()
    make = DECODERS.get(encoding)
    if make is None:
        raise MalformedResponse(f"{endpoint}: unsupported content-encoding {encoding[:20]!r}")
    decoder = make()
    parts: list[bytes] = []
    size = 0
    try:
        for raw in response.iter_raw():
            for part in decoder.decode(raw):
                size += len(part)
                _check_size(size, limit, endpoint)
                parts.append(part)
            if monotonic() > deadline:
                raise RequestTimedOut(f"{endpoint}: the response body was still arriving")
    except zlib.error as exc:
        raise MalformedResponse(f"{endpoint}: the {encoding} body does not decode") from exc
    # What `httpx.Response.read()` itself sets: the body, for `.content` and `.json()`.
    response._content = b"".join(parts)


def _check_size(size: int, limit: int, endpoint: str) -> None:
    if size > limit:
        raise ResponseTooLarge(
            f"{endpoint}: the response body decodes to more than {limit / MIB:g} MiB "
            "(SYNCWORKER_MAX_RESPONSE_MB)"
        )
