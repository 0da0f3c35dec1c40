"""Reading providers' answers: safe error details, and the code a rejection carries."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fakes.server import FakeServer, Response
from worker.connectors.errors import RequestRejected
from worker.connectors.http import HttpOptions, ProviderClient
from worker.connectors.responses import error_fields

STRIPE_ERROR = {
    "error": {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such customer; key sk_live_****4242",
    }
}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as fake:
        fake.route("GET", "/customers/gone", lambda _: Response.json(STRIPE_ERROR, status=404))
        yield fake


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"errors": [{"code": "NOT_FOUND", "detail": "no report"}]}', "NOT_FOUND"),
        (b'{"error": "invalid_grant", "error_description": "Invalid JWT"}', "invalid_grant"),
        (b'{"error": {"status": "INVALID_ARGUMENT", "message": "m"}}', "INVALID_ARGUMENT"),
        (b'{"errors": []}', None),
        (b'{"error": {"status": 400}}', None),
        (b"<html>busy</html>", None),
    ],
)
def test_error_fields_read_only_the_named_code_fields(body: bytes, detail: str | None) -> None:
    read = error_fields(("errors", 0, "code"), ("error",), ("error", "status"))
    assert read(httpx.Response(400, content=body)) == detail


def test_a_rejected_request_carries_the_providers_code_never_its_message(
    server: FakeServer, http_options: HttpOptions
) -> None:
    detail = error_fields(("error", "type"), ("error", "code"))
    client = ProviderClient(server.url, options=http_options, error_detail=detail)
    with client, pytest.raises(RequestRejected) as raised:
        client.authorized().get_json("/customers/gone")
    code = "invalid_request_error/resource_missing"
    assert (raised.value.status, raised.value.code) == (404, code)
    assert str(raised.value) == f"GET /customers/gone: 404 Not Found ({code})"


def test_without_an_error_detail_a_rejection_has_no_code(
    server: FakeServer, http_options: HttpOptions
) -> None:
    client = ProviderClient(server.url, options=http_options)
    with client, pytest.raises(RequestRejected) as raised:
        client.authorized().get_json("/customers/gone")
    assert (raised.value.code, str(raised.value)) == (None, "GET /customers/gone: 404 Not Found")
