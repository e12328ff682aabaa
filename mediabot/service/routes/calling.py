"""``POST /api/calling``: Graph's signed call notifications, authenticated, parsed and handed to the CallManager."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from mediabot._errors import CallbackAuthError, NotificationError
from mediabot.graph.notifications import parse_comms_notifications
from mediabot.service._body import read_limited
from mediabot.service.deps import AuthenticatorDep, ManagerDep, SettingsDep

__all__ = ["SECURITY_SCHEME", "router"]

logger = logging.getLogger(__name__)
router = APIRouter(tags=["callbacks"])
# The callback's security, for the OpenAPI document (the authenticator does the checking, with no dependency cost).
SECURITY_SCHEME: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "RS256 JWT signed by the calling platform, for this bot's app id.",
}


# What Graph POSTs: a commsNotifications body (see mediabot.graph.notifications for every shape read).
COMMS_NOTIFICATIONS: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["value"],
                "properties": {
                    "value": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["changeType", "resourceUrl"],
                            "properties": {
                                "changeType": {"type": "string", "minLength": 1},
                                "resourceUrl": {"type": "string", "pattern": "\\S"},
                                "resourceData": {"type": ["object", "array", "null"]},
                            },
                        },
                    }
                },
            }
        }
    },
}


@router.post(
    "/api/calling",
    status_code=202,
    response_class=Response,
    responses={
        202: {"description": "Queued for the call manager."},
        400: {"description": "Not a commsNotifications body."},
        401: {"description": "No valid Graph-signed bearer token."},
        413: {"description": "The body is larger than MEDIABOT_MAX_CALLBACK_BYTES."},
    },
    openapi_extra={"requestBody": COMMS_NOTIFICATIONS, "security": [{"GraphCallbackToken": []}]},
)
async def calling(
    request: Request, settings: SettingsDep, authenticator: AuthenticatorDep, manager: ManagerDep
) -> Response:
    """Accept a commsNotifications body only with a valid Graph-signed bearer token; 202 once it is queued."""
    try:
        claims = await authenticator.authenticate(request.headers.get("authorization"))
    except CallbackAuthError as exc:
        logger.warning("refused a call notification from %s: %s", request.client.host if request.client else "?", exc)
        raise HTTPException(401, "invalid or missing callback token", headers={"WWW-Authenticate": "Bearer"}) from exc
    body = await read_limited(request, settings.max_callback_bytes)
    try:
        events = parse_comms_notifications(body)
    except NotificationError as exc:
        logger.warning("refused a malformed call notification (issuer %s): %s", claims.issuer, exc)
        raise HTTPException(400, f"not a commsNotifications body: {exc}") from exc
    await manager.handle_notifications(events)
    return Response(status_code=202)
