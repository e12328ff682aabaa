"""Presence: get one or many users' presence, and the app's setPresence / clearPresence / preferred presence."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from .._deps import PrincipalDep, StateDep, action_body, require_permission
from .._errors import GraphErrorResponse

__all__ = ["router"]

router = APIRouter()

#: (availability, activity) pairs each action accepts, from the setPresence / setUserPreferredPresence docs.
_SESSION_COMBOS = {
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
}
_PREFERRED_COMBOS = {
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
}
_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")
_SESSION_MIN = dt.timedelta(minutes=5)
_SESSION_MAX = dt.timedelta(hours=4)


def _duration(text: Any) -> dt.timedelta | None:
    if text in (None, ""):
        return None
    match = _DURATION.match(str(text))
    if match is None or str(text) in ("P", "PT"):
        raise GraphErrorResponse(400, "BadRequest", f"expirationDuration '{text}' is not an ISO 8601 duration.")
    return dt.timedelta(
        days=int(match["d"] or 0),
        hours=int(match["h"] or 0),
        minutes=int(match["m"] or 0),
        seconds=float(match["s"] or 0),
    )


@router.get("/users/{user_id}/presence")
async def get_presence(user_id: str, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """A user's presence."""
    require_permission(principal, "presence.get")
    return state.store.presence(user_id)


@router.get("/communications/presences/{user_id}")
async def get_presence_by_id(user_id: str, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """A user's presence by id (the presence entity, as Graph returns it)."""
    require_permission(principal, "presence.get")
    return state.store.presence(user_id)


@router.post("/communications/getPresencesByUserId")
async def get_presences(request: Request, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """Presence of several users (``{"ids": [...]}`` → ``{"value": [...]}``)."""
    require_permission(principal, "presence.getPresencesByUserId")
    body = await action_body(request, state, "cloudCommunications.getPresencesByUserId")
    ids = body.get("ids") or []
    if not ids or len(ids) > 650:
        raise GraphErrorResponse(400, "BadRequest", "ids must list between 1 and 650 user ids.")
    return {"value": [state.store.presence(str(user_id)) for user_id in ids]}


@router.post("/users/{user_id}/presence/setPresence")
async def set_presence(user_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Set the application's presence session for the user (200)."""
    require_permission(principal, "presence.setPresence")
    body = await action_body(request, state, "presence.setPresence")
    combo = (body["availability"], body["activity"])
    if combo not in _SESSION_COMBOS:
        raise GraphErrorResponse(400, "BadRequest", f"Unsupported availability/activity combination {combo}.")
    session_id = str(body.get("sessionId") or "")
    if session_id.lower() != principal.app_id.lower():
        raise GraphErrorResponse(400, "BadRequest", "sessionId must be the application (client) id of the caller.")
    duration = _duration(body.get("expirationDuration")) or _SESSION_MIN
    if not _SESSION_MIN <= duration <= _SESSION_MAX:
        raise GraphErrorResponse(400, "BadRequest", "expirationDuration must be between PT5M and PT4H.")
    now = dt.datetime.now(dt.UTC)
    state.store.set_presence(user_id, session_id, combo[0], combo[1], now + duration)
    return Response(status_code=200)


@router.post("/users/{user_id}/presence/clearPresence")
async def clear_presence(user_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Clear the application's presence session for the user (200)."""
    require_permission(principal, "presence.clearPresence")
    body = await action_body(request, state, "presence.clearPresence")
    state.store.clear_presence(user_id, str(body.get("sessionId") or principal.app_id))
    return Response(status_code=200)


@router.post("/users/{user_id}/presence/setUserPreferredPresence")
async def set_user_preferred_presence(
    user_id: str, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """Set the user's preferred presence, which wins over sessions until it expires (200)."""
    require_permission(principal, "presence.setUserPreferredPresence")
    body = await action_body(request, state, "presence.setUserPreferredPresence")
    combo = (body.get("availability"), body.get("activity"))
    if combo not in _PREFERRED_COMBOS:
        raise GraphErrorResponse(400, "BadRequest", f"Unsupported availability/activity combination {combo}.")
    duration = _duration(body.get("expirationDuration"))
    until = dt.datetime.now(dt.UTC) + duration if duration else None
    state.store.set_preferred_presence(user_id, (str(combo[0]), str(combo[1]), until))
    return Response(status_code=200)


@router.post("/users/{user_id}/presence/clearUserPreferredPresence")
async def clear_user_preferred_presence(user_id: str, state: StateDep, principal: PrincipalDep) -> Response:
    """Clear the user's preferred presence (200)."""
    require_permission(principal, "presence.clearUserPreferredPresence")
    state.store.set_preferred_presence(user_id, None)
    return Response(status_code=200)


@router.post("/users/{user_id}/presence/setStatusMessage")
async def set_status_message(user_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Set the user's status message (200)."""
    require_permission(principal, "presence.setStatusMessage")
    body = await action_body(request, state, "presence.setStatusMessage")
    state.store.set_status_message(user_id, body.get("statusMessage"))
    return Response(status_code=200)
