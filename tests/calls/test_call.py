"""CallPhase ordering, Graph state mapping, ManagedCall views and its recording gate."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest

from mediabot.calls import CallPhase, ManagedCall
from mediabot.calls.call import phase_for_graph_state
from mediabot.graph.models import Participant


def test_phases_only_move_forward() -> None:
    assert CallPhase.INCOMING.can_move_to(CallPhase.ANSWERED)
    assert CallPhase.ANSWERED.can_move_to(CallPhase.ESTABLISHED)  # establishing may come late
    assert not CallPhase.ESTABLISHED.can_move_to(CallPhase.ESTABLISHING)
    assert not CallPhase.ESTABLISHED.can_move_to(CallPhase.ESTABLISHED)
    assert not CallPhase.ANSWERED.can_move_to(CallPhase.REJECTED)
    assert CallPhase.TRANSFERRING.can_move_to(CallPhase.ESTABLISHED)  # a failed transfer
    assert not CallPhase.TERMINATED.can_move_to(CallPhase.ESTABLISHED)
    assert all(phase.can_move_to(CallPhase.TERMINATED) for phase in CallPhase if phase is not CallPhase.TERMINATED)


@pytest.mark.parametrize(
    ("state", "phase"),
    [
        ("incoming", CallPhase.INCOMING),
        ("ringing", CallPhase.ESTABLISHING),
        ("hold", CallPhase.ESTABLISHED),
        ("transferAccepted", CallPhase.TRANSFERRING),
        ("terminated", CallPhase.TERMINATED),
        ("unknownFutureValue", None),
        (None, None),
    ],
)
def test_graph_states_map_to_phases(state: str | None, phase: CallPhase | None) -> None:
    assert phase_for_graph_state(state) is phase


async def test_gate_and_snapshot() -> None:
    call = ManagedCall(
        "c1", direction="incoming", state=CallPhase.ESTABLISHED, created=datetime.now(UTC), created_at=0.0
    )
    call.roster["p1"] = Participant.from_graph(
        {"id": "p1", "info": {"identity": {"phone": {"id": "+15550100"}}}, "isMuted": True}
    )
    waiter = asyncio.create_task(call.wait_recording_allowed())
    await asyncio.sleep(0)
    assert not waiter.done() and not call.recording_decided
    call._decide_gate(True)
    assert await waiter is True
    snapshot = json.loads(json.dumps(call.snapshot()))
    assert snapshot["roster"] == [
        {"id": "p1", "display_name": "+15550100", "is_muted": True, "is_in_lobby": None, "media_streams": []}
    ]
    assert snapshot["compliance"]["recording_allowed"] is True
    assert snapshot["state"] == "established"
