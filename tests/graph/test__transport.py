"""The request layer, against httpx.MockTransport: retries, Retry-After, error translation, request ids."""

import time

import httpx
import pytest

from mediabot import GraphAPIError, GraphNotFoundError, GraphPermissionError, GraphThrottledError
from mediabot._errors import GraphTransportError
from mediabot.graph._transport import GraphRequester, parse_retry_after


class StaticTokens:
    def __init__(self) -> None:
        self.calls = 0

    async def get_token(self) -> str:
        self.calls += 1
        return "token-123"


def graph_error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {
        "error": {
            "code": code,
            "message": f"{code} happened",
            "innerError": {"request-id": "rid-1", "date": "d"},
        }
    }
    return httpx.Response(status, json=body, headers=headers)


def make(handler, max_retries: int = 3) -> tuple[GraphRequester, list[httpx.Request], list[float]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(len(seen), request)

    http = httpx.AsyncClient(base_url="https://graph.test/v1.0", transport=httpx.MockTransport(record))
    requester = GraphRequester(http, StaticTokens(), max_retries=max_retries, max_backoff=0.0)
    return requester, seen, []


async def test_throttled_requests_are_retried_with_the_same_client_request_id() -> None:
    def handler(n: int, request: httpx.Request) -> httpx.Response:
        if n <= 2:
            return graph_error(429, "TooManyRequests", {"Retry-After": "0"})
        return httpx.Response(200, json={"ok": True})

    requester, seen, _ = make(handler)
    response = await requester.request("POST", "/communications/calls", json_body={"a": 1})
    assert response.json() == {"ok": True}
    assert len(seen) == 3
    ids = {r.headers["client-request-id"] for r in seen}
    assert len(ids) == 1, "a retry must carry the same client-request-id as the first attempt"
    assert all(r.headers["Authorization"] == "Bearer token-123" for r in seen)


async def test_throttling_that_never_ends_raises_with_the_last_retry_after() -> None:
    requester, seen, _ = make(lambda n, r: graph_error(503, "ServiceUnavailable", {"Retry-After": "7"}), 2)
    requester._max_backoff = 0.0
    with pytest.raises(GraphThrottledError) as info:
        await requester.request("GET", "/x")
    assert len(seen) == 3
    assert info.value.retry_after == 7.0
    assert info.value.status_code == 503
    assert info.value.code == "ServiceUnavailable"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, GraphAPIError),
        (401, GraphPermissionError),
        (403, GraphPermissionError),
        (404, GraphNotFoundError),
    ],
)
async def test_errors_are_typed_and_carry_graphs_details_without_retry(status: int, cls: type) -> None:
    requester, seen, _ = make(lambda n, r: graph_error(status, "SomeCode"))
    with pytest.raises(cls) as info:
        await requester.request("GET", "/communications/calls/abc")
    assert len(seen) == 1
    assert info.value.code == "SomeCode"
    assert info.value.message == "SomeCode happened"
    assert info.value.request_id == "rid-1"
    assert info.value.client_request_id == seen[0].headers["client-request-id"]


async def test_non_json_error_bodies_still_give_a_typed_error() -> None:
    requester, _, _ = make(lambda n, r: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(GraphAPIError) as info:
        await requester.request("GET", "/x")
    assert info.value.status_code == 502
    assert info.value.code == "UnknownError"


async def test_transport_errors_are_retried_then_translated() -> None:
    def handler(n: int, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    requester, seen, _ = make(handler, max_retries=2)
    with pytest.raises(GraphTransportError, match="3 attempts"):
        await requester.request("GET", "/x")
    assert len(seen) == 3


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    delay = parse_retry_after(future)
    assert delay is not None and 100 < delay <= 121
