"""Every documented v1.0 request example (shared/graph/examples) is sent to the sandbox and gets the documented status.

Ids in the documented paths and bodies are replaced by real ones created in the sandbox first.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from mediabot.sandbox import SandboxServer

from .conftest import call_body

_CONTRACT = Path(os.environ.get("MEDIABOT_GRAPH_CONTRACT") or Path(__file__).resolve().parents[3] / "shared" / "graph")
_EXAMPLES = sorted((_CONTRACT / "examples").glob("*.json"))

#: Documented examples of resources the sandbox does not emulate (with why).
NOT_EMULATED = {
    "/communications/calls/{id}/addLargeGalleryView": "video gallery: the sandbox is audio-only",
    "/communications/calls/{id}/audioRoutingGroups": "audio routing groups are not emulated",
    "/communications/calls/{id}/contentSharingSessions": "screen sharing is not emulated",
    "/communications/calls/{id}/contentSharingSessions/{id}": "screen sharing is not emulated",
    "/communications/onlineMeetings/": "VTC-id lookup (delegated/cloud video interop) is not emulated",
    "/me/onlineMeetings/{id}/attendeeReport": "attendee reports are not emulated",
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return data


V1_EXAMPLES = [p for p in _EXAMPLES if _load(p)["doc_version"] == "v1.0" and _load(p)["response_status"] is not None]


def _bot_id(call: dict[str, Any]) -> str:
    return str(call["myParticipantId"])


def _other_participant(graph: httpx.Client, call: dict[str, Any]) -> str:
    roster = graph.get(f"/communications/calls/{call['id']}/participants").json()["value"]
    return str(next(p["id"] for p in roster if p["id"] != _bot_id(call)))


def _prepare(example: dict[str, Any], sandbox: SandboxServer, graph: httpx.Client) -> tuple[str, dict[str, Any] | None]:
    template: str = example["path"]
    body = copy.deepcopy(example["request_body"])
    ids: list[str] = []
    if template.startswith("/communications/calls/{id}"):
        action = template.split("/")[4] if template.count("/") >= 4 else ""
        if action in ("answer", "reject", "redirect"):
            call = sandbox.incoming_call()
        else:
            response = graph.post("/communications/calls", json=call_body(targets=2))
            assert response.status_code == 201
            call = response.json()
        ids.append(call["id"])
        if "/participants/{id}" in template:
            ids.append(_other_participant(graph, call))
        if action == "updateRecordingStatus" and body:
            body["status"] = "recording"
    elif template.startswith("/communications/callRecords/{id}"):
        call = graph.post("/communications/calls", json=call_body(targets=3)).json()
        assert graph.delete(f"/communications/calls/{call['id']}").status_code == 204
        ids.append(call["callChainId"])
    elif template.startswith(("/users/{id}", "/communications/presences/{id}")):
        ids.append(str(uuid.uuid4()))
        if template.endswith("/setPresence") and body:
            body["sessionId"] = sandbox.default_app.client_id
    elif template == "/communications/calls" and body and body.get("meetingInfo"):
        organizer = str(uuid.uuid4())
        meeting = graph.post(f"/users/{organizer}/onlineMeetings", json={"subject": "contract"}).json()
        info = body["meetingInfo"]
        if info.get("@odata.type") == "#microsoft.graph.joinMeetingIdMeetingInfo":
            info["joinMeetingId"] = meeting["joinMeetingIdSettings"]["joinMeetingId"]
            if "passcode" in info:
                info["passcode"] = meeting["joinMeetingIdSettings"]["passcode"]
        else:
            body["chatInfo"]["threadId"] = meeting["chatInfo"]["threadId"]
    path = template
    for value in ids:
        path = path.replace("{id}", value, 1)
    if example.get("query"):
        path = f"{path}?{example['query']}"
    return path, body


@pytest.mark.parametrize("example_path", V1_EXAMPLES, ids=[p.stem for p in V1_EXAMPLES])
def test_documented_example_gets_documented_status(
    example_path: Path, sandbox: SandboxServer, graph: httpx.Client
) -> None:
    example = _load(example_path)
    if example["path"] in NOT_EMULATED:
        pytest.skip(NOT_EMULATED[example["path"]])
    if example["request_url"].startswith("https://file.location/"):
        pytest.skip("the recording download is not a Graph URL; test_calls downloads a real recordingLocation")
    if example["path"] == "/subscriptions":
        pytest.skip("mail subscriptions are not emulated; callRecords/presence ones are in test_subscriptions")
    path, body = _prepare(example, sandbox, graph)
    response = graph.request(example["method"], path, json=body, headers={"client-request-id": example_path.stem})
    assert response.headers["client-request-id"] == example_path.stem
    if example["path"].startswith("/me/") or example["path"] == "/me/presence":
        # Documented with a delegated token; the sandbox only issues app-only tokens, which Graph refuses on /me.
        assert response.status_code == 400, response.text
        assert "delegated" in response.json()["error"]["message"]
        return
    assert response.status_code == example["response_status"], response.text
    documented_headers = {k.lower() for k in example["response_headers"] or {}}
    if "location" in documented_headers:
        assert response.headers["Location"].startswith(sandbox.base_url)
    documented = example["response_body"]
    if isinstance(documented, dict) and "@odata.type" in documented:
        assert response.json()["@odata.type"] == documented["@odata.type"]
    if isinstance(documented, dict) and isinstance(documented.get("status"), str):
        assert response.json()["status"].lower() == documented["status"].lower()
    if isinstance(documented, dict) and "value" in documented and example["path"] != "/communications/presences/{id}":
        assert isinstance(response.json()["value"], list)


def test_me_examples_are_covered() -> None:
    assert any(_load(p)["path"] == "/me/presence" for p in V1_EXAMPLES)
    assert len(V1_EXAMPLES) > 70
