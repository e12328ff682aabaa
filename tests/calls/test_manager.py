"""CallManager driven by real notification bodies and a real GraphClient against the sandbox; and a whole call (the
bot service, the sandbox, a media relay process) whose relay dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import uuid
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from mediabot._errors import GraphError
from mediabot.calls import (
    AnswerDecision,
    AnswerPolicy,
    Bot,
    CallEndedError,
    CallManager,
    CallPhase,
    ManagedCall,
    ManualClock,
    OperationTimeoutError,
    UnknownCallError,
)
from mediabot.calls.media import RosterEntry
from mediabot.graph import user_target
from mediabot.graph.models import PlayPromptOperation
from mediabot.graph.notifications import parse_comms_notifications
from mediabot.media.blob import app_hosted_media_config
from mediabot.media.engine import MediaEngine
from mediabot.media.session import MediaLossListener, SpeechEvent, ToneEvent
from mediabot.media.vad import SpeechSegment
from mediabot.sandbox import SandboxServer
from mediabot.service import create_app
from mediabot.service.app import media_options
from tests.conftest import sandbox_settings

from .conftest import (
    CALLBACK,
    FakeMedia,
    ManagerFactory,
    RecordingBot,
    RecordingTransport,
    call_body,
    contract_body,
    notify,
    participant,
    roster_body,
    sandbox_paths,
)


async def ring(sandbox: SandboxServer, manager: CallManager, **caller: Any) -> str:
    """Ring the bot in the sandbox and deliver the incoming notification; the call id."""
    resource = sandbox.incoming_call(callback_uri=CALLBACK, **caller)
    await notify(manager, call_body(resource["id"], "created", **resource))
    return str(resource["id"])


async def established_call(sandbox: SandboxServer, manager: CallManager, contract: Path) -> ManagedCall:
    """An incoming call answered (for real, in the sandbox) and established by notifications."""
    call_id = await ring(sandbox, manager)
    await notify(manager, contract_body(contract, "call-answer-ex1-establishing", call_id))
    await notify(manager, contract_body(contract, "call-answer-ex1-established", call_id))
    call = manager.get(call_id)
    assert call is not None and call.state is CallPhase.ESTABLISHED
    return call


# -- lifecycle -------------------------------------------------------------------------------------------------------


async def test_incoming_answered_established_terminated(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    bot: RecordingBot,
    transport: RecordingTransport,
    graph_contract: Path,
) -> None:
    manager = await make_manager()
    call_id = await ring(sandbox, manager, caller_id="caller-1", caller_display_name="Ada")
    call = manager.get(call_id)
    assert call is not None
    assert call.state is CallPhase.ANSWERED
    assert call.direction == "incoming"
    assert call.caller_ids() == ["caller-1"] and call.caller_name == "Ada"
    assert ("POST", "/answer", 202) in sandbox_paths(sandbox, call_id)
    [answer] = transport.posts(call_id, "answer")
    assert answer["callbackUri"] == CALLBACK
    assert answer["mediaConfig"] == {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}

    await notify(manager, contract_body(graph_contract, "call-answer-ex1-establishing", call_id))
    assert call.state is CallPhase.ESTABLISHING
    assert not call.recording_allowed
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    assert call.state is CallPhase.ESTABLISHED
    assert call.recording_allowed  # compliance mode off: open from establishment
    assert await call.wait_recording_allowed()

    await notify(manager, contract_body(graph_contract, "call-delete-terminated", call_id))
    assert call.state is CallPhase.TERMINATED
    assert call.result_info is not None
    assert (call.result_info.code, call.result_info.subcode) == (200, 5001)
    assert not call.recording_allowed
    assert bot.names() == ["incoming", "established", "terminated"]
    snapshot = json.loads(json.dumps(call.snapshot()))
    assert snapshot["state"] == "terminated"
    assert snapshot["result_info"]["subcode"] == 5001
    assert snapshot["caller"] == {"ids": ["caller-1"], "display_name": "Ada"}


async def test_media_provider_supplies_config_and_is_released(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    transport: RecordingTransport,
    graph_contract: Path,
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media)
    call_id = await ring(sandbox, manager)
    assert media.asked == [call_id]
    [answer] = transport.posts(call_id, "answer")
    assert answer["mediaConfig"]["@odata.type"] == "#microsoft.graph.appHostedMediaConfig"
    await notify(manager, contract_body(graph_contract, "call-delete-terminated", call_id))
    assert media.released == [call_id]


async def test_reject_by_allow_list(
    sandbox: SandboxServer, make_manager: ManagerFactory, transport: RecordingTransport, bot: RecordingBot
) -> None:
    manager = await make_manager(answer_policy=AnswerPolicy.allow_list(["VIP-ID"], reject_reason="forbidden"))
    stranger = await ring(sandbox, manager, caller_id="stranger")
    vip = await ring(sandbox, manager, caller_id="vip-id")  # ids compare case-insensitively

    assert manager.get(stranger).state is CallPhase.REJECTED  # type: ignore[union-attr]
    assert transport.posts(stranger, "reject") == [{"reason": "forbidden"}]
    assert transport.posts(stranger, "answer") == []
    assert ("POST", "/reject", 202) in sandbox_paths(sandbox, stranger)
    assert manager.get(vip).state is CallPhase.ANSWERED  # type: ignore[union-attr]
    assert len(transport.posts(vip, "answer")) == 1


async def test_bot_overrides_policy(
    sandbox: SandboxServer, make_manager: ManagerFactory, transport: RecordingTransport, bot: RecordingBot
) -> None:
    manager = await make_manager()  # the policy answers everyone
    bot.decision = AnswerDecision.reject("busy")
    call_id = await ring(sandbox, manager)
    assert manager.get(call_id).state is CallPhase.REJECTED  # type: ignore[union-attr]
    assert transport.posts(call_id, "reject") == [{"reason": "busy"}]


async def test_bot_redirects(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    transport: RecordingTransport,
    bot: RecordingBot,
    graph_contract: Path,
) -> None:
    manager = await make_manager()
    bot.decision = AnswerDecision.redirect([user_target("colleague")], ring_timeout_s=20)
    call_id = await ring(sandbox, manager)
    call = manager.get(call_id)
    assert call is not None and call.state is CallPhase.REDIRECTING
    [body] = transport.posts(call_id, "redirect")
    assert body["targets"][0]["identity"]["user"]["id"] == "colleague"
    assert body["timeout"] == 20
    assert ("POST", "/redirect", 202) in sandbox_paths(sandbox, call_id)
    await notify(manager, contract_body(graph_contract, "call-redirect-ex1-terminated", call_id))
    assert call.state is CallPhase.TERMINATED


async def test_raising_incoming_hook_falls_back_to_policy(
    sandbox: SandboxServer, make_manager: ManagerFactory, transport: RecordingTransport, bot: RecordingBot
) -> None:
    manager = await make_manager(answer_policy=AnswerPolicy.reject_all("busy"))
    bot.fail_in.add("incoming")
    call_id = await ring(sandbox, manager)
    assert transport.posts(call_id, "reject") == [{"reason": "busy"}]


async def test_no_answer_after_the_deadline(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    transport: RecordingTransport,
    bot: RecordingBot,
    clock: ManualClock,
) -> None:
    manager = await make_manager()
    never = asyncio.Event()

    async def ponder(call: ManagedCall) -> AnswerDecision | None:
        await never.wait()
        return None

    bot.incoming = ponder
    resource = sandbox.incoming_call(callback_uri=CALLBACK)
    await manager.handle_notifications(parse_comms_notifications(call_body(resource["id"], "created", **resource)))
    await clock.advance(manager.config.answer_deadline)
    await manager.drain()
    call = manager.get(resource["id"])
    assert call is not None and call.state is CallPhase.INCOMING
    assert call.note is not None and "deadline" in call.note
    assert transport.posts(call.id, "answer") == []


# -- ordering, duplicates, adoption ----------------------------------------------------------------------------------


async def test_swapped_and_duplicated_states(
    sandbox: SandboxServer, make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path, clock: ManualClock
) -> None:
    manager = await make_manager()
    call_id = await ring(sandbox, manager)
    call = manager.get(call_id)
    assert call is not None
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    sleepers = clock.sleepers
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-establishing", call_id))  # late
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))  # duplicate
    await notify(manager, call_body(call_id, "created", **sandbox.incoming_call(callback_uri=CALLBACK)))  # stale
    assert call.state is CallPhase.ESTABLISHED
    assert bot.of("established") == [call_id]
    assert clock.sleepers == sleepers  # no second keepAlive loop

    terminated = contract_body(graph_contract, "call-delete-terminated", call_id)
    await notify(manager, terminated)
    await notify(manager, terminated)
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    assert call.state is CallPhase.TERMINATED
    assert bot.of("terminated") == [call_id]


async def test_unknown_calls_are_adopted_when_sensible(
    make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path
) -> None:
    manager = await make_manager()
    adopted = str(uuid.uuid4())
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", adopted))
    call = manager.get(adopted)
    assert call is not None and call.state is CallPhase.ESTABLISHED
    assert bot.of("established") == [adopted]

    stranger = str(uuid.uuid4())
    await notify(manager, contract_body(graph_contract, "call-delete-terminated", stranger))
    await notify(manager, roster_body(stranger, [participant("p1", "Bob")]))
    await notify(manager, contract_body(graph_contract, "call-playprompt-operation-completed", stranger))
    assert manager.get(stranger) is None
    assert [c.id for c in manager.calls()] == [adopted]


async def test_failed_transfer_returns_to_established(
    make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path
) -> None:
    manager = await make_manager()
    call_id = str(uuid.uuid4())
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    call = manager.get(call_id)
    assert call is not None
    await notify(manager, contract_body(graph_contract, "call-transfer-ex1-transferring", call_id))
    assert call.state is CallPhase.TRANSFERRING
    await notify(manager, contract_body(graph_contract, "call-transfer-ex1-transfer-accepted", call_id))
    assert call.state is CallPhase.TRANSFERRING
    await notify(manager, contract_body(graph_contract, "call-transfer-ex1-transfer-failed", call_id))
    assert call.state is CallPhase.ESTABLISHED
    assert call.note is not None and "transfer failed" in call.note
    assert bot.of("established") == [call_id]  # not established a second time
    await notify(manager, contract_body(graph_contract, "call-transfer-ex1-transfer-completed", call_id))
    assert call.state is CallPhase.TERMINATED
    assert call.result_info is not None and call.result_info.subcode == 7015


# -- roster ----------------------------------------------------------------------------------------------------------


async def test_full_roster_replaces(make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path) -> None:
    manager = await make_manager()
    call_id = str(uuid.uuid4())
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    call = manager.get(call_id)
    assert call is not None

    await notify(manager, roster_body(call_id, [participant("a", "Ann"), participant("b", "Ben")]))
    assert set(call.roster) == {"a", "b"}
    assert call.display_names() == {"a": "Ann", "b": "Ben"}
    await notify(manager, roster_body(call_id, [participant("b", "Ben"), participant("c", "Cy")]))
    assert set(call.roster) == {"b", "c"}
    assert bot.of("participants") == [(["a", "b"], []), (["c"], ["a"])]

    # The documented mute update is a full roster with Bob only.
    await notify(manager, contract_body(graph_contract, "call-mute-roster-updated", call_id))
    assert list(call.roster) == ["2765eb15-01f8-47c6-b12b-c32111a4a86f"]
    assert call.roster["2765eb15-01f8-47c6-b12b-c32111a4a86f"].is_muted is True


async def test_delta_roster_merges_removes_and_ignores_stale(make_manager: ManagerFactory, bot: RecordingBot) -> None:
    manager = await make_manager(delta_roster=True)
    call_id = str(uuid.uuid4())
    await notify(manager, call_body(call_id, state="established"))
    call = manager.get(call_id)
    assert call is not None
    call.delta_roster = True  # as if answered with isDeltaRosterEnabled

    await notify(manager, roster_body(call_id, [participant("a", "Ann", rosterSequenceNumber=1)]))
    await notify(manager, roster_body(call_id, [participant("b", "Ben", rosterSequenceNumber=2)]))
    assert set(call.roster) == {"a", "b"}  # merged, not replaced
    assert call.roster_sequence == 2

    removed = participant("a", "Ann", rosterSequenceNumber=3, removedState={"reason": "left"})
    await notify(manager, roster_body(call_id, [removed]))
    assert set(call.roster) == {"b"}

    # A stale update (older sequence number) must not resurrect Ann.
    await notify(manager, roster_body(call_id, [participant("a", "Ann", rosterSequenceNumber=1)]))
    assert set(call.roster) == {"b"}
    assert call.roster_sequence == 3

    # changeType deleted removes too.
    await notify(manager, roster_body(call_id, [participant("b", "Ben", rosterSequenceNumber=4)], "deleted"))
    assert call.roster == {}
    assert bot.of("participants") == [(["a"], []), (["b"], []), ([], ["a"]), ([], ["b"])]


async def test_removed_state_marks_a_delta_even_without_delta_mode(make_manager: ManagerFactory) -> None:
    manager = await make_manager()
    call_id = str(uuid.uuid4())
    await notify(manager, call_body(call_id, state="established"))
    await notify(manager, roster_body(call_id, [participant("a", "Ann"), participant("b", "Ben")]))
    await notify(manager, roster_body(call_id, [participant("a", "Ann", removedState={"reason": "left"})]))
    call = manager.get(call_id)
    assert call is not None and set(call.roster) == {"b"}


async def test_delta_participants_wrapper(make_manager: ManagerFactory) -> None:
    manager = await make_manager()
    call_id = str(uuid.uuid4())
    await notify(manager, call_body(call_id, state="established"))
    call = manager.get(call_id)
    assert call is not None

    def wrapped(sequence: int, *people: dict[str, Any]) -> dict[str, Any]:
        body = roster_body(call_id, [])
        body["value"][0]["resourceData"] = {
            "@odata.type": "#microsoft.graph.deltaParticipants",
            "sequenceNumber": sequence,
            "participants": list(people),
        }
        return body

    await notify(manager, wrapped(5, participant("a", "Ann")))
    await notify(manager, wrapped(6, participant("b", "Ben")))
    await notify(manager, wrapped(4, participant("c", "Cy")))  # stale
    assert set(call.roster) == {"a", "b"}
    assert call.roster_sequence == 6


# -- operations and tones --------------------------------------------------------------------------------------------


async def test_operation_completion_matched_by_client_context(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    bot: RecordingBot,
    transport: RecordingTransport,
    graph_contract: Path,
) -> None:
    manager = await make_manager()
    call = await established_call(sandbox, manager, graph_contract)
    done = await manager.play_prompt(call.id, "https://example.com/hello.wav")
    assert not done.done()  # the sandbox answers playPrompt "running"
    [body] = transport.posts(call.id, "playPrompt")
    context = body["clientContext"]
    assert call.operations[context].status == "running"

    # The documented completion carries the doc's operation id: only the clientContext can match it.
    completion = contract_body(
        graph_contract,
        "call-playprompt-operation-completed",
        call.id,
        **{"d45324c1-fcb5-430a-902c-f20af696537c": context},
    )
    await notify(manager, completion)
    assert done.done()
    operation = done.result()
    assert operation.status == "completed"
    assert operation.result_info is not None and operation.result_info.code == 200
    await notify(manager, completion)  # a duplicate
    assert len(bot.of("operation")) == 1
    assert call.operations[context].status == "completed"


async def test_operation_matched_by_id_and_timeouts(
    sandbox: SandboxServer, make_manager: ManagerFactory, clock: ManualClock, graph_contract: Path
) -> None:
    manager = await make_manager(operation_timeout=30)
    call = await established_call(sandbox, manager, graph_contract)
    by_id = await manager.play_prompt(call.id, "https://example.com/a.wav")
    operation_id = next(op.id for op in call.operations.values() if op.kind == "playPrompt")
    assert operation_id
    completion = {
        "value": [
            {
                "changeType": "deleted",
                "resourceUrl": f"/communications/calls/{call.id}/operations/{operation_id}",
                "resourceData": {"@odata.type": "#microsoft.graph.playPromptOperation", "status": "failed"},
            }
        ]
    }
    await notify(manager, completion)
    assert by_id.result().status == "failed"

    slow = await manager.play_prompt(call.id, "https://example.com/b.wav")
    await clock.advance(29)
    assert not slow.done()
    await clock.advance(1)
    with pytest.raises(OperationTimeoutError):
        slow.result()


async def test_immediate_operation_and_tones(
    sandbox: SandboxServer, make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path
) -> None:
    manager = await make_manager()
    call = await established_call(sandbox, manager, graph_contract)
    subscribed = await manager.subscribe_to_tones(call.id)
    assert subscribed.done() and subscribed.result().status == "completed"  # Graph answered it completed

    tone = contract_body(graph_contract, "call-subscribetotone-tone-received", call.id)
    await notify(manager, tone)
    await notify(manager, tone)  # same sequenceId: recorded once
    assert [t.tone for t in call.tones] == ["tone1"]
    [record] = bot.of("tone")
    assert record.sequence_id == 1 and record.call_time is not None
    assert call.state is CallPhase.ESTABLISHED
    assert call.snapshot()["tones"][0]["tone"] == "tone1"


async def test_pending_operations_fail_when_the_call_ends(
    sandbox: SandboxServer, make_manager: ManagerFactory, graph_contract: Path
) -> None:
    manager = await make_manager()
    call = await established_call(sandbox, manager, graph_contract)
    pending = await manager.play_prompt(call.id, "https://example.com/a.wav")
    await notify(manager, contract_body(graph_contract, "call-delete-terminated", call.id))
    with pytest.raises(CallEndedError):
        pending.result()
    with pytest.raises(CallEndedError):
        await manager.play_prompt(call.id, "https://example.com/a.wav")
    with pytest.raises(UnknownCallError):
        await manager.play_prompt("nope", "https://example.com/a.wav")


async def test_hook_may_wait_for_an_operation(
    sandbox: SandboxServer, make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path
) -> None:
    manager = await make_manager()
    results: list[str | None] = []
    sent = asyncio.Event()

    async def greet(call: ManagedCall) -> None:
        done = await manager.play_prompt(call.id, "https://example.com/welcome.wav")
        sent.set()
        results.append((await done).status)

    bot.established = greet
    call_id = await ring(sandbox, manager)
    await manager.handle_notifications(
        parse_comms_notifications(contract_body(graph_contract, "call-answer-ex1-established", call_id))
    )
    await sent.wait()  # the hook is now blocked on the operation; notifications must still get through
    call = manager.get(call_id)
    assert call is not None
    [context] = [ctx for ctx, op in call.operations.items() if op.kind == "playPrompt"]
    completion = contract_body(
        graph_contract,
        "call-playprompt-operation-completed",
        call_id,
        **{"d45324c1-fcb5-430a-902c-f20af696537c": context},
    )
    await notify(manager, completion)
    assert results == ["completed"]


# -- keepAlive and reconciliation ------------------------------------------------------------------------------------


async def test_keepalive_every_interval_and_404_ends_the_call(
    sandbox: SandboxServer, make_manager: ManagerFactory, clock: ManualClock, bot: RecordingBot, graph_contract: Path
) -> None:
    manager = await make_manager(keepalive_interval=1800)
    call = await established_call(sandbox, manager, graph_contract)

    def keepalives() -> list[int]:
        return [status for method, path, status in sandbox_paths(sandbox, call.id) if path == "/keepAlive"]

    await clock.advance(1799)
    await manager.drain()
    assert keepalives() == []
    await clock.advance(1)
    await manager.drain()
    assert keepalives() == [200]
    await clock.advance(1800)
    await manager.drain()
    assert keepalives() == [200, 200]

    sandbox.end_call(call.id)  # gone on Graph's side; we hear nothing
    await clock.advance(1800)
    await manager.drain()
    assert keepalives() == [200, 200, 404]
    assert call.state is CallPhase.TERMINATED
    assert call.note is not None and "keepAlive" in call.note
    assert bot.of("terminated") == [call.id]
    await clock.advance(1800)
    await manager.drain()
    assert len(keepalives()) == 3  # the loop stopped


async def test_reconciliation_after_silence(
    sandbox: SandboxServer, make_manager: ManagerFactory, clock: ManualClock, graph_contract: Path
) -> None:
    manager = await make_manager(reconcile_after=60)
    call = await established_call(sandbox, manager, graph_contract)

    def gets() -> list[int]:
        return [status for method, path, status in sandbox_paths(sandbox, call.id) if method == "GET" and path == ""]

    await clock.advance(40)
    await notify(manager, roster_body(call.id, [participant("a", "Ann")]))  # heard: the silence restarts
    await clock.advance(40)
    await manager.drain()
    assert gets() == []
    await clock.advance(20)
    await manager.drain()
    assert gets() == [200]
    assert call.state is CallPhase.ESTABLISHED

    sandbox.end_call(call.id)
    await clock.advance(60)
    await manager.drain()
    assert gets() == [200, 404]
    assert call.state is CallPhase.TERMINATED
    assert call.note is not None and "reconciled" in call.note


# -- the media plane -------------------------------------------------------------------------------------------------


async def test_app_hosted_media_hears_roster_gate_and_state(
    sandbox: SandboxServer, make_manager: ManagerFactory, graph_contract: Path
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media)
    call = await established_call(sandbox, manager, graph_contract)
    assert media.asked == [call.id] and media.gated == [False]
    assert media.gates == [(call.id, True)]  # no compliance mode: the gate opens at establishment
    assert ("state", {"state": "established"}) in [(kind, data) for cid, kind, data in media.events if cid == call.id]
    await notify(manager, roster_body(call.id, [participant("a", "Ann"), participant("b", "Ben")]))
    assert media.rosters[-1] == (
        call.id,
        [RosterEntry("a", "Ann", ("1",)), RosterEntry("b", "Ben", ("1",))],
    )
    await notify(manager, contract_body(graph_contract, "call-delete-terminated", call.id))
    assert media.released == [call.id]
    assert media.gates == [(call.id, True)]  # decided once; the end does not re-decide it


async def test_a_call_whose_media_vanished_is_hung_up_and_then_released(
    sandbox: SandboxServer, make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media)
    assert media.listener is manager and isinstance(manager, MediaLossListener)  # it hears when media is gone
    call = await established_call(sandbox, manager, graph_contract)
    manager.on_media_lost(call.id, "media timeout")
    await manager.drain()
    assert ("DELETE", "", 204) in sandbox_paths(sandbox, call.id)
    assert call.state is CallPhase.TERMINATING
    assert call.note is not None and call.note.startswith("media lost (media timeout)")
    manager.on_media_lost(call.id, "media timeout")  # already ending: nothing more is sent
    await manager.drain()
    assert [p for p in sandbox_paths(sandbox, call.id) if p[0] == "DELETE"] == [("DELETE", "", 204)]
    assert media.released == []  # the platform's word ends the call, as for any hang-up
    await notify(manager, contract_body(graph_contract, "call-delete-terminated", call.id))
    assert call.state is CallPhase.TERMINATED and media.released == [call.id]
    assert call.note.startswith("media lost")
    ended = [data for cid, kind, data in media.events if cid == call.id and data.get("state") == "terminated"]
    assert ended and ended[0]["note"] == call.note  # the call's events say why it ended
    assert bot.of("terminated") == [call.id]


@pytest.mark.parametrize(("status", "note"), [(500, "the hang-up failed"), (404, "already gone (404)")])
async def test_a_call_whose_media_vanished_ends_here_when_graph_cannot_hang_it_up(
    sandbox: SandboxServer, make_manager: ManagerFactory, graph_contract: Path, status: int, note: str
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media)
    call = await established_call(sandbox, manager, graph_contract)
    sandbox.inject_fault("DELETE", f"/v1.0/communications/calls/{call.id}", status, match="exact")
    manager.on_media_lost(call.id, "connection failed")
    await manager.drain()
    assert call.state is CallPhase.TERMINATED
    assert call.note is not None and note in call.note
    assert media.released == [call.id]  # its files are finished all the same


async def test_media_lost_for_a_call_that_already_ended_only_releases_it(
    sandbox: SandboxServer, make_manager: ManagerFactory, graph_contract: Path
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media)
    call = await established_call(sandbox, manager, graph_contract)
    await notify(manager, contract_body(graph_contract, "call-delete-terminated", call.id))
    manager.on_media_lost(call.id, "media timeout")
    manager.on_media_lost("a-call-never-seen", "media timeout")
    await manager.drain()
    assert media.released == [call.id, call.id, "a-call-never-seen"]
    assert not [p for p in sandbox_paths(sandbox, call.id) if p[0] == "DELETE"]


async def test_compliance_mode_opens_media_gated_and_refusal_reaches_media(
    sandbox: SandboxServer, make_manager: ManagerFactory, graph_contract: Path
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media, compliance_recording=True)
    call_id = await ring(sandbox, manager)
    sandbox.inject_fault("POST", f"/v1.0/communications/calls/{call_id}/updateRecordingStatus", 403)
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    assert media.gated == [True]
    assert media.gates == [(call_id, False)]


async def test_placed_call_binds_its_media_and_a_failed_create_discards_it(
    sandbox: SandboxServer, make_manager: ManagerFactory
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media)
    call = await manager.place_call("user-42")
    assert media.asked == [None] and media.bound == [call.id]
    sandbox.inject_fault("POST", "/v1.0/communications/calls", 403, match="exact")
    with pytest.raises(GraphError):
        await manager.place_call("user-43")
    assert media.discarded == 1 and media.bound == [call.id]


@pytest.mark.parametrize("fails", [False, True])
async def test_app_hosted_prompt_is_played_by_media_and_completes_as_an_operation(
    fails: bool,
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    bot: RecordingBot,
    transport: RecordingTransport,
    graph_contract: Path,
) -> None:
    media = FakeMedia(hosts=True)
    if fails:
        media.prompt_error = RuntimeError("the WAV is broken")
    manager = await make_manager(media=media)
    call = await established_call(sandbox, manager, graph_contract)
    future = await manager.play_prompt(call.id, "welcome.wav")
    operation = await future
    await manager.drain()
    assert media.prompts == [(call.id, "welcome.wav")]
    assert transport.posts(call.id, "playPrompt") == []  # Graph is not asked: it cannot play into our media
    assert isinstance(operation, PlayPromptOperation)
    assert operation.status == ("failed" if fails else "completed")
    assert bot.of("operation") == [operation]
    [record] = [r for r in call.operations.values() if r.kind == "playPrompt"]
    assert record.done and record.status == operation.status


async def test_tones_and_speech_heard_by_media_reach_the_bot(
    sandbox: SandboxServer, make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path
) -> None:
    media = FakeMedia()
    manager = await make_manager(media=media)
    call = await established_call(sandbox, manager, graph_contract)
    assert media.listener is manager
    manager.on_tone(ToneEvent(call.id, "7", "a", "5", 1.25, 1.35))
    segment = SpeechSegment(start=16000, end=32000, audio=np.zeros(16000, np.int16), reason="silence")
    manager.on_speech(SpeechEvent(call.id, "7", "a", "Ann", segment))
    manager.on_media_error(call.id, "disk full")
    manager.on_tone(ToneEvent("unknown-call", "7", None, "1", 0.0, 0.1))  # ignored
    await manager.drain()
    [tone] = bot.of("tone")
    assert (tone.tone, tone.source, tone.participant_id, tone.call_time) == ("5", "inband", "a", 1.25)
    [speech] = bot.of("speech")
    assert speech.segment.start_s == 1.0 and speech.participant_id == "a"
    assert call.speech_segments == 1 and call.media_failed and call.note == "disk full"
    assert call.snapshot()["tones"][0]["source"] == "inband"


# -- compliance recording --------------------------------------------------------------------------------------------


async def test_compliance_gate_opens_and_hang_up_announces_the_end(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    bot: RecordingBot,
    transport: RecordingTransport,
    graph_contract: Path,
) -> None:
    manager = await make_manager(compliance_recording=True)
    call_id = await ring(sandbox, manager)
    call = manager.get(call_id)
    assert call is not None
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    assert [b["status"] for b in transport.posts(call_id, "updateRecordingStatus")] == ["recording"]
    assert call.recording_allowed
    assert await call.wait_recording_allowed()
    assert bot.of("recording") == [(True, None)]

    await manager.hang_up(call_id)
    assert [b["status"] for b in transport.posts(call_id, "updateRecordingStatus")] == ["recording", "notRecording"]
    assert not call.recording_allowed
    assert call.state is CallPhase.TERMINATING
    methods = [(m, p) for m, p, _ in sandbox_paths(sandbox, call_id)]
    assert methods.index(("POST", "/updateRecordingStatus")) < methods.index(("DELETE", ""))


async def test_compliance_hang_up_after_media_failure_says_failed(
    sandbox: SandboxServer, make_manager: ManagerFactory, transport: RecordingTransport, graph_contract: Path
) -> None:
    manager = await make_manager(compliance_recording=True)
    call = await established_call(sandbox, manager, graph_contract)
    manager.report_recording_failed(call.id)
    await manager.hang_up(call.id)
    assert [b["status"] for b in transport.posts(call.id, "updateRecordingStatus")] == ["recording", "failed"]


@pytest.mark.parametrize("status", [403, 500])
async def test_compliance_gate_stays_closed_when_teams_refuses(
    status: int,
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    bot: RecordingBot,
    graph_contract: Path,
) -> None:
    manager = await make_manager(compliance_recording=True)
    call_id = await ring(sandbox, manager)
    sandbox.inject_fault("POST", f"/v1.0/communications/calls/{call_id}/updateRecordingStatus", status)
    await notify(manager, contract_body(graph_contract, "call-answer-ex1-established", call_id))
    call = manager.get(call_id)
    assert call is not None
    assert ("POST", "/updateRecordingStatus", status) in sandbox_paths(sandbox, call_id)
    assert call.state is CallPhase.ESTABLISHED
    assert not call.recording_allowed
    assert call.recording_decided and not await call.wait_recording_allowed()
    [(allowed, reason)] = bot.of("recording")
    assert allowed is False and str(status) in reason


# -- robustness ------------------------------------------------------------------------------------------------------


async def test_raising_hooks_do_not_break_processing(
    sandbox: SandboxServer, make_manager: ManagerFactory, bot: RecordingBot, graph_contract: Path
) -> None:
    manager = await make_manager()
    bot.fail_in.update({"established", "tone", "participants"})
    call = await established_call(sandbox, manager, graph_contract)
    await notify(manager, roster_body(call.id, [participant("a", "Ann")]))
    await notify(manager, contract_body(graph_contract, "call-subscribetotone-tone-received", call.id))
    await notify(manager, contract_body(graph_contract, "call-delete-terminated", call.id))
    assert bot.names() == ["incoming", "established", "participants", "tone", "terminated"]
    assert call.state is CallPhase.TERMINATED and set(call.roster) == {"a"}


async def test_placed_call_and_hang_up(
    sandbox: SandboxServer,
    make_manager: ManagerFactory,
    transport: RecordingTransport,
    bot: RecordingBot,
    graph_contract: Path,
) -> None:
    manager = await make_manager()
    call = await manager.place_call("user-42", display_name="Receptionist")
    assert call.direction == "outgoing" and call.state is CallPhase.ESTABLISHING
    [created] = [json.loads(r.content) for r in transport.sent if r.url.path.endswith("/communications/calls")]
    assert created["callbackUri"] == CALLBACK
    assert created["targets"][0]["identity"]["user"]["id"] == "user-42"
    await notify(manager, contract_body(graph_contract, "create-call-ex1-established", call.id))
    assert call.state is CallPhase.ESTABLISHED

    group = await manager.place_group_call([user_target("u1"), user_target("u2")], subject="standup")
    assert group.state is CallPhase.ESTABLISHING and group is manager.get(group.id)

    await manager.hang_up(call.id)
    assert ("DELETE", "", 204) in sandbox_paths(sandbox, call.id)
    await manager.hang_up(call.id)  # gone already: a 404 ends it locally
    await manager.drain()
    assert call.state is CallPhase.TERMINATED
    assert bot.of("terminated") == [call.id]


async def test_lifecycle_guards(make_manager: ManagerFactory, graph: Any, bot: RecordingBot) -> None:
    from mediabot.calls import CallConfig

    idle = CallManager(graph, bot, CallConfig(callback_url=CALLBACK))
    with pytest.raises(RuntimeError):
        await idle.handle_notifications([])
    manager = await make_manager()
    await notify(manager, call_body(str(uuid.uuid4()), state="established"))
    await manager.stop()
    assert not manager.running
    assert all(task.done() for task in asyncio.all_tasks() if task.get_name().startswith("timer "))


# -- a whole call whose relay dies -----------------------------------------------------------------------------------

CLIPS = Path(__file__).parent.parent.parent / "mediabot" / "sandbox" / "scenarios"
IDLE_S = 1.0
API_KEY = "media-loss-test-key-0123456789"

# The platform's media relay in a process of its own, publishing one participant into the bot's WHIP endpoint; the
# test kills it as a crash would (no WHIP DELETE, no DTLS close: its sockets just go away).
RELAY_PROCESS = """
import asyncio, json, sys
from mediabot.media.blob import MediaConfigBlob
from mediabot.sandbox._relay import MediaRelay
from mediabot.sandbox._scenario import load_scenario, prepare

async def main() -> None:
    media_config, ca, scenario, sources = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    relay = MediaRelay(verify=ca)
    await relay.start(MediaConfigBlob.from_media_config(media_config), prepare(load_scenario(scenario)), sources)
    print("playing", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class EndingBot(RecordingBot):
    """Says when a call ended."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = asyncio.Event()

    async def on_terminated(self, call: ManagedCall) -> None:
        await super().on_terminated(call)
        self.ended.set()


@contextlib.asynccontextmanager
async def serving_bot(
    sandbox: SandboxServer, out: Path, bot: Bot
) -> AsyncIterator[tuple[FastAPI, MediaEngine, httpx.AsyncClient]]:
    """The whole bot service (app-hosted media with a 1 s media idle timeout) over HTTPS on loopback, in this loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base_url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    settings = sandbox_settings(
        sandbox,
        callback_openid_url=sandbox.env.get("MEDIABOT_CALLBACK_OPENID_URL", f"{sandbox.base_url}/callback/none"),
        public_url=base_url,
        api_key=API_KEY,
        output_dir=out,
        transcriber="none",
        media_idle_timeout=IDLE_S,
    )
    engine = MediaEngine(replace(media_options(settings), media_idle_timeout=IDLE_S))
    app = create_app(settings, bot=bot, media=engine)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
        ssl_certfile=str(sandbox.config.cert_path),
        ssl_keyfile=str(sandbox.config.key_path),
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for "listening"
        await asyncio.sleep(0.01)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(
        base_url=base_url, verify=sandbox.ssl_context(), trust_env=False, headers=headers, timeout=30
    ) as client:
        try:
            yield app, engine, client
        finally:
            server.should_exit = True
            await serving
            sock.close()


async def until(predicate: Any, what: str, seconds: float = 30.0) -> None:
    """Wait (bounded) for ``predicate()``; the bound only stops a broken test from hanging."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polling state that has no event
            await asyncio.sleep(0.05)


async def test_a_call_whose_relay_dies_is_hung_up_and_its_recording_finished(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    scenario = tmp_path / "one.json"
    scenario.write_text(
        json.dumps(
            {
                "name": "one",
                "kind": "incoming",
                "duration": 20,
                "participants": [{"name": "Ann", "audio": str(CLIPS / "adele-vance.wav")}],
            }
        )
    )
    out = tmp_path / "out"
    bot = EndingBot()
    async with serving_bot(sandbox, out, bot) as (app, engine, http):
        manager: CallManager = app.state.manager
        closed = asyncio.Event()
        engine.add_closed_listener(lambda _session: closed.set())
        call_id = sandbox.incoming_call(callback_uri=f"{http.base_url}/api/calling")["id"]
        await until(lambda: (c := manager.get(call_id)) is not None and c.state is CallPhase.ESTABLISHED, "answered")
        call = manager.get(call_id)
        assert call is not None
        await until(lambda: any(p.id != call.my_participant_id for p in call.roster.values()), "the caller's roster")
        caller = next(p for p in call.roster.values() if p.id != call.my_participant_id)
        source = next(s.source_id for s in caller.media_streams or [] if s.source_id)
        session = engine.for_call(call_id)
        assert session is not None
        relay = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RELAY_PROCESS,
            json.dumps(app_hosted_media_config(engine.blob_for(session))),
            str(sandbox.ca_path),
            str(scenario),
            json.dumps({"Ann": source}),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            assert relay.stdout is not None
            async with asyncio.timeout(60):
                assert (await relay.stdout.readline()).strip() == b"playing"
            await until(
                lambda: any((s["frames_received"] or 0) > 50 for s in session.live()["sources"]), "Ann to be heard"
            )
            assert {c.source_id for c in session.connections()} == {source, "main"}
        finally:
            relay.kill()  # as a crash would: nothing is said to the bot
            await relay.wait()
        async with asyncio.timeout(60):
            await bot.ended.wait()
            await closed.wait()
        assert call.state is CallPhase.TERMINATED
        assert call.note is not None and call.note.startswith("media lost (media timeout)")
        live = (await http.get("/v1/live")).json()
        (shown,) = [c for c in live["calls"] if c["id"] == call_id]
        assert shown["state"] == "terminated" and shown["media"] is None
        metrics = (await http.get("/metrics")).text
        assert "mediabot_media_sessions 0.0" in metrics and "mediabot_media_streams 0.0" in metrics

    # The bot hung up through Graph, and the platform ended the call.
    assert ("DELETE", "", 204) in sandbox_paths(sandbox, call_id)
    folder = out / call_id
    meta = json.loads((folder / "call.json").read_text())
    assert meta["complete"] is True
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    ended = {e["source_id"]: e for e in events if e["type"] == "source_disconnected"}
    assert ended[source]["reason"] == "media timeout"
    assert ended["main"]["reason"] == "session closed"  # main only listened: its end came with the call's
    (lost,) = [e for e in events if e["type"] == "media_lost"]
    assert lost["reason"] == "media timeout" and lost["t"] >= ended[source]["t"] + IDLE_S - 0.01
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states[-2:] == ["terminating", "terminated"]
    samples = meta["recording"]["files"]["samples"]
    wavs = sorted((folder / "audio").glob("*.wav"))
    assert [w.name for w in wavs] == [f"{caller.id}.wav", "mixed.wav"]
    tracks = {}
    for path in wavs:
        with wave.open(str(path), "rb") as reader:
            assert (reader.getframerate(), reader.getnchannels(), reader.getnframes()) == (16_000, 1, samples)
            tracks[path.name] = np.frombuffer(reader.readframes(samples), "<i2")
    assert np.array_equal(tracks["mixed.wav"], tracks[f"{caller.id}.wav"])
    ann = tracks[f"{caller.id}.wav"]
    cut = round(ended[source]["t"] * 16_000)
    assert np.abs(ann[:cut]).max() > 1000 and np.abs(ann[cut:]).max(initial=0) == 0
