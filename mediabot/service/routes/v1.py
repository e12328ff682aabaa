"""The operator API under ``/v1`` (bearer API key): calls, prompts, tones, participants, meetings, presence."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import AfterValidator, BaseModel, Field

from mediabot._errors import GraphAPIError, GraphError, GraphNotFoundError
from mediabot.calls import CallError, UnknownCallError
from mediabot.graph import user_target
from mediabot.graph.join_url import parse_join_web_url
from mediabot.graph.notifications import GRAPH_ID_PATTERN
from mediabot.service._body import CheckedBodyRoute
from mediabot.service.deps import API_KEY_ERRORS, CallRecordsDep, GraphDep, ManagerDep, require_api_key

__all__ = ["router"]

# What the whole operator API may answer besides each route's own: the key is checked first.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    **API_KEY_ERRORS,
    400: {"description": "The body is not UTF-8 JSON."},
    413: {"description": "The body is larger than the operator API takes (64 KiB)."},
}
NO_CALL: dict[int | str, dict[str, Any]] = {404: {"description": "No such call."}}
GRAPH_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such call, or Graph has no such thing."},
    409: {"description": "The call cannot do that now, or Graph refused it (its error code is in the detail)."},
    502: {"description": "Graph failed or could not be reached."},
}

router = APIRouter(
    prefix="/v1",
    tags=["operator"],
    dependencies=[Depends(require_api_key)],
    route_class=CheckedBodyRoute,
    responses=AUTH_ERRORS,
)


def _join_link(value: str) -> str:
    """Refuse what is not a Teams join link before any media or Graph request is prepared for it (422)."""
    parse_join_web_url(value)
    return value


class DialOut(BaseModel):
    """Place a call: one user id is peer-to-peer, several make a group call."""

    user_ids: list[str] = Field(min_length=1)
    subject: str | None = None


class JoinMeeting(BaseModel):
    """Join a Teams meeting by its join link."""

    join_web_url: Annotated[str, AfterValidator(_join_link)] = Field(
        description="A Teams join link: https://.../l/meetup-join/... (with its context) or https://.../meet/<id>?p=..."
    )
    display_name: str | None = None


class PlayPrompt(BaseModel):
    """Play an audio file (URL) into the call."""

    uri: str


class Invite(BaseModel):
    """Invite Teams users into the call."""

    user_ids: list[str] = Field(min_length=1)


class Transfer(BaseModel):
    """Transfer the call to a Teams user."""

    user_id: str


class NewMeeting(BaseModel):
    """Create an online meeting on behalf of an organizer."""

    organizer_id: str = Field(pattern=GRAPH_ID_PATTERN, description="A user id.")
    subject: str | None = None


def _translate(exc: Exception) -> HTTPException:
    """Our errors as HTTP: unknown things 404, Graph's refusals 409 (with its code), Graph unreachable 502."""
    if isinstance(exc, UnknownCallError | GraphNotFoundError):
        return HTTPException(404, str(exc) if isinstance(exc, UnknownCallError) else f"Graph: {exc.message}")
    if isinstance(exc, GraphAPIError):
        return HTTPException(502 if exc.status_code >= 500 else 409, f"Graph: {exc.code}: {exc.message}")
    return HTTPException(502 if isinstance(exc, GraphError) else 409, str(exc))


async def _guard(awaitable: Any) -> Any:
    try:
        return await awaitable
    except (CallError, GraphError) as exc:
        raise _translate(exc) from exc


@router.get("/calls")
async def list_calls(manager: ManagerDep) -> dict[str, Any]:
    """Every call this instance knows, live and recently ended, with state and roster."""
    return {"value": [call.snapshot() for call in manager.calls()]}


@router.get("/calls/{call_id}", responses=NO_CALL)
async def get_call(call_id: str, manager: ManagerDep) -> dict[str, Any]:
    """One call."""
    call = manager.get(call_id)
    if call is None:
        raise HTTPException(404, f"no call {call_id}")
    return call.snapshot()


@router.post("/calls", status_code=201, responses=GRAPH_ERRORS)
async def dial_out(body: DialOut, manager: ManagerDep) -> dict[str, Any]:
    """Call one user (peer-to-peer) or several (group call)."""
    if len(body.user_ids) == 1:
        call = await _guard(manager.place_call(body.user_ids[0]))
    else:
        call = await _guard(manager.place_group_call([user_target(u) for u in body.user_ids], subject=body.subject))
    snapshot: dict[str, Any] = call.snapshot()
    return snapshot


@router.post("/meetings/join", status_code=201, responses=GRAPH_ERRORS)
async def join_meeting(body: JoinMeeting, manager: ManagerDep) -> dict[str, Any]:
    """Join a meeting by its join link."""
    try:
        call = await _guard(manager.join_meeting(body.join_web_url, display_name=body.display_name))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    snapshot: dict[str, Any] = call.snapshot()
    return snapshot


@router.delete("/calls/{call_id}", status_code=204, responses=GRAPH_ERRORS)
async def hang_up(call_id: str, manager: ManagerDep) -> None:
    """Hang up (the bot leaves the call)."""
    await _guard(manager.hang_up(call_id))


@router.post("/calls/{call_id}/prompts", status_code=202, responses=GRAPH_ERRORS)
async def play_prompt(call_id: str, body: PlayPrompt, manager: ManagerDep) -> dict[str, str]:
    """Start playing a prompt; its completion shows in the call's operations."""
    await _guard(manager.play_prompt(call_id, body.uri))
    return {"status": "started"}


@router.post("/calls/{call_id}/tones", status_code=202, responses=GRAPH_ERRORS)
async def subscribe_to_tones(call_id: str, manager: ManagerDep) -> dict[str, str]:
    """Subscribe to the call's DTMF tones."""
    await _guard(manager.subscribe_to_tones(call_id))
    return {"status": "started"}


def _require_call(manager: ManagerDep, call_id: str) -> None:
    if manager.get(call_id) is None:
        raise HTTPException(404, f"no call {call_id}")


@router.post("/calls/{call_id}/mute", status_code=202, responses=GRAPH_ERRORS)
async def mute(call_id: str, manager: ManagerDep, graph: GraphDep) -> dict[str, Any]:
    """Mute the bot in the call."""
    _require_call(manager, call_id)
    operation = await _guard(graph.mute(call_id))
    return {"operation": operation.to_graph()}


@router.post("/calls/{call_id}/participants", status_code=202, responses=GRAPH_ERRORS)
async def invite(call_id: str, body: Invite, manager: ManagerDep, graph: GraphDep) -> dict[str, Any]:
    """Invite users into the call."""
    _require_call(manager, call_id)
    operation = await _guard(graph.invite_participants(call_id, [user_target(u) for u in body.user_ids]))
    return {"operation": operation.to_graph()}


@router.post("/calls/{call_id}/transfer", status_code=202, responses=GRAPH_ERRORS)
async def transfer(call_id: str, body: Transfer, manager: ManagerDep) -> dict[str, str]:
    """Transfer the call to a user."""
    await _guard(manager.transfer(call_id, user_target(body.user_id)))
    return {"status": "transferring"}


@router.get("/presence/{user_id}", responses=GRAPH_ERRORS)
async def presence(user_id: Annotated[str, Path(pattern=GRAPH_ID_PATTERN)], graph: GraphDep) -> dict[str, Any]:
    """A user's presence."""
    result: dict[str, Any] = (await _guard(graph.get_presence(user_id))).to_graph()
    return result


@router.post("/meetings", status_code=201, responses=GRAPH_ERRORS)
async def create_meeting(body: NewMeeting, graph: GraphDep) -> dict[str, Any]:
    """Create an online meeting."""
    meeting = await _guard(graph.create_online_meeting(body.organizer_id, {"subject": body.subject}))
    result: dict[str, Any] = meeting.to_graph()
    return result


@router.get("/callrecords")
async def call_records(records: CallRecordsDep) -> dict[str, Any]:
    """Call records received through the webhook subscription, newest last."""
    return {"value": [record.to_graph() for record in records]}
