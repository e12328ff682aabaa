"""Call lifecycle, actions, operations and recordings."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mediabot.sandbox import SandboxServer

from .conftest import APP_MEDIA, SERVICE_MEDIA, call_body

NewCall = Callable[..., dict[str, Any]]


def test_create_answers_establishing_then_get_shows_established(graph: httpx.Client, sandbox: SandboxServer) -> None:
    response = graph.post("/communications/calls", json=call_body())
    assert response.status_code == 201
    call = response.json()
    assert call["state"] == "establishing"
    assert call["direction"] == "outgoing"
    assert call["source"]["identity"]["application"]["id"] == sandbox.default_app.client_id
    assert response.headers["Location"] == f"{sandbox.graph_url}/communications/calls/{call['id']}"
    assert graph.get(f"/communications/calls/{call['id']}").json()["state"] == "established"


def test_delete_ends_the_call_and_keep_alive_then_404s(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call()
    assert graph.post(f"/communications/calls/{call['id']}/keepAlive").status_code == 200
    assert graph.delete(f"/communications/calls/{call['id']}").status_code == 204
    assert graph.get(f"/communications/calls/{call['id']}").status_code == 404
    gone = graph.post(f"/communications/calls/{call['id']}/keepAlive")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "NotFound"
    assert graph.post("/communications/calls/unknown/keepAlive").status_code == 404


def test_answer_only_an_incoming_call(graph: httpx.Client, sandbox: SandboxServer, new_call: NewCall) -> None:
    incoming = sandbox.incoming_call(callback_uri="https://bot.example.com/api/calling")
    assert incoming["state"] == "incoming"
    body = {"callbackUri": "https://bot.example.com/cb", "mediaConfig": APP_MEDIA, "acceptedModalities": ["audio"]}
    assert graph.post(f"/communications/calls/{incoming['id']}/answer", json=body).status_code == 202
    answered = graph.get(f"/communications/calls/{incoming['id']}").json()
    assert answered["state"] == "established"
    assert answered["callbackUri"] == "https://bot.example.com/cb"
    again = graph.post(f"/communications/calls/{incoming['id']}/answer", json=body)
    assert again.status_code == 400
    assert "incoming" in again.json()["error"]["message"]
    established = new_call()
    assert graph.post(f"/communications/calls/{established['id']}/answer", json=body).status_code == 400


def test_reject_ends_an_incoming_call(graph: httpx.Client, sandbox: SandboxServer) -> None:
    incoming = sandbox.incoming_call()
    assert graph.post(f"/communications/calls/{incoming['id']}/reject", json={"reason": "busy"}).status_code == 202
    assert graph.get(f"/communications/calls/{incoming['id']}").status_code == 404


def test_invalid_bodies_are_400_naming_the_problem(graph: httpx.Client, sandbox: SandboxServer) -> None:
    incoming = sandbox.incoming_call()
    bad_reason = graph.post(f"/communications/calls/{incoming['id']}/reject", json={"reason": "sleepy"})
    assert bad_reason.status_code == 400
    assert "reason" in bad_reason.json()["error"]["message"]
    missing = graph.post(f"/communications/calls/{incoming['id']}/answer", json={"acceptedModalities": ["audio"]})
    assert missing.status_code == 400
    assert "callbackUri" in missing.json()["error"]["message"]
    wrong_type = graph.post("/communications/calls", json={**call_body(), "requestedModalities": "audio"})
    assert wrong_type.status_code == 400
    assert wrong_type.json()["error"]["code"] == "BadRequest"
    not_json = graph.post("/communications/calls", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    # A derived type named by @odata.type is validated too (mediaConfig is abstract in the CSDL).
    bad_media = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig", "preFetchMedia": "x"}
    assert graph.post("/communications/calls", json={**call_body(), "mediaConfig": bad_media}).status_code == 400


@pytest.mark.parametrize(
    ("action", "body", "odata_type", "status"),
    [
        ("mute", {"clientContext": "c"}, "muteParticipantOperation", "completed"),
        ("unmute", {"clientContext": "c"}, "unmuteParticipantOperation", "completed"),
        (
            "updateRecordingStatus",
            {"status": "recording", "clientContext": "c"},
            "updateRecordingStatusOperation",
            "completed",
        ),
        ("subscribeToTone", {"clientContext": "c"}, "subscribeToToneOperation", "completed"),
        ("cancelMediaProcessing", {"clientContext": "c"}, "cancelMediaProcessingOperation", "completed"),
        ("sendDtmfTones", {"tones": ["tone1"], "clientContext": "c"}, "sendDtmfTonesOperation", "running"),
        ("microsoft.graph.sendDtmfTones", {"tones": ["tone2"]}, "sendDtmfTonesOperation", "running"),
        (
            "playPrompt",
            {"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "https://x/a.wav"}}]},
            "playPromptOperation",
            "running",
        ),
    ],
)
def test_actions_answer_an_operation_that_completes(
    graph: httpx.Client, new_call: NewCall, action: str, body: dict[str, Any], odata_type: str, status: str
) -> None:
    call = new_call()
    response = graph.post(f"/communications/calls/{call['id']}/{action}", json=body)
    assert response.status_code == 200, response.text
    operation = response.json()
    assert operation["@odata.type"] == f"#microsoft.graph.{odata_type}"
    assert operation["status"] == status
    assert operation["clientContext"] == body.get("clientContext")
    location = response.headers["Location"]
    assert location.endswith(f"/communications/calls/{call['id']}/operations/{operation['id']}")
    later = graph.get(location.removeprefix(str(graph.base_url).rstrip("/")))
    assert later.status_code == 200
    assert later.json()["status"] == "completed"


def test_mute_is_visible_on_the_bot_participant(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call()
    graph.post(f"/communications/calls/{call['id']}/mute", json={})
    me = graph.get(f"/communications/calls/{call['id']}/participants/{call['myParticipantId']}").json()
    assert me["isMuted"] is True
    graph.post(f"/communications/calls/{call['id']}/unmute", json={})
    me = graph.get(f"/communications/calls/{call['id']}/participants/{call['myParticipantId']}").json()
    assert me["isMuted"] is False


def test_record_response_gives_a_downloadable_wav(
    graph: httpx.Client, new_call: NewCall, sandbox: SandboxServer
) -> None:
    call = new_call()
    prompt = {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "https://x/beep.wav"}}
    response = graph.post(
        f"/communications/calls/{call['id']}/recordResponse",
        json={"prompts": [prompt], "maxRecordDurationInSeconds": 10, "clientContext": "rec"},
    )
    assert response.status_code == 200
    assert response.json()["recordingLocation"] is None
    done = graph.get(f"/communications/calls/{call['id']}/operations/{response.json()['id']}").json()
    assert done["status"] == "completed"
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False) as plain:
        refused = plain.get(done["recordingLocation"])
        assert refused.status_code == 401
        audio = plain.get(
            done["recordingLocation"], headers={"Authorization": f"Bearer {done['recordingAccessToken']}"}
        )
    assert audio.status_code == 200
    assert audio.headers["content-type"] == "application/octet-stream"
    with wave.open(io.BytesIO(audio.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (1, 16000)
        assert wav.getnframes() > 0


def test_prompts_need_service_hosted_media(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call(media=APP_MEDIA)
    prompt = {"@odata.type": "#microsoft.graph.mediaPrompt", "mediaInfo": {"uri": "https://x/a.wav"}}
    response = graph.post(f"/communications/calls/{call['id']}/playPrompt", json={"prompts": [prompt]})
    assert response.status_code == 400
    assert "service-hosted" in response.json()["error"]["message"]


def test_transfer_ends_the_bots_call(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call(media=SERVICE_MEDIA)
    target = {"endpointType": "default", "identity": {"user": {"id": "u1"}}}
    assert (
        graph.post(f"/communications/calls/{call['id']}/transfer", json={"transferTarget": target}).status_code == 202
    )
    assert graph.get(f"/communications/calls/{call['id']}").status_code == 404


def test_another_app_cannot_see_the_call(sandbox: SandboxServer, new_call: NewCall) -> None:
    from .conftest import graph_client

    call = new_call()
    other = sandbox.register_app(roles=["Calls.Initiate.All"])
    with graph_client(sandbox, other) as client:
        assert client.get(f"/communications/calls/{call['id']}").status_code == 404


def test_join_meeting_needs_an_existing_meeting(graph: httpx.Client) -> None:
    meeting = graph.post("/users/u-join/onlineMeetings", json={"subject": "s"}).json()
    body = {
        **call_body(targets=0),
        "chatInfo": {"threadId": meeting["chatInfo"]["threadId"], "messageId": "0"},
        "meetingInfo": {
            "@odata.type": "#microsoft.graph.organizerMeetingInfo",
            "organizer": {"user": {"id": "u-join"}},
        },
    }
    joined = graph.post("/communications/calls", json=body)
    assert joined.status_code == 201, joined.text
    roster = graph.get(f"/communications/calls/{joined.json()['id']}/participants").json()["value"]
    assert any(p["info"]["identity"].get("user", {}).get("id") == "u-join" for p in roster)
    body["chatInfo"]["threadId"] = "19:meeting_nope@thread.v2"
    assert graph.post("/communications/calls", json=body).status_code == 404
    by_id = {
        **call_body(targets=0),
        "meetingInfo": {
            "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": meeting["joinMeetingIdSettings"]["joinMeetingId"],
            "passcode": "wrong",
        },
    }
    assert graph.post("/communications/calls", json=by_id).status_code == 403
    by_id["meetingInfo"]["passcode"] = meeting["joinMeetingIdSettings"]["passcode"]
    assert graph.post("/communications/calls", json=by_id).status_code == 201
