"""Whole calls between the bot service and the sandbox's calling platform, over real HTTPS both ways."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mediabot.calls import Bot, ManagedCall, ToneRecord
from mediabot.sandbox import SandboxServer
from tests.service.conftest import ServiceServer, wait_for


class RecordingBot(Bot):
    """Remembers which hooks ran."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def on_established(self, call: ManagedCall) -> None:
        self.events.append(("established", call.id))

    async def on_tone(self, call: ManagedCall, tone: ToneRecord) -> None:
        self.events.append(("tone", tone.tone))

    async def on_terminated(self, call: ManagedCall) -> None:
        self.events.append(("terminated", call.id))


@pytest.fixture
def bot_service(sandbox: SandboxServer) -> Iterator[ServiceServer]:
    server = ServiceServer(sandbox, bot=RecordingBot()).start()
    try:
        yield server
    finally:
        server.stop()


def _call(service: ServiceServer, call_id: str) -> dict[str, Any]:
    response = service.client.get(f"/v1/calls/{call_id}")
    return response.json() if response.status_code == 200 else {}


def _state(service: ServiceServer, call_id: str) -> str | None:
    return _call(service, call_id).get("state")


def test_an_incoming_call_is_answered_established_listed_with_its_roster_and_ends(
    bot_service: ServiceServer, sandbox: SandboxServer
) -> None:
    incoming = sandbox.incoming_call(callback_uri=bot_service.settings.callback_url)
    call_id = incoming["id"]
    wait_for(lambda: _state(bot_service, call_id) == "established", "the call to be established")
    assert any(r["path"].endswith(f"{call_id}/answer") and r["status"] == 202 for r in sandbox.requests())
    wait_for(lambda: len(_call(bot_service, call_id).get("roster", [])) >= 2, "the roster")
    listed = bot_service.client.get("/v1/calls").json()["value"]
    assert call_id in [c["id"] for c in listed]
    sandbox.end_call(call_id)
    wait_for(lambda: _state(bot_service, call_id) == "terminated", "the call to end")
    bot: RecordingBot = bot_service.bot  # type: ignore[assignment]
    wait_for(lambda: ("terminated", call_id) in bot.events, "on_terminated")
    assert ("established", call_id) in bot.events


def test_outgoing_and_group_calls_from_the_operator_api(bot_service: ServiceServer) -> None:
    one = bot_service.client.post("/v1/calls", json={"user_ids": [str(uuid.uuid4())]})
    assert one.status_code == 201, one.text
    group = bot_service.client.post("/v1/calls", json={"user_ids": [str(uuid.uuid4()), str(uuid.uuid4())]})
    assert group.status_code == 201, group.text
    for call in (one.json(), group.json()):
        wait_for(lambda c=call: _state(bot_service, c["id"]) == "established", "an outgoing call to establish")
    assert bot_service.client.delete(f"/v1/calls/{one.json()['id']}").status_code == 204
    wait_for(lambda: _state(bot_service, one.json()["id"]) == "terminated", "the hang-up")


def test_joining_a_meeting_created_through_the_api(bot_service: ServiceServer) -> None:
    meeting = bot_service.client.post("/v1/meetings", json={"organizer_id": str(uuid.uuid4()), "subject": "Sync"})
    assert meeting.status_code == 201, meeting.text
    joined = bot_service.client.post("/v1/meetings/join", json={"join_web_url": meeting.json()["joinWebUrl"]})
    assert joined.status_code == 201, joined.text
    wait_for(lambda: _state(bot_service, joined.json()["id"]) == "established", "the meeting call")


def test_tones_reach_the_bot(bot_service: ServiceServer, sandbox: SandboxServer) -> None:
    incoming = sandbox.incoming_call(callback_uri=bot_service.settings.callback_url)
    call_id = incoming["id"]
    wait_for(lambda: _state(bot_service, call_id) == "established", "the call")
    assert bot_service.client.post(f"/v1/calls/{call_id}/tones").status_code == 202
    wait_for(lambda: any(r["path"].endswith("/subscribeToTone") for r in sandbox.requests()), "the tone subscription")
    sandbox.send_tones(call_id, ["tone4", "pound"])
    bot: RecordingBot = bot_service.bot  # type: ignore[assignment]
    wait_for(lambda: ("tone", "pound") in bot.events, "the tones")
    assert ("tone", "tone4") in bot.events


def test_a_policy_that_rejects_rejects(sandbox: SandboxServer) -> None:
    server = ServiceServer(sandbox, answer_mode="reject", reject_reason="busy").start()
    try:
        incoming = sandbox.incoming_call(callback_uri=server.settings.callback_url)
        wait_for(lambda: any(r["path"].endswith(f"{incoming['id']}/reject") for r in sandbox.requests()), "the reject")
        wait_for(lambda: _state(server, incoming["id"]) in ("rejected", "terminated"), "the rejected call")
    finally:
        server.stop()


class RecordBot(Bot):
    """Remembers the call records it was given."""

    def __init__(self) -> None:
        self.records: list[str] = []

    async def on_call_record(self, record: Any) -> None:
        self.records.append(record.id)


def test_a_finished_calls_record_reaches_the_bot_through_its_webhook(sandbox: SandboxServer) -> None:
    server = ServiceServer(sandbox, bot=RecordBot(), subscribe_call_records=True).start()
    try:
        wait_for(
            lambda: any(r["path"].endswith("/subscriptions") and r["status"] == 201 for r in sandbox.requests()),
            "the callRecords subscription (after Graph's validation handshake)",
        )
        placed = server.client.post("/v1/calls", json={"user_ids": [str(uuid.uuid4())]}).json()
        wait_for(lambda: _state(server, placed["id"]) == "established", "the call")
        assert server.client.delete(f"/v1/calls/{placed['id']}").status_code == 204
        wait_for(lambda: server.client.get("/v1/callrecords").json()["value"], "the call record")
        record = server.client.get("/v1/callrecords").json()["value"][0]
        assert record["sessions"], "the bot fetched the record with its sessions"
        bot: RecordBot = server.bot  # type: ignore[assignment]
        wait_for(lambda: record["id"] in bot.records, "Bot.on_call_record")
    finally:
        server.stop()


def test_a_transfer_goes_through_transferring_and_ends_the_bots_leg(
    bot_service: ServiceServer, sandbox: SandboxServer
) -> None:
    incoming = sandbox.incoming_call(callback_uri=bot_service.settings.callback_url)
    call_id = incoming["id"]
    wait_for(lambda: _state(bot_service, call_id) == "established", "the call")
    sandbox.clear_notifications()
    response = bot_service.client.post(f"/v1/calls/{call_id}/transfer", json={"user_id": str(uuid.uuid4())})
    assert response.status_code == 202, response.text
    wait_for(lambda: _state(bot_service, call_id) == "terminated", "the transferred call to end")

    def call_states() -> list[str]:
        # Only notifications about the call itself carry a state (roster and operation ones do not).
        return [
            item["state"]
            for delivery in sandbox.notifications()
            if delivery["call_id"] == call_id
            for item in delivery["notifications"]
            if item.get("state")
        ]

    # The platform logs a delivery once the bot has answered it, which can be after the bot already acted on it.
    wait_for(lambda: "terminated" in call_states(), "the terminated notification to be logged")
    states = call_states()
    assert states[:4] == ["transferring", "transferAccepted", "terminating", "terminated"]


def _metric(service: ServiceServer, line_start: str) -> float | None:
    for line in service.client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_call_is_live_in_the_snapshot_and_counted_by_state_in_the_metrics(
    bot_service: ServiceServer, sandbox: SandboxServer
) -> None:
    incoming = sandbox.incoming_call(callback_uri=bot_service.settings.callback_url)
    call_id = incoming["id"]
    wait_for(lambda: _state(bot_service, call_id) == "established", "the call to be established")
    live = bot_service.client.get("/v1/live").json()
    [call] = [c for c in live["calls"] if c["id"] == call_id]
    assert call["state"] == "established" and call["direction"] == "incoming"
    assert call["media"]["call_id"] == call_id and call["media"]["recording"] == "on"
    assert _metric(bot_service, 'mediabot_calls{state="established"}') == 1.0
    assert _metric(bot_service, "mediabot_media_sessions") == 1.0
    sandbox.end_call(call_id)
    wait_for(lambda: _state(bot_service, call_id) == "terminated", "the call to end")
    assert _metric(bot_service, 'mediabot_calls{state="established"}') == 0.0
    assert _metric(bot_service, 'mediabot_calls{state="terminated"}') == 1.0
    wait_for(lambda: _metric(bot_service, "mediabot_media_sessions") == 0.0, "the media session to close")
    assert bot_service.client.get("/v1/live", headers={"Authorization": "Bearer nope"}).status_code == 401
