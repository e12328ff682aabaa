"""``/communications/callRecords``: a record with ``$expand=sessions($expand=segments)``, and paged sessions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from .._deps import PrincipalDep, StateDep, api_base, require_permission
from .._errors import GraphErrorResponse

__all__ = ["router"]

router = APIRouter()


def _expands(expand: str | None, name: str) -> tuple[bool, str]:
    """Whether ``$expand`` names ``name``, and its nested ``$expand`` text (``sessions($expand=segments)``)."""
    if not expand:
        return False, ""
    for item in expand.split(","):
        head, _, rest = item.strip().partition("(")
        if head.strip() == name:
            return True, rest.rstrip(")")
    return False, ""


def _session(session: dict[str, Any], with_segments: bool) -> dict[str, Any]:
    if with_segments:
        return session
    return {key: value for key, value in session.items() if key != "segments"}


@router.get("/communications/callRecords/{record_id}")
async def get_call_record(record_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """A callRecord; sessions (and their segments) only when expanded."""
    require_permission(principal, "callRecords.get")
    record = state.store.call_record(record_id)
    sessions = record.pop("sessions")
    expand_sessions, nested = _expands(request.query_params.get("$expand"), "sessions")
    if expand_sessions:
        with_segments, _ = _expands(nested.removeprefix("$expand="), "segments")
        record["sessions"] = [_session(s, with_segments) for s in sessions]
    record["@odata.context"] = f"{api_base(request)}/$metadata#communications/callRecords/$entity"
    return record


@router.get("/communications/callRecords/{record_id}/sessions")
async def list_sessions(record_id: str, request: Request, state: StateDep, principal: PrincipalDep) -> dict[str, Any]:
    """The sessions of a callRecord, paged (``$top``, default the sandbox page size) via ``@odata.nextLink``."""
    require_permission(principal, "callRecords.sessions.list")
    sessions = state.store.call_record(record_id)["sessions"]
    params = request.query_params
    try:
        top = int(params.get("$top", state.config.sessions_page_size))
        skip = int(params.get("$skiptoken", "0"))
    except ValueError as exc:
        raise GraphErrorResponse(400, "BadRequest", "$top and $skiptoken must be integers.") from exc
    if top < 1 or skip < 0:
        raise GraphErrorResponse(400, "BadRequest", "$top must be positive.")
    with_segments, _ = _expands(params.get("$expand"), "segments")
    base = f"{api_base(request)}/communications/callRecords/{record_id}/sessions"
    page: dict[str, Any] = {
        "@odata.context": f"{api_base(request)}/$metadata#communications/callRecords('{record_id}')/sessions",
        "value": [_session(s, with_segments) for s in sessions[skip : skip + top]],
    }
    if skip + top < len(sessions):
        query = {"$top": str(top), "$skiptoken": str(skip + top)}
        if params.get("$expand"):
            query["$expand"] = params["$expand"]
        page["@odata.nextLink"] = f"{base}?{urlencode(query)}"
    return page
