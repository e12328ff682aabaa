"""``create_sandbox_app``: the FastAPI app of the emulator, and its edge (request ids, faults, request log, errors).

URL layout: Entra at ``/{tenant}/...``, Graph under both ``/v1.0`` and ``/beta``, recordings at ``/media/recordings``,
the control plane at ``/_sandbox``. Every response carries ``request-id`` and echoes ``client-request-id``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
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
from ._tokens import TokenService
from .routes import admin, callback, callrecords, calls, entra, me, meetings, participants, presence, subscriptions

__all__ = ["create_sandbox_app"]

logger = logging.getLogger(__name__)

_GRAPH_VERSIONS = ("/v1.0", "/beta")
_FAULT_MESSAGES = {
    429: "Too many requests. Retry after the interval in the Retry-After header.",
    503: "The service is temporarily unavailable.",
    504: "The gateway timed out waiting for the service.",
}


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

    @app.middleware("http")
    async def edge(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = str(uuid.uuid4())
        request.state.request_id = request_id
        path = request.url.path
        controlled = not path.startswith(("/_sandbox", "/sandbox/", "/callback/"))
        started = time.perf_counter()
        response: Response | None = None
        if controlled and (fault := store.take_fault(request.method, path)) is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                response = _fault_response(request, fault)
        if response is None:
            response = await call_next(request)
        response.headers["request-id"] = request_id
        if (client_request_id := _client_request_id(request)) is not None:
            response.headers["client-request-id"] = client_request_id
        if controlled:
            store.log_request(
                {
                    "method": request.method,
                    "path": path,
                    "query": request.url.query,
                    "client_request_id": client_request_id,
                    "request_id": request_id,
                    "status": response.status_code,
                    "app_id": getattr(request.state, "app_id", None),
                }
            )
            logger.info(
                "%s %s -> %d (%.1f ms)",
                request.method,
                path,
                response.status_code,
                (time.perf_counter() - started) * 1e3,
            )
        return response

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
