"""``/media/whip/{session}``: the WHIP endpoint (RFC 9725) of this instance's media sessions.

``POST`` an SDP offer (``application/sdp``) with the session's bearer token: ``201 Created``, the answer and
``Location``; ``?source=`` names the participant source (a roster ``sourceId``) or ``main``. ``DELETE`` the
``Location`` to end it. Errors are ``text/plain``: 404 unknown session, 401 wrong token, 400 a bad or oversized offer,
415 not ``application/sdp``, 422 no usable audio codec.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from mediabot.media.plane import MediaPlane
from mediabot.media.whip import WhipBadOffer, WhipError, WhipNotFound
from mediabot.service._body import read_limited
from mediabot.service.deps import MediaDep

__all__ = ["SECURITY_SCHEME", "router"]

logger = logging.getLogger(__name__)
router = APIRouter(tags=["media"])
# The session token, for the OpenAPI document (the media plane does the checking).
SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "description": "The media session's token, from its media config blob.",
}
_SECURED: list[dict[str, list[str]]] = [{"WhipSessionToken": []}]


def _refusal(exc: WhipError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return Response(str(exc), status_code=exc.status, media_type="text/plain", headers=headers)


def _engine(media: MediaPlane[Any] | None) -> MediaPlane[Any]:
    if media is None:
        raise WhipNotFound("this instance hosts no media (MEDIABOT_MEDIA=service-hosted)")
    return media


_TEXT: dict[str, Any] = {"text/plain": {"schema": {"type": "string"}}}
_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "The bearer token is missing or not the session's.", "content": _TEXT},
    404: {"description": "No such media session (or WHIP resource).", "content": _TEXT},
}


@router.post(
    "/media/whip/{session_id}",
    status_code=201,
    response_class=Response,
    responses={
        201: {
            "description": "The SDP answer; ``Location`` is the WHIP resource to DELETE.",
            "content": {"application/sdp": {"schema": {"type": "string"}}},
            "headers": {"Location": {"schema": {"type": "string"}}},
        },
        400: {"description": "A malformed or oversized offer, or a bad source.", "content": _TEXT},
        **_REFUSALS,
        415: {"description": "The offer is not application/sdp.", "content": _TEXT},
        422: {
            "description": "The offer has no audio codec mediabot takes (Opus or PCMU), or ``source`` is too long.",
            "content": {**_TEXT, "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
        },
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/sdp": {"schema": {"type": "string"}}}},
        "security": _SECURED,
    },
)
async def whip_offer(
    session_id: str,
    request: Request,
    media: MediaDep,
    source: Annotated[str | None, Query(max_length=128, description="Roster sourceId, or main.")] = None,
) -> Response:
    """Answer an SDP offer for one source of the session."""
    try:
        engine = _engine(media)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        engine.authorize(session_id, request.headers.get("authorization"))
        if content_type != "application/sdp":
            return Response("the offer must be sent as application/sdp", status_code=415, media_type="text/plain")
        try:
            body = await read_limited(request, engine.options.max_sdp_bytes)
        except HTTPException as exc:
            raise WhipBadOffer(f"the SDP offer was refused: {exc.detail}") from exc
        answer, resource_id = await engine.whip_offer(session_id, request.headers.get("authorization"), source, body)
    except WhipError as exc:
        logger.info("WHIP offer for session %s refused (%d): %s", session_id, exc.status, exc)
        return _refusal(exc)
    return Response(
        answer,
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/media/whip/{session_id}/{resource_id}"},
    )


@router.delete(
    "/media/whip/{session_id}/{resource_id}",
    response_class=Response,
    responses={200: {"description": "The resource ended."}, **_REFUSALS},
    openapi_extra={"security": _SECURED},
)
async def whip_delete(session_id: str, resource_id: str, request: Request, media: MediaDep) -> Response:
    """End one WHIP resource (one source's connection)."""
    try:
        await _engine(media).whip_delete(session_id, resource_id, request.headers.get("authorization"))
    except WhipError as exc:
        return _refusal(exc)
    return Response(status_code=200)
