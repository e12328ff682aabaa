"""The request layer, against httpx.MockTransport: retries, Retry-After, timeouts, error translation, request ids.

Waits go through the requester's ``sleep`` seam, so tests read what it waited instead of timing it.
"""

import email.utils
import time
from collections.abc import AsyncIterator

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


_opened: list[httpx.AsyncClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while _opened:
        await _opened.pop().aclose()


def make(
    handler, max_retries: int = 3, max_backoff: float = 60.0
) -> tuple[GraphRequester, list[httpx.Request], list[float]]:
    seen: list[httpx.Request] = []
    slept: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(len(seen), request)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    http = httpx.AsyncClient(base_url="https://graph.test/v1.0", transport=httpx.MockTransport(record))
    _opened.append(http)
    requester = GraphRequester(http, StaticTokens(), max_retries=max_retries, max_backoff=max_backoff, sleep=sleep)
    return requester, seen, slept


async def test_throttled_requests_are_retried_with_the_same_client_request_id() -> None:
    def handler(n: int, request: httpx.Request) -> httpx.Response:
        if n <= 2:
            return graph_error(429, "TooManyRequests", {"Retry-After": "0"})
        return httpx.Response(200, json={"ok": True})

    requester, seen, slept = make(handler)
    response = await requester.request("POST", "/communications/calls", json_body={"a": 1})
    assert response.json() == {"ok": True}
    assert len(seen) == 3 and slept == [0.0, 0.0]
    ids = {r.headers["client-request-id"] for r in seen}
    assert len(ids) == 1, "a retry must carry the same client-request-id as the first attempt"
    assert {r.content for r in seen} == {b'{"a":1}'}
    assert all(r.headers["Authorization"] == "Bearer token-123" for r in seen)


@pytest.mark.parametrize("status", [429, 503, 504])
async def test_retry_after_is_waited_exactly_never_less(status: int) -> None:
    def handler(n: int, request: httpx.Request) -> httpx.Response:
        if n == 1:
            return graph_error(status, "Throttled", {"Retry-After": "3"})
        return httpx.Response(200, json={})

    requester, seen, slept = make(handler, max_backoff=10.0)
    await requester.request("GET", "/communications/calls/c1")
    assert len(seen) == 2
    assert slept == [3.0]


async def test_retry_after_longer_than_max_backoff_fails_at_once_with_the_advice() -> None:
    requester, seen, slept = make(lambda n, r: graph_error(429, "TooManyRequests", {"Retry-After": "120"}))
    with pytest.raises(GraphThrottledError) as info:
        await requester.request("POST", "/communications/calls/c1/playPrompt", json_body={})
    assert len(seen) == 1, "retrying before Retry-After would only be throttled again"
    assert slept == []
    assert info.value.retry_after == 120.0
    assert info.value.status_code == 429
    assert info.value.client_request_id == seen[0].headers["client-request-id"]


async def test_an_http_date_retry_after_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 90, usegmt=True)

    def handler(n: int, request: httpx.Request) -> httpx.Response:
        return graph_error(503, "ServiceUnavailable", {"Retry-After": when}) if n == 1 else httpx.Response(204)

    requester, _, slept = make(handler, max_backoff=300.0)
    await requester.request("DELETE", "/subscriptions/s1")
    [waited] = slept
    assert 85.0 < waited <= 90.0


async def test_throttling_that_never_ends_raises_with_the_last_retry_after() -> None:
    requester, seen, slept = make(lambda n, r: graph_error(503, "ServiceUnavailable", {"Retry-After": "7"}), 2)
    with pytest.raises(GraphThrottledError) as info:
        await requester.request("GET", "/x")
    assert len(seen) == 3 and slept == [7.0, 7.0]
    assert info.value.retry_after == 7.0
    assert info.value.status_code == 503
    assert info.value.code == "ServiceUnavailable"


async def test_without_retry_after_the_backoff_is_jittered_exponential_and_capped() -> None:
    requester, seen, slept = make(lambda n, r: graph_error(503, "ServiceUnavailable"), max_retries=5, max_backoff=3.0)
    with pytest.raises(GraphThrottledError) as info:
        await requester.request("GET", "/x")
    assert info.value.retry_after is None
    assert len(seen) == 6 and len(slept) == 5
    for attempt, waited in enumerate(slept):
        ceiling = min(3.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= waited <= ceiling


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ReadError]
)
async def test_timeouts_are_retried_with_the_same_client_request_id(failure: type[httpx.TransportError]) -> None:
    def handler(n: int, request: httpx.Request) -> httpx.Response:
        if n == 1:
            # The server got this one (maybe even applied it); only its answer is lost.
            raise failure("timed out", request=request)
        return httpx.Response(200, json={"id": "op-1"})

    requester, seen, slept = make(handler, max_backoff=0.5)
    response = await requester.request("POST", "/communications/calls/c1/participants/invite", json_body={"p": 1})
    assert response.json() == {"id": "op-1"}
    assert len(seen) == 2 and len(slept) == 1 and 0.25 <= slept[0] <= 0.5
    assert seen[0].headers["client-request-id"] == seen[1].headers["client-request-id"]
    assert seen[0].content == seen[1].content


async def test_transport_errors_are_retried_then_translated() -> None:
    def handler(n: int, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    requester, seen, slept = make(handler, max_retries=2)
    with pytest.raises(GraphTransportError, match="3 attempts: ConnectError"):
        await requester.request("GET", "/x")
    assert len(seen) == 3 and len(slept) == 2


async def test_errors_that_would_repeat_identically_are_not_retried() -> None:
    def handler(n: int, request: httpx.Request) -> httpx.Response:
        raise httpx.UnsupportedProtocol("no such scheme", request=request)

    requester, seen, slept = make(handler)
    with pytest.raises(GraphTransportError, match="1 attempts"):
        await requester.request("GET", "/x")
    assert len(seen) == 1 and slept == []


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
    requester, seen, slept = make(lambda n, r: graph_error(status, "SomeCode", {"Retry-After": "1"}))
    with pytest.raises(cls) as info:
        await requester.request("GET", "/communications/calls/abc")
    assert len(seen) == 1 and slept == []
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


async def test_each_logical_request_gets_its_own_client_request_id() -> None:
    requester, seen, _ = make(lambda n, r: httpx.Response(204))
    await requester.request("DELETE", "/subscriptions/a")
    await requester.request("DELETE", "/subscriptions/a")
    assert seen[0].headers["client-request-id"] != seen[1].headers["client-request-id"]


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    delay = parse_retry_after(future)
    assert delay is not None and 100 < delay <= 121
