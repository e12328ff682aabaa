"""``/users/{userId}/onlineMeetings``: create, createOrGet, get, and lookup by joinWebUrl or joinMeetingId."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from .._deps import PrincipalDep, StateDep, action_body, api_base, require_permission, type_body
from .._errors import GraphErrorResponse

__all__ = ["router"]

router = APIRouter()

_FILTER = re.compile(r"^\s*(?P<field>[A-Za-z/]+)\s+eq\s+'(?P<value>.*)'\s*$")


def _entity_context(request: Request, user_id: str) -> str:
    return f"{api_base(request)}/$metadata#users('{user_id}')/onlineMeetings/$entity"


@router.post("/users/{user_id}/onlineMeetings")
async def create_meeting(user_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Create a meeting organised by the user (201)."""
    require_permission(principal, "onlineMeetings.create")
    body = await type_body(request, state, "onlineMeeting")
    meeting, _ = state.store.create_meeting(user_id, body)
    meeting["@odata.context"] = _entity_context(request, user_id)
    return JSONResponse(meeting, status_code=201)


@router.post("/users/{user_id}/onlineMeetings/createOrGet")
async def create_or_get(user_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """The user's meeting with this ``externalId``: 201 when created now, 200 when it existed."""
    require_permission(principal, "onlineMeetings.createOrGet")
    body = await action_body(request, state, "onlineMeetings.createOrGet")
    meeting, created = state.store.create_meeting(user_id, body, external_id=str(body["externalId"]))
    meeting["@odata.context"] = _entity_context(request, user_id)
    return JSONResponse(meeting, status_code=201 if created else 200)


@router.get("/users/{user_id}/onlineMeetings")
async def find_meetings(user_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """Meetings matching ``$filter=JoinWebUrl eq '...'`` or ``joinMeetingIdSettings/joinMeetingId eq '...'``."""
    require_permission(principal, "onlineMeetings.list")
    raw = request.query_params.get("$filter")
    match = _FILTER.match(raw or "")
    if match is None:
        raise GraphErrorResponse(
            400,
            "BadRequest",
            "Filter expression expected - /onlineMeetings?$filter=JoinWebUrl eq 'XXXX' or "
            "joinMeetingIdSettings/joinMeetingId eq 'XXXX'.",
        )
    field = match["field"].lower()
    value = match["value"]
    if field == "joinweburl":
        found = state.store.find_meetings(user_id, join_web_url=value)
        if not found and "%" in value:
            found = state.store.find_meetings(user_id, join_web_url=unquote(value))
    elif field == "joinmeetingidsettings/joinmeetingid":
        found = state.store.find_meetings(user_id, join_meeting_id=value)
    else:
        raise GraphErrorResponse(400, "BadRequest", f"Filtering on '{match['field']}' is not supported.")
    return {"@odata.context": f"{api_base(request)}/$metadata#users('{user_id}')/onlineMeetings", "value": found}


@router.get("/users/{user_id}/onlineMeetings/{meeting_id}")
async def get_meeting(
    user_id: str, meeting_id: str, request: Request, state: StateDep, principal: PrincipalDep
) -> dict[str, Any]:
    """One meeting of the user."""
    require_permission(principal, "onlineMeetings.get")
    meeting = state.store.meeting(user_id, meeting_id)
    meeting["@odata.context"] = _entity_context(request, user_id)
    return meeting
