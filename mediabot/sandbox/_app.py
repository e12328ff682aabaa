"""``create_sandbox_app``: the FastAPI app of the emulator, and its edge (request ids, faults, replays, request log).

URL layout: Entra at ``/{tenant}/...``, Graph under both ``/v1.0`` and ``/beta``, recordings at ``/media/recordings``,
the control plane at ``/_sandbox``. Every response carries ``request-id`` and echoes ``client-request-id``.

Graph documents ``client-request-id`` as a correlation id; the sandbox also treats it as an idempotency key, as a
careful server would. A mutating Graph request (POST, PUT, PATCH, DELETE) whose caller, method, path and
``client-request-id`` match one already applied (2xx, within ``REPLAY_WINDOW`` seconds, the last ``REPLAY_LIMIT``
kept) is not applied again: it gets the stored status, body and headers plus ``x-sandbox-replayed: true``. A twin
that arrives while the first is still being handled waits for it and gets its response. So a client that retries
with the same id after a timeout or a 503 (see :class:`mediabot.sandbox._store.Fault`, phase ``after``) does the
operation once, and the request log shows each attempt (``handled``, ``replayed``, ``fault``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response

from ._callback_signing import CallbackSigner
from ._config import SandboxConfig
from ._deps import SandboxState
from ._director import ScenarioDirector
from ._errors import GraphErrorResponse, entra_error, graph_error_body, graph_error_code_for_status
from ._notifier import CallNotifier
from ._platform import CallPlatform
from ._schemas import catalog
from ._store import Fault, SandboxStore
from ._tokens import TokenError, TokenService
from .routes import admin, callback, callrecords, calls, entra, me, meetings, participants, presence, subscriptions

__all__ = ["REPLAYED_HEADER", "REPLAY_LIMIT", "REPLAY_WINDOW", "ReplayCache", "StoredResponse", "create_sandbox_app"]

logger = logging.getLogger(__name__)

#: Marks a response replayed from an earlier attempt with the same ``client-request-id``.
REPLAYED_HEADER = "x-sandbox-replayed"
#: Seconds an applied request's response stays replayable.
REPLAY_WINDOW = 600.0
#: Most replayable responses kept (the oldest go first).
REPLAY_LIMIT = 4096

_GRAPH_VERSIONS = ("/v1.0", "/beta")
_UNCONTROLLED = ("/_sandbox", "/sandbox/", "/callback/")
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Set per attempt by the edge, never replayed.
_PER_ATTEMPT_HEADERS = frozenset({"request-id", "client-request-id", "date", "server"})
_FAULT_MESSAGES = {
    429: "Too many requests. Retry after the interval in the Retry-After header.",
    503: "The service is temporarily unavailable.",
    504: "The gateway timed out waiting for the service.",
}

#: (caller app, method, path, client-request-id)
ReplayKey = tuple[str, str, str, str]


@dataclasses.dataclass(frozen=True)
class StoredResponse:
    """An applied request's response as its retries get it again."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def response(self, *, replayed: bool = True) -> Response:
        """A fresh response with this status, body and headers (marked with ``REPLAYED_HEADER`` for a replay)."""
        headers = dict(self.headers)
        if replayed:
            headers[REPLAYED_HEADER] = "true"
        return Response(content=self.body, status_code=self.status, headers=headers)


class ReplayCache:
    """Responses of applied requests by :data:`ReplayKey`, for retries; bounded by age and count.

    ``begin`` either hands back the response to replay or makes the caller the key's handler, who must then
    ``end`` it (with the response to keep, or ``None`` when nothing was applied and a retry should be handled anew).
    A ``begin`` for a key being handled waits for that ``end``.
    """

    def __init__(
        self, window: float = REPLAY_WINDOW, limit: int = REPLAY_LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = window
        self._limit = limit
        self._clock = clock
        self._kept: collections.OrderedDict[ReplayKey, tuple[float, StoredResponse]] = collections.OrderedDict()
        self._handling: dict[ReplayKey, asyncio.Event] = {}

    def __len__(self) -> int:
        return len(self._kept)

    async def begin(self, key: ReplayKey) -> StoredResponse | None:
        """The response to replay for ``key``; ``None`` when the caller now handles it (and must call ``end``)."""
        while True:
            self._evict()
            kept = self._kept.get(key)
            if kept is not None:
                return kept[1]
            handling = self._handling.get(key)
            if handling is None:
                self._handling[key] = asyncio.Event()
                return None
            await handling.wait()

    def end(self, key: ReplayKey, response: StoredResponse | None) -> None:
        """Finish handling ``key``: keep ``response`` for its retries, then wake the twins waiting for it."""
        if response is not None:
            self._kept[key] = (self._clock() + self._window, response)
            self._kept.move_to_end(key)
        handling = self._handling.pop(key, None)
        if handling is not None:
            handling.set()
        self._evict()

    def _evict(self) -> None:
        now = self._clock()
        while self._kept:
            key, (expires, _) = next(iter(self._kept.items()))
            if expires > now and len(self._kept) <= self._limit:
                return
            del self._kept[key]


def _client_request_id(request: Request) -> str | None:
    return request.headers.get("client-request-id")


def _graph_error(request: Request, status: int, code: str, message: str, headers: dict[str, str]) -> JSONResponse:
    request_id = getattr(request.state, "request_id", str(uuid.uuid4()))
    body = graph_error_body(code, message, request_id, _client_request_id(request))
    return JSONResponse(body, status_code=status, headers=headers)


def _fault_response(request: Request, fault: Fault) -> Response:
    status = fault.status or 500
    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
    if "/oauth2/" in request.url.path:
        response = entra_error(status, "temporarily_unavailable", 50196, "Injected sandbox fault.")
        response.headers.update(headers)
        return response
    message = _FAULT_MESSAGES.get(status, "Injected sandbox fault.")
    return _graph_error(request, status, graph_error_code_for_status(status), message, headers)


def _caller(request: Request, tokens: TokenService) -> str | None:
    """The app a request's bearer token names (None when it has none Graph would accept)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return tokens.verify(token.strip()).app_id
    except TokenError:
        return None


def _replay_key(request: Request, tokens: TokenService) -> ReplayKey | None:
    """The idempotency key of a mutating Graph request that names a ``client-request-id``."""
    client_request_id = _client_request_id(request)
    path = request.url.path
    if not client_request_id or request.method not in _MUTATING or not path.startswith(_GRAPH_VERSIONS):
        return None
    # The caller is part of the key: one app's id never replays another app's response.
    app_id = _caller(request, tokens)
    return (app_id, request.method, path, client_request_id) if app_id is not None else None


async def _read(response: Response) -> bytes:
    """The whole body of a response from ``call_next`` (which streams it)."""
    iterator: Any = getattr(response, "body_iterator", None)
    if iterator is None:
        return bytes(response.body)
    chunks = [chunk if isinstance(chunk, bytes) else str(chunk).encode() async for chunk in iterator]
    return b"".join(chunks)


async def _kept(response: Response) -> StoredResponse:
    body = await _read(response)
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() not in _PER_ATTEMPT_HEADERS)
    return StoredResponse(response.status_code, headers, body)


async def _delay(request: Request, fault: Fault | None, *, body_read: bool) -> None:
    """Wait the fault's ``delay``, or less if the client gives up first (then nothing is left waiting on it)."""
    if fault is None or not fault.delay:
        return
    try:
        if not body_read:
            await request.body()  # cached for the handler; the receive channel then only reports a disconnect
        await asyncio.wait_for(_disconnected(request), fault.delay)
    except (TimeoutError, ClientDisconnect):
        pass


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _stamp(response: Response, request_id: str, client_request_id: str | None) -> Response:
    response.headers["request-id"] = request_id
    if client_request_id is not None:
        response.headers["client-request-id"] = client_request_id
    return response


def create_sandbox_app(config: SandboxConfig) -> FastAPI:
    """Build the emulator app for ``config`` (state lives in memory in the returned app).

    The call platform (notification delivery, call timers) starts on first use; a host stops it with
    ``await app.state.sandbox.platform.aclose()`` (``SandboxServer`` and ``serve`` do).
    """
    store = SandboxStore(config)
    signer = CallbackSigner(config)
    notifier = CallNotifier(config, signer)
    platform = CallPlatform(store, notifier, config.answer_deadline, config.keepalive_timeout)
    platform.director = ScenarioDirector(store, verify=notifier.ssl_context(), allow_loopback=config.media_ice_loopback)
    platform.director.platform = platform

    app = FastAPI(title="mediabot sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = SandboxState(
        config=config,
        store=store,
        tokens=TokenService(config),
        schemas=catalog(),
        signer=signer,
        platform=platform,
    )

    tokens = app.state.sandbox.tokens
    replays = ReplayCache()

    @app.middleware("http")
    async def edge(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = str(uuid.uuid4())
        request.state.request_id = request_id
        path = request.url.path
        client_request_id = _client_request_id(request)
        if path.startswith(_UNCONTROLLED):
            return _stamp(await call_next(request), request_id, client_request_id)
        started = time.perf_counter()
        fault = store.take_fault(request.method, path)
        before = fault if fault is not None and fault.phase == "before" else None
        after = fault if fault is not None and fault.phase == "after" else None
        handled = replayed = False
        app_id: str | None = None
        key = _replay_key(request, tokens)
        if before is not None and before.status is not None:
            # Refused at the door: nothing is applied, so nothing is kept for a retry.
            await _delay(request, before, body_read=False)
            response = _fault_response(request, before)
        elif key is None:
            await _delay(request, before, body_read=False)
            response = await call_next(request)
            handled = True
        elif (stored := await replays.begin(key)) is not None:
            response, replayed, app_id = stored.response(), True, key[0]
        else:
            kept: StoredResponse | None = None
            try:
                # Slow processing: the key is taken, so a retry arriving meanwhile waits for this attempt.
                await _delay(request, before, body_read=False)
                response = await call_next(request)
                handled = True
                if 200 <= response.status_code < 300:
                    kept = await _kept(response)
                    response = kept.response(replayed=False)
            finally:
                replays.end(key, kept)
        status = after.status if after is not None and after.status is not None else response.status_code
        store.log_request(
            {
                "method": request.method,
                "path": path,
                "query": request.url.query,
                "client_request_id": client_request_id,
                "request_id": request_id,
                "status": status,
                "app_id": app_id or getattr(request.state, "app_id", None),
                "handled": handled,
                "replayed": replayed,
                "fault": fault.phase if fault is not None else None,
            }
        )
        logger.info(
            "%s %s -> %d%s (%.1f ms)",
            request.method,
            path,
            status,
            " replayed" if replayed else "",
            (time.perf_counter() - started) * 1e3,
        )
        if after is not None:
            # The operation took effect; the client hears of it late (past its timeout) or only as a failure.
            await _delay(request, after, body_read=handled)
            if after.status is not None:
                await _read(response)
                response = _fault_response(request, after)
        return _stamp(response, request_id, client_request_id)

    @app.exception_handler(GraphErrorResponse)
    async def graph_error(request: Request, exc: GraphErrorResponse) -> Response:
        return _graph_error(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and request.url.path.startswith(_GRAPH_VERSIONS):
            segment = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            return _graph_error(request, 400, "BadRequest", f"Resource not found for the segment '{segment}'.", {})
        code = graph_error_code_for_status(exc.status_code)
        return _graph_error(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        return _graph_error(request, 400, "BadRequest", f"Invalid request: {problems}", {})

    for version in _GRAPH_VERSIONS:
        for router in (
            calls.router,
            participants.router,
            meetings.router,
            presence.router,
            callrecords.router,
            subscriptions.router,
            me.router,
        ):
            app.include_router(router, prefix=version)
    app.include_router(calls.recordings_router)
    app.include_router(admin.router)
    app.include_router(admin.issue_router)
    app.include_router(callback.router)
    app.include_router(entra.router)
    return app
