"""One Graph request, done right: token, ``client-request-id``, retries on throttling and timeouts, errors translated.

A logical request gets one ``client-request-id`` that every retry repeats, so a server that keys on it (the sandbox
does; Graph documents it as the correlation id) can recognise a retry of an operation it already applied: a
timed-out POST is retried without fear of doing it twice. Waits honour ``Retry-After`` exactly: never earlier than
asked, and when the advice exceeds ``max_backoff`` the request fails at once with :class:`GraphThrottledError`
carrying ``retry_after`` instead of hammering the service early.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Protocol

import httpx

from mediabot._errors import (
    GraphAPIError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphThrottledError,
    GraphTransportError,
)
from mediabot.metrics import GRAPH_ERRORS, GRAPH_REQUEST_SECONDS

__all__ = ["GraphRequester", "Sleep", "TokenSource", "parse_retry_after"]

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503, 504})
#: Transport errors that repeat identically on a retry (a malformed URL, a request httpx itself refuses to send).
_NOT_RETRIED = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)

#: How the requester waits between attempts (``asyncio.sleep``; tests pass a fake clock's sleep).
Sleep = Callable[[float], Awaitable[None]]


class TokenSource(Protocol):
    """Anything that hands out bearer tokens (``TokenProvider`` in production)."""

    async def get_token(self) -> str:
        """A valid access token."""
        ...


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class GraphRequester:
    """Sends requests to Graph with auth, retry and throttling handling; the client's methods build on it."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tokens: TokenSource,
        *,
        max_retries: int,
        max_backoff: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._max_retries = max_retries
        self._max_backoff = max_backoff
        self._sleep = sleep

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expected: Collection[int] = (200, 201, 202, 204),
        authenticate: bool = True,
    ) -> httpx.Response:
        """Send one logical request; retries reuse its ``client-request-id`` so Graph can spot duplicates."""
        client_request_id = str(uuid.uuid4())
        attempt = 0
        while True:
            request_headers = {"client-request-id": client_request_id, "return-client-request-id": "true"}
            if headers:
                request_headers.update(headers)
            if authenticate:
                request_headers["Authorization"] = f"Bearer {await self._tokens.get_token()}"
            started = time.perf_counter()
            try:
                response = await self._http.request(method, url, json=json_body, params=params, headers=request_headers)
            except httpx.TransportError as exc:
                # Timeouts included: a read timeout may come after Graph applied the request, which is why the
                # retry carries the same client-request-id.
                GRAPH_REQUEST_SECONDS.labels(method).observe(time.perf_counter() - started)
                GRAPH_ERRORS.labels("transport").inc()
                if isinstance(exc, _NOT_RETRIED) or attempt >= self._max_retries:
                    raise GraphTransportError(
                        f"{method} {url} failed after {attempt + 1} attempts: {type(exc).__name__}: {exc}"
                    ) from exc
                delay = self._backoff(attempt)
                logger.warning(
                    "%s %s: %s, retry %d in %.2fs (client-request-id %s)",
                    method,
                    url,
                    type(exc).__name__,
                    attempt + 1,
                    delay,
                    client_request_id,
                )
            else:
                GRAPH_REQUEST_SECONDS.labels(method).observe(time.perf_counter() - started)
                if response.status_code in expected:
                    return response
                GRAPH_ERRORS.labels(str(response.status_code)).inc()
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if (
                    response.status_code not in RETRY_STATUSES
                    or attempt >= self._max_retries
                    or (retry_after is not None and retry_after > self._max_backoff)
                ):
                    raise _api_error(response, method, url, client_request_id, retry_after)
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                logger.warning(
                    "%s %s: %d, retry %d in %.2fs (request-id %s)",
                    method,
                    url,
                    response.status_code,
                    attempt + 1,
                    delay,
                    response.headers.get("request-id"),
                )
            attempt += 1
            await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """The wait before retry ``attempt + 1`` when the server gave no ``Retry-After``."""
        # Full jitter on an exponential ladder, so throttled instances do not retry in lockstep.
        ceiling = min(self._max_backoff, 0.5 * 2**attempt)
        return float(random.uniform(ceiling / 2, ceiling))


def _api_error(
    response: httpx.Response, method: str, url: str, client_request_id: str, retry_after: float | None
) -> GraphAPIError:
    body: Any
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = response.text[:2000]
    error = body.get("error") if isinstance(body, dict) else None
    code = "UnknownError"
    message = response.reason_phrase or "no error body"
    inner: Mapping[str, Any] = {}
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        raw_inner = error.get("innerError") or error.get("innererror") or {}
        inner = raw_inner if isinstance(raw_inner, dict) else {}
    status = response.status_code
    cls: type[GraphAPIError] = GraphAPIError
    if status in RETRY_STATUSES:
        cls = GraphThrottledError
    elif status in (401, 403):
        cls = GraphPermissionError
    elif status == 404:
        cls = GraphNotFoundError
    exc = cls(
        status,
        code,
        message,
        method=method,
        url=url,
        request_id=inner.get("request-id") or response.headers.get("request-id"),
        client_request_id=inner.get("client-request-id") or client_request_id,
        date=inner.get("date"),
        body=body,
    )
    if isinstance(exc, GraphThrottledError):
        exc.retry_after = retry_after
    return exc
