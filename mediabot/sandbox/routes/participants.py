"""``/communications/calls/{id}/participants``: roster list/get, invite, mute, remove, hold music, beta muteAll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from .._deps import PrincipalDep, StateDep, action_body, api_base, json_body, operation_response, require_permission
from .._errors import GraphErrorResponse

__all__ = ["router"]

router = APIRouter()


@router.get("/communications/calls/{call_id}/participants")
async def list_participants(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """The roster as ``{"value": [...]}``."""
    require_permission(principal, "participants.list")
    value = state.store.participants(call_id, principal.app_id)
    return {
        "@odata.context": f"{api_base(request)}/$metadata#communications/calls('{call_id}')/participants",
        "value": value,
    }


@router.get("/communications/calls/{call_id}/participants/{participant_id}")
async def get_participant(
    call_id: str, participant_id: str, state: StateDep, principal: PrincipalDep
) -> dict[str, Any]:
    """One participant."""
    require_permission(principal, "participants.get")
    return state.store.participant(call_id, principal.app_id, participant_id)


@router.post("/communications/calls/{call_id}/participants/invite")
async def invite(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Invite participants (200 + inviteParticipantsOperation + ``Location``)."""
    require_permission(principal, "participants.invite")
    state.store.get_call(call_id, principal.app_id)
    body = await action_body(request, state, "participants.invite")
    invitations = body.get("participants") or []
    if not invitations:
        raise GraphErrorResponse(400, "BadRequest", "invite requires at least one participant.")
    state.store.invite(call_id, principal.app_id, invitations)
    operation = state.store.add_operation(
        call_id,
        principal.app_id,
        "inviteParticipantsOperation",
        body.get("clientContext"),
        initial={"participants": invitations},
    )
    state.platform.operation_completed(call_id, principal.app_id, operation["id"], roster=True)
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/participants/muteAll")
@router.post("/app/calls/{call_id}/participants/muteAll")
async def mute_all(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Beta only: mute every participant (200 + commsOperation)."""
    if not request.url.path.startswith("/beta/"):
        raise GraphErrorResponse(400, "BadRequest", "Resource not found for the segment 'muteAll'.")
    require_permission(principal, "participants.muteAll")
    state.store.get_call(call_id, principal.app_id)
    body = await json_body(request)
    if not isinstance(body.get("participants", []), list):
        raise GraphErrorResponse(400, "BadRequest", "participants must be an array of participant ids.")
    for participant in state.store.participants(call_id, principal.app_id):
        if "application" not in participant["info"]["identity"]:
            state.store.set_participant_muted(call_id, principal.app_id, participant["id"], True)
    operation = state.store.add_operation(call_id, principal.app_id, "commsOperation", body.get("clientContext"))
    state.platform.operation_completed(call_id, principal.app_id, operation["id"], roster=True)
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/participants/{participant_id}/mute")
async def mute_participant(
    call_id: str, participant_id: str, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """Mute one participant (200 + muteParticipantOperation)."""
    require_permission(principal, "participants.mute")
    state.store.participant(call_id, principal.app_id, participant_id)
    body = await action_body(request, state, "participant.mute")
    state.store.set_participant_muted(call_id, principal.app_id, participant_id, True)
    operation = state.store.add_operation(
        call_id, principal.app_id, "muteParticipantOperation", body.get("clientContext"), immediate=True
    )
    state.platform.operation_completed(call_id, principal.app_id, operation["id"], roster=True)
    return operation_response(request, call_id, operation)


@router.delete("/communications/calls/{call_id}/participants/{participant_id}", status_code=204)
async def delete_participant(call_id: str, participant_id: str, state: StateDep, principal: PrincipalDep) -> Response:
    """Remove a participant (204)."""
    require_permission(principal, "participants.delete")
    state.store.remove_participant(call_id, principal.app_id, participant_id)
    state.platform.roster_changed(call_id, principal.app_id)
    return Response(status_code=204)


async def _hold_music(
    call_id: str, participant_id: str, request: Request, state: StateDep, principal: PrincipalDep, start: bool
) -> Response:
    action = "startHoldMusic" if start else "stopHoldMusic"
    require_permission(principal, f"participants.{action}")
    state.store.participant(call_id, principal.app_id, participant_id)
    body = await action_body(request, state, f"participant.{action}")
    operation = state.store.add_operation(call_id, principal.app_id, f"{action}Operation", body.get("clientContext"))
    state.platform.operation_completed(call_id, principal.app_id, operation["id"])
    return operation_response(request, call_id, operation, status=202)


@router.post("/communications/calls/{call_id}/participants/{participant_id}/startHoldMusic")
async def start_hold_music(
    call_id: str, participant_id: str, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """Put a participant on hold with music (202 + startHoldMusicOperation)."""
    return await _hold_music(call_id, participant_id, request, state, principal, start=True)


@router.post("/communications/calls/{call_id}/participants/{participant_id}/stopHoldMusic")
async def stop_hold_music(
    call_id: str, participant_id: str, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """Take a participant off hold (202 + stopHoldMusicOperation)."""
    return await _hold_music(call_id, participant_id, request, state, principal, start=False)
