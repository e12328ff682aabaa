"""``/communications/calls``: create, get, delete, answer/reject/redirect/transfer, keepAlive and media actions.

Also serves recordResponse recordings at ``/media/recordings/{id}`` (outside the versioned API, like the real
``recordingLocation``), guarded by ``Authorization: Bearer <recordingAccessToken>``.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from .._deps import (
    PrincipalDep,
    SandboxState,
    StateDep,
    action_body,
    api_base,
    caller_app,
    operation_response,
    require_permission,
    type_body,
)
from .._errors import GraphErrorResponse
from .._notifications import BOT_HUNG_UP_RESULT, REDIRECTED_RESULT, REJECTED_RESULT, TRANSFERRED_RESULT
from .._store import not_found, recording_wav
from .._tokens import Principal

__all__ = ["recordings_router", "router"]

router = APIRouter()
recordings_router = APIRouter()

_APP_HOSTED = "#microsoft.graph.appHostedMediaConfig"
_SERVICE_HOSTED = "#microsoft.graph.serviceHostedMediaConfig"
_MEDIA_TYPES = (_APP_HOSTED, _SERVICE_HOSTED)


def _check_media_config(media_config: Any, principal: Principal) -> None:
    if not isinstance(media_config, dict) or media_config.get("@odata.type") not in _MEDIA_TYPES:
        raise GraphErrorResponse(
            400,
            "BadRequest",
            "mediaConfig must be a #microsoft.graph.serviceHostedMediaConfig or #microsoft.graph.appHostedMediaConfig.",
        )
    if media_config["@odata.type"] == _APP_HOSTED:
        require_permission(principal, "calls.appHostedMedia")


def _resolve_meeting(state: SandboxState, body: dict[str, Any]) -> dict[str, Any] | None:
    """The sandbox meeting a join request points at (404 like Graph when there is none)."""
    info = body.get("meetingInfo") or {}
    kind = info.get("@odata.type", "")
    if kind == "#microsoft.graph.joinMeetingIdMeetingInfo":
        join_id = str(info.get("joinMeetingId") or "")
        found = state.store.find_meetings(None, join_meeting_id=join_id)
        if not found:
            raise not_found(f"Meeting with joinMeetingId '{join_id}'")
        settings = found[0]["joinMeetingIdSettings"]
        if settings["isPasscodeRequired"] and info.get("passcode") != settings["passcode"]:
            raise GraphErrorResponse(403, "Forbidden", "The passcode of the meeting is missing or wrong.")
        return found[0]
    if kind == "#microsoft.graph.tokenMeetingInfo":
        return None
    thread_id = (body.get("chatInfo") or {}).get("threadId")
    if not thread_id:
        raise GraphErrorResponse(400, "BadRequest", "Joining a meeting requires chatInfo.threadId with meetingInfo.")
    found = state.store.find_meetings(None, thread_id=str(thread_id))
    if not found:
        raise not_found(f"Meeting with chat thread '{thread_id}'")
    return found[0]


@router.post("/communications/calls")
async def create_call(request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Create a P2P or group call, or join a meeting (201 + ``Location``)."""
    body = await type_body(request, state, "call")
    if not body.get("callbackUri"):
        raise GraphErrorResponse(400, "BadRequest", "callbackUri is required.")
    if not body.get("requestedModalities"):
        raise GraphErrorResponse(400, "BadRequest", "requestedModalities is required.")
    targets = body.get("targets") or []
    if body.get("meetingInfo"):
        kind = "join"
    elif len(targets) > 1:
        kind = "group"
    elif len(targets) == 1:
        kind = "p2p"
    else:
        raise GraphErrorResponse(400, "BadRequest", "A call needs targets or meetingInfo.")
    require_permission(principal, f"calls.create.{kind}")
    _check_media_config(body.get("mediaConfig"), principal)
    meeting = _resolve_meeting(state, body) if kind == "join" else None
    app = caller_app(state, principal)
    base = api_base(request)
    call = state.store.create_call(app, body, f"{base}/$metadata#communications/calls/$entity", meeting)
    state.platform.established(call["id"], app.client_id)
    return JSONResponse(call, status_code=201, headers={"Location": f"{base}/communications/calls/{call['id']}"})


@router.get("/communications/calls/{call_id}")
async def get_call(call_id: str, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """The call (404 once it ended)."""
    require_permission(principal, "calls.get")
    return state.store.get_call(call_id, principal.app_id)


@router.delete("/communications/calls/{call_id}", status_code=204)
async def delete_call(call_id: str, state: StateDep, principal: PrincipalDep) -> Response:
    """Hang up: the call ends (notified ``deleted``, 200/5001) and a callRecord is filed."""
    require_permission(principal, "calls.delete")
    call = state.store.get_call(call_id, principal.app_id)
    state.store.end_call(call_id, principal.app_id)
    state.platform.ended(call, principal.app_id, BOT_HUNG_UP_RESULT)
    return Response(status_code=204)


@router.post("/communications/calls/{call_id}/answer")
async def answer(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Answer an incoming call (202)."""
    require_permission(principal, "calls.answer")
    state.store.get_call(call_id, principal.app_id)
    body = await action_body(request, state, "call.answer")
    _check_media_config(body.get("mediaConfig"), principal)
    state.store.answer(call_id, principal.app_id, body)
    state.platform.established(call_id, principal.app_id)
    return Response(status_code=202)


@router.post("/communications/calls/{call_id}/reject")
async def reject(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Reject an incoming call (202); the call ends."""
    require_permission(principal, "calls.reject")
    await action_body(request, state, "call.reject")
    call = state.store.get_call(call_id, principal.app_id)
    state.store.reject_or_redirect(call_id, principal.app_id, "reject")
    state.platform.ended(call, principal.app_id, REJECTED_RESULT)
    return Response(status_code=202)


@router.post("/communications/calls/{call_id}/redirect")
async def redirect(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Redirect an incoming call (202); the bot's leg ends."""
    require_permission(principal, "calls.redirect")
    body = await action_body(request, state, "call.redirect")
    if not body.get("targets"):
        raise GraphErrorResponse(400, "BadRequest", "redirect requires at least one target.")
    call = state.store.get_call(call_id, principal.app_id)
    state.store.reject_or_redirect(call_id, principal.app_id, "redirect")
    state.platform.ended(call, principal.app_id, REDIRECTED_RESULT)
    return Response(status_code=202)


@router.post("/communications/calls/{call_id}/transfer")
async def transfer(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Transfer an active call (202); once the transfer completes the bot's call ends."""
    require_permission(principal, "calls.transfer")
    call = state.store.get_call(call_id, principal.app_id)
    body = await action_body(request, state, "call.transfer")
    if call["state"] != "established":
        raise GraphErrorResponse(
            400, "BadRequest", f"Call '{call_id}' is '{call['state']}'; only an established call can be transferred."
        )
    if not body.get("transferTarget"):
        raise GraphErrorResponse(400, "BadRequest", "transfer requires transferTarget.")
    state.store.end_call(call_id, principal.app_id)
    state.platform.transferred(call, principal.app_id, TRANSFERRED_RESULT)
    return Response(status_code=202)


@router.post("/communications/calls/{call_id}/keepAlive")
async def keep_alive(call_id: str, state: StateDep, principal: PrincipalDep) -> Response:
    """Keep the call alive (200, no body; 404 once the call has ended)."""
    require_permission(principal, "calls.keepAlive")
    state.store.get_call(call_id, principal.app_id)
    state.platform.kept_alive(call_id)
    return Response(status_code=200)


async def _simple_operation(
    request: Request,
    state: SandboxState,
    principal: Principal,
    call_id: str,
    action: str,
    odata_type: str,
    final: dict[str, Any] | None = None,
    nonempty: str | None = None,
    immediate: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    require_permission(principal, f"calls.{action}")
    state.store.get_call(call_id, principal.app_id)
    body = await action_body(request, state, f"call.{action}")
    if nonempty is not None and not body.get(nonempty):
        raise GraphErrorResponse(400, "BadRequest", f"{action} requires at least one item in '{nonempty}'.")
    operation = state.store.add_operation(
        call_id, principal.app_id, odata_type, body.get("clientContext"), final=final, immediate=immediate
    )
    if action == "subscribeToTone":
        state.store.subscribe_to_tones(call_id, principal.app_id)
    state.platform.operation_completed(call_id, principal.app_id, operation["id"])
    return body, operation


def _require_service_hosted(state: SandboxState, principal: Principal, call_id: str, action: str) -> None:
    call = state.store.get_call(call_id, principal.app_id)
    media = call.get("mediaConfig") or {}
    if media.get("@odata.type") == _APP_HOSTED:
        raise GraphErrorResponse(400, "BadRequest", f"{action} is only supported for calls with service-hosted media.")


@router.post("/communications/calls/{call_id}/mute")
async def mute(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Mute the bot itself (200 + muteParticipantOperation)."""
    _, operation = await _simple_operation(
        request, state, principal, call_id, "mute", "muteParticipantOperation", immediate=True
    )
    state.store.set_participant_muted(call_id, principal.app_id, None, True)
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/unmute")
async def unmute(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Unmute the bot itself (200 + unmuteParticipantOperation)."""
    _, operation = await _simple_operation(
        request, state, principal, call_id, "unmute", "unmuteParticipantOperation", immediate=True
    )
    state.store.set_participant_muted(call_id, principal.app_id, None, False)
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/updateRecordingStatus")
async def update_recording_status(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Tell Teams whether the bot records (200 + updateRecordingStatusOperation)."""
    body, operation = await _simple_operation(
        request, state, principal, call_id, "updateRecordingStatus", "updateRecordingStatusOperation", immediate=True
    )
    state.store.set_recording_status(call_id, principal.app_id, str(body.get("status")))
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/changeScreenSharingRole")
async def change_screen_sharing_role(
    call_id: str, request: Request, state: StateDep, principal: PrincipalDep
) -> Response:
    """Switch between viewer and sharer (202, no body)."""
    require_permission(principal, "calls.changeScreenSharingRole")
    state.store.get_call(call_id, principal.app_id)
    await action_body(request, state, "call.changeScreenSharingRole")
    return Response(status_code=202)


@router.post("/communications/calls/{call_id}/playPrompt")
async def play_prompt(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Play prompts (service-hosted media only; 200 + playPromptOperation)."""
    _require_service_hosted(state, principal, call_id, "playPrompt")
    _, operation = await _simple_operation(
        request,
        state,
        principal,
        call_id,
        "playPrompt",
        "playPromptOperation",
        {"completionReason": "completedSuccessfully"},
        nonempty="prompts",
    )
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/recordResponse")
async def record_response(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Record a short response (service-hosted media only); the completed operation carries the recording."""
    _require_service_hosted(state, principal, call_id, "recordResponse")
    require_permission(principal, "calls.recordResponse")
    body = await action_body(request, state, "call.recordResponse")
    access_token = secrets.token_urlsafe(32)
    recording_id = state.store.add_recording(access_token)
    location = f"{str(request.base_url).rstrip('/')}/media/recordings/{recording_id}"
    operation = state.store.add_operation(
        call_id,
        principal.app_id,
        "recordOperation",
        body.get("clientContext"),
        initial={"recordingLocation": None, "recordingAccessToken": None},
        final={
            "recordingLocation": location,
            "recordingAccessToken": access_token,
            "completionReason": "maxRecordDurationReached",
        },
    )
    state.platform.operation_completed(call_id, principal.app_id, operation["id"])
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/cancelMediaProcessing")
async def cancel_media_processing(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Cancel running prompts/recordings (200 + cancelMediaProcessingOperation)."""
    _, operation = await _simple_operation(
        request, state, principal, call_id, "cancelMediaProcessing", "cancelMediaProcessingOperation", immediate=True
    )
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/subscribeToTone")
async def subscribe_to_tone(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Subscribe to DTMF tones (200 + subscribeToToneOperation)."""
    _, operation = await _simple_operation(
        request, state, principal, call_id, "subscribeToTone", "subscribeToToneOperation", immediate=True
    )
    return operation_response(request, call_id, operation)


@router.post("/communications/calls/{call_id}/sendDtmfTones")
@router.post("/communications/calls/{call_id}/microsoft.graph.sendDtmfTones")
async def send_dtmf_tones(call_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> Response:
    """Send DTMF tones (200 + sendDtmfTonesOperation)."""
    _, operation = await _simple_operation(
        request,
        state,
        principal,
        call_id,
        "sendDtmfTones",
        "sendDtmfTonesOperation",
        {"completionReason": "completedSuccessfully"},
        nonempty="tones",
    )
    return operation_response(request, call_id, operation)


@router.get("/communications/calls/{call_id}/operations/{operation_id}")
async def get_operation(call_id: str, operation_id: str, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """A commsOperation of the call (completed once the action has run)."""
    require_permission(principal, "calls.operations.get")
    return state.store.get_operation(call_id, principal.app_id, operation_id)


@recordings_router.get("/media/recordings/{recording_id}")
async def download_recording(recording_id: str, request: Request, state: StateDep) -> Response:
    """The WAV recorded by recordResponse, for the holder of its ``recordingAccessToken``."""
    expected = state.store.recording_token(recording_id)
    if expected is None:
        raise not_found(f"Recording '{recording_id}'")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise GraphErrorResponse(401, "InvalidAuthenticationToken", "The recordingAccessToken is missing or wrong.")
    return Response(recording_wav(), media_type="application/octet-stream")
