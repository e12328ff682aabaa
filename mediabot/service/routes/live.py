"""``/v1/live`` (what is happening now, as JSON or a server-sent event stream) and standalone media sessions.

A standalone session is media with no Graph call: ``POST /v1/sessions`` opens one and returns its WHIP endpoint and
bearer; a publisher (the ``/join`` page, a WHIP client) sends audio there; it is recorded, segmented and transcribed
like a call, into ``<output>/<session id>/``, until its publisher leaves or ``DELETE /v1/sessions/{id}`` ends it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from mediabot.media.plane import MediaPlane
from mediabot.service.deps import API_KEY_ERRORS, MediaDep, require_api_key
from mediabot.service.live import LiveView

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["live"],
    dependencies=[Depends(require_api_key)],
    responses={
        **API_KEY_ERRORS,
    },
)
NO_MEDIA: dict[int | str, dict[str, Any]] = {409: {"description": "This instance hosts no media (not app-hosted)."}}
NO_SESSION: dict[int | str, dict[str, Any]] = {**NO_MEDIA, 404: {"description": "No such open media session."}}

EVENT_INTERVAL_S = 0.5
# One event of the stream (OpenAPI 3.1 describes each event with the schema), its data the /v1/live snapshot.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer"},
    },
}


def _live(request: Request) -> LiveView:
    view: LiveView = request.app.state.live
    return view


LiveDep = Annotated[LiveView, Depends(_live)]


@router.get("/live")
async def live(view: LiveDep) -> dict[str, Any]:
    """Calls (state, roster, who speaks, segments, tones, latest transcript) and standalone sessions, now."""
    return view.snapshot()


@router.get(
    "/live/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events: a ``retry`` hint, then one ``data:`` snapshot (JSON) per interval.",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        }
    },
)
async def live_events(
    request: Request,
    view: LiveDep,
    interval: Annotated[float, Query(ge=0.1, le=10.0, description="Seconds between snapshots.")] = EVENT_INTERVAL_S,
) -> StreamingResponse:
    """The same snapshot as a ``text/event-stream``: one ``data:`` event every ``interval`` seconds."""

    stopping = getattr(request.app.state, "stopping", None) or (lambda: False)

    async def events() -> AsyncIterator[str]:
        yield f"retry: {int(interval * 2000)}\n\n"
        # Until the client goes, or the server is stopping (the console's EventSource reconnects to its successor).
        while not stopping() and not await request.is_disconnected():
            yield f"data: {json.dumps(view.snapshot(), separators=(',', ':'))}\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def _engine(media: MediaDep) -> MediaPlane[Any]:
    if media is None:
        raise HTTPException(409, "this instance has no media engine (MEDIABOT_MEDIA is not app-hosted)")
    return media


@router.post("/sessions", status_code=201, responses=NO_MEDIA)
async def open_session(media: MediaDep) -> dict[str, Any]:
    """Open a standalone recorded media session; publish audio to ``whip_url`` with ``token`` as the bearer."""
    engine = _engine(media)
    session = engine.open_standalone()
    blob = engine.blob_for(session)
    return {"session_id": session.id, "whip_url": blob.endpoint, "token": session.token, "folder": session.key}


@router.get("/sessions/{session_id}", responses=NO_SESSION)
async def get_session(session_id: str, media: MediaDep, view: LiveDep) -> dict[str, Any]:
    """One open media session, as in ``/v1/live``."""
    session = _engine(media).session(session_id)
    if session is None:
        raise HTTPException(404, f"no open media session {session_id}")
    return {**session.live(), "transcript": view.transcript(session.key)}


@router.delete(
    "/sessions/{session_id}",
    responses={**NO_SESSION, 409: {"description": "No media here, or the session belongs to a call (hang up)."}},
)
async def close_session(session_id: str, media: MediaDep) -> dict[str, Any]:
    """End a standalone session and finish its files; returns what was recorded."""
    engine = _engine(media)
    session = engine.session(session_id)
    if session is None:
        raise HTTPException(404, f"no open media session {session_id}")
    if not session.standalone:
        raise HTTPException(409, "that session belongs to a call: hang up the call instead")
    summary = await engine.close_session(session_id)
    return {"session_id": session_id, "folder": session.key, "summary": summary}
