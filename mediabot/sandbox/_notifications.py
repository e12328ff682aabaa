"""Builders of commsNotification payloads, in the shapes of Graph's documented callback examples.

Pure functions over resource snapshots; they know nothing of delivery. Result codes Graph does not document are
named constants here, so a reader sees which values are the sandbox's own choice.
"""

from __future__ import annotations

import copy
from typing import Any, Final

__all__ = [
    "ANSWER_DEADLINE_RESULT",
    "BOT_HUNG_UP_RESULT",
    "KEEPALIVE_EXPIRED_RESULT",
    "REDIRECTED_RESULT",
    "REJECTED_RESULT",
    "REMOTE_HUNG_UP_RESULT",
    "TRANSFERRED_RESULT",
    "call_notification",
    "envelope",
    "operation_notification",
    "roster_notification",
    "summary",
    "terminated_notification",
    "tone_notification",
]


def _result(code: int, subcode: int, message: str) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.resultInfo", "code": code, "subcode": subcode, "message": message}


#: call-delete.md: the bot's DELETE ends the call with 200/5001.
BOT_HUNG_UP_RESULT: Final = _result(200, 5001, "The conversation has ended.")
#: the remote side hung up (``/_sandbox/calls/{id}/end``); Graph reports a normal end, subcode 0.
REMOTE_HUNG_UP_RESULT: Final = _result(200, 0, "The conversation has ended.")
#: call-reject.md documents no resultInfo for the deleted notification; the sandbox reports a normal end.
REJECTED_RESULT: Final = _result(200, 0, "The call was rejected by the bot.")
REDIRECTED_RESULT: Final = _result(200, 0, "The call was redirected by the bot.")
TRANSFERRED_RESULT: Final = _result(200, 0, "The call was transferred.")
#: Not documented by Graph (only "an incoming call must be answered within 15 s"); 408 Request Timeout is ours.
ANSWER_DEADLINE_RESULT: Final = _result(408, 0, "The call was not answered in time.")
#: call-keepalive.md says a call with no keepAlive for 45 minutes "is considered inactive and ends", with no code;
#: 408 with this message is the sandbox's choice.
KEEPALIVE_EXPIRED_RESULT: Final = _result(408, 0, "The call ended: no keepAlive request within the timeout.")


def _call_url(call_id: str) -> str:
    return f"/communications/calls/{call_id}"


def envelope(notifications: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``commsNotifications`` body POSTed to a callbackUri."""
    return {"@odata.type": "#microsoft.graph.commsNotifications", "value": notifications}


def _notification(change_type: str, resource_url: str, resource_data: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": change_type,
        "resourceUrl": resource_url,
        "resourceData": resource_data,
    }


def call_notification(change_type: str, call: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A notification about the call itself: ``created`` carries the whole call, ``updated`` the changed fields."""
    url = _call_url(call["id"])
    if change_type == "created":
        data = {key: copy.deepcopy(value) for key, value in call.items() if key != "@odata.context"}
    else:
        data = {"@odata.type": "#microsoft.graph.call", "state": call.get("state")}
    data["@odata.id"] = url
    data.update(copy.deepcopy(changes))
    return _notification(change_type, url, data)


def terminated_notification(call: dict[str, Any], result_info: dict[str, Any]) -> dict[str, Any]:
    """``deleted``: the call ended (state ``terminated``) with ``result_info``."""
    url = _call_url(call["id"])
    data = {
        "@odata.type": "#microsoft.graph.call",
        "@odata.id": url,
        "id": call["id"],
        "state": "terminated",
        "direction": call.get("direction"),
        "callbackUri": call.get("callbackUri"),
        "myParticipantId": call.get("myParticipantId"),
        "resultInfo": copy.deepcopy(result_info),
    }
    return _notification("deleted", url, data)


def roster_notification(call_id: str, participants: list[dict[str, Any]]) -> dict[str, Any]:
    """``updated`` on ``/participants`` with the whole roster (as Graph sends roster updates)."""
    return _notification("updated", f"{_call_url(call_id)}/participants", copy.deepcopy(participants))


def operation_notification(call_id: str, operation: dict[str, Any]) -> dict[str, Any]:
    """``deleted`` on ``/operations/{id}`` carrying the finished operation (the documented completion shape)."""
    url = f"{_call_url(call_id)}/operations/{operation['id']}"
    data = {**copy.deepcopy(operation), "@odata.id": url}
    return _notification("deleted", url, data)


def tone_notification(call: dict[str, Any], sequence_id: int, tone: str) -> dict[str, Any]:
    """``updated`` on the call carrying one received DTMF tone."""
    tone_info = {"@odata.type": "#microsoft.graph.toneInfo", "sequenceId": sequence_id, "tone": tone}
    return call_notification("updated", call, toneInfo=tone_info)


def summary(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A compact description of each notification in a body (for the delivery log)."""
    described = []
    for item in body.get("value", []):
        data = item.get("resourceData")
        entry: dict[str, Any] = {"changeType": item.get("changeType"), "resourceUrl": item.get("resourceUrl")}
        if isinstance(data, list):
            entry["participants"] = len(data)
        elif isinstance(data, dict):
            entry["type"] = data.get("@odata.type")
            for key in ("state", "status", "clientContext", "toneInfo", "resultInfo"):
                if data.get(key) is not None:
                    entry[key] = copy.deepcopy(data[key])
        described.append(entry)
    return described
