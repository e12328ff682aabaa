"""``create_app(settings)``: the FastAPI service; Graph client, authenticator and CallManager live in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from fastapi.utils import is_body_allowed_for_status_code
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from mediabot import __version__
from mediabot._errors import ConfigError
from mediabot.calls import AnswerPolicy, Bot, CallConfig, CallManager, Clock, MediaProvider
from mediabot.config import Settings
from mediabot.graph import GraphClient
from mediabot.graph.callback_auth import CallbackAuthenticator
from mediabot.graph.models import CallRecord
from mediabot.graph.subscriptions import SubscriptionKeeper, SubscriptionSpec
from mediabot.media.engine import MediaEngine
from mediabot.media.plane import MediaPlane
from mediabot.media.session import MediaOptions
from mediabot.media.vad import SegmenterParams
from mediabot.media.workers import MediaWorkers, media_worker_count
from mediabot.metrics import CallsCollector, MediaCollector
from mediabot.service.auth import ApiGate
from mediabot.service.live import LiveView
from mediabot.service.routes import calling, console, live, notifications, v1, whip
from mediabot.service.routes import recordings as recordings_api
from mediabot.service.transcription import Recordings

__all__ = ["call_config", "create_app", "media_options"]

logger = logging.getLogger(__name__)
CALL_RECORDS_KEPT = 200


def call_config(settings: Settings) -> CallConfig:
    """The CallManager's configuration from the settings (validated here, so bad settings fail at start)."""
    if not settings.public_url.startswith(("https://", "http://")):
        raise ConfigError("MEDIABOT_PUBLIC_URL must be the http(s) base URL Graph can reach this instance at")
    if settings.answer_mode == "all":
        policy = AnswerPolicy.answer_all()
    elif settings.answer_mode == "allow_list":
        policy = AnswerPolicy.allow_list(settings.allowed_callers, reject_reason=settings.reject_reason)
    else:
        policy = AnswerPolicy.reject_all(settings.reject_reason)
    return CallConfig(
        callback_url=settings.callback_url,
        answer_policy=policy,
        keepalive_interval=settings.keepalive_interval,
        compliance_recording=settings.compliance_recording,
    )


def media_options(settings: Settings) -> MediaOptions:
    """The media engine's options from the settings."""
    return MediaOptions(
        public_url=settings.public_url,
        output_dir=settings.output_dir,
        receive=settings.media_receive,
        vad_backend=settings.vad_backend,
        vad_aggressiveness=settings.vad_aggressiveness,
        segmenter=SegmenterParams(
            start_ms=settings.speech_start_ms,
            stop_ms=settings.speech_stop_ms,
            pad_ms=settings.speech_pad_ms,
            max_segment_s=settings.speech_max_s,
        ),
        max_sdp_bytes=settings.max_sdp_bytes,
        record_ogg=settings.record_ogg,
        ice_loopback=settings.media_ice_loopback,
        inline_receive=settings.media_inline_receive,
        direct_rtp=settings.media_direct_rtp,
        media_idle_timeout=settings.media_idle_timeout,
        prompt_dir=settings.prompt_dir,
        ca_bundle=settings.ca_bundle,
    )


async def _shutdown(*steps: tuple[str, Callable[[], Awaitable[Any]] | None]) -> None:
    """Run each step in order, logging a failure and going on; the first failure is raised at the end."""
    failure: BaseException | None = None
    for name, step in steps:
        if step is None:
            continue
        try:
            await step()
        except Exception as exc:
            logger.exception("shutdown: stopping the %s failed", name)
            failure = failure or exc
    if failure is not None:
        raise failure


def _error(status_code: int, detail: Any, headers: Mapping[str, str] | None = None) -> Response:
    """An error response any detail renders into: ASCII JSON, so text from a request that is not valid Unicode
    (an unpaired surrogate escape) is escaped, not a UnicodeEncodeError turned 500."""
    if not is_body_allowed_for_status_code(status_code):
        return Response(status_code=status_code, headers=headers)
    body = json.dumps({"detail": detail}, ensure_ascii=True, separators=(",", ":"), default=str)
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, exc.detail, exc.headers)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """422 naming each invalid field and why; the input is not echoed (it may be huge, deep or not Unicode)."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
    return _error(422, errors)


def create_app(
    settings: Settings,
    *,
    bot: Bot | None = None,
    media: MediaProvider | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the service: callbacks at /api/calling, webhooks at /api/notifications, the operator API at /v1,
    WHIP at /media/whip. Unless ``media`` is given, ``settings.media`` picks app-hosted media (a MediaEngine, or
    MediaWorkers with ``settings.media_workers``) or service-hosted."""
    config = call_config(settings)
    the_bot = bot or Bot()
    engine: MediaPlane[Any] | None = media if isinstance(media, MediaEngine | MediaWorkers) else None
    if media is None and settings.media == "app-hosted":
        workers = media_worker_count(settings.media_workers)
        if workers >= 1:
            engine = MediaWorkers(media_options(settings), workers)
        else:
            engine = MediaEngine(media_options(settings))
    provider: MediaProvider | None = engine if engine is not None else media

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        graph = GraphClient(settings)
        verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
        key_client: httpx.AsyncClient | None = None
        if settings.proxy_url:
            context = ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True
            key_client = httpx.AsyncClient(verify=context, proxy=settings.proxy_url, trust_env=False, timeout=10.0)
        authenticator = CallbackAuthenticator(
            openid_config_url=settings.callback_openid_url,
            audience=settings.client_id,
            issuers=settings.callback_issuers,
            verify=verify,
            http=key_client,
        )
        if engine is not None:
            await engine.start()
        manager = CallManager(graph, the_bot, config, clock=clock, media=provider)
        recordings = Recordings(settings, engine, manager) if engine is not None else None
        if recordings is not None:
            await recordings.start()
        keeper: SubscriptionKeeper | None = None
        if settings.subscribe_call_records:
            keeper = SubscriptionKeeper(
                graph,
                [SubscriptionSpec("/communications/callRecords")],
                notification_url=settings.notification_url,
                lifecycle_url=f"{settings.notification_url}/lifecycle",
            )
        app.state.settings = settings
        app.state.graph = graph
        app.state.authenticator = authenticator
        app.state.manager = manager
        app.state.bot = the_bot
        app.state.keeper = keeper
        app.state.media = engine
        app.state.recordings = recordings
        app.state.call_records = deque[CallRecord](maxlen=CALL_RECORDS_KEPT)
        app.state.live = LiveView(manager, engine)
        if recordings is not None:
            recordings.add_transcript_listener(app.state.live.on_transcript)
        await manager.start()
        # Graph validates the webhook URL while we subscribe, so subscribing must not hold up the startup.
        subscribing = asyncio.create_task(keeper.start()) if keeper is not None else None
        logger.info("mediabot %s instance %s: callbacks at %s", __version__, settings.instance_id, config.callback_url)

        async def stop_subscribing() -> None:
            if subscribing is not None and keeper is not None:
                subscribing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await subscribing
                await keeper.stop()

        try:
            yield
        finally:
            # Every step runs even if one before it fails, so a failure cannot leave sockets, threads or files open.
            await _shutdown(
                ("subscriptions", stop_subscribing),
                ("calls", manager.stop),
                ("media", engine.stop if engine is not None else None),
                ("recordings", recordings.stop if recordings is not None else None),
                ("callback keys", authenticator.aclose),
                ("key client", key_client.aclose if key_client is not None else None),
                ("graph client", graph.aclose),
            )

    app = FastAPI(
        title="mediabot",
        version=__version__,
        description="Graph call notifications, webhooks and the operator API of a mediabot instance.",
        lifespan=lifespan,
    )
    document = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document, plus the schemes of the routes that check their own bearer tokens."""
        if app.openapi_schema is None:
            schemes = document().setdefault("components", {}).setdefault("securitySchemes", {})
            schemes.update({"GraphCallbackToken": calling.SECURITY_SCHEME, "WhipSessionToken": whip.SECURITY_SCHEME})
        return app.openapi_schema or document()

    app.openapi = openapi  # type: ignore[method-assign]
    # /v1 refuses a request without the key before FastAPI reads (and parses) its body, and caps the body's size.
    app.add_middleware(ApiGate, api_key=settings.api_key.get_secret_value() if settings.api_key else None)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(calling.router)
    app.include_router(notifications.router)
    app.include_router(v1.router)
    app.include_router(whip.router)
    app.include_router(live.router)
    app.include_router(recordings_api.router)
    app.include_router(console.router)
    # This app's calls and streams, read at scrape time; the process-wide instruments live in the default registry.
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(CallsCollector(lambda: getattr(app.state, "manager", None)))
    scraped.register(MediaCollector(lambda: getattr(app.state, "media", None)))

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus metrics: calls by state, media streams and frames, speech-start latency, Graph requests,
        transcription backlog."""
        text = generate_latest(REGISTRY) + generate_latest(scraped)
        return PlainTextResponse(text.decode(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok", "version": __version__}

    return app
