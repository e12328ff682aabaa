"""``ManagedCall``: what the call plane knows about one call, and ``CallPhase``, the lifecycle it moves through.

The :class:`~mediabot.calls.manager.CallManager` is the only writer; everyone else (the service's ``/v1`` API, the
media plane, the user's :class:`~mediabot.calls.bot.Bot`) reads. Lifecycle::

    incoming ─┬─ answered ──┐
              ├─ rejected   ├─ establishing ─ established ─┬─ transferring ─┐
              └─ redirecting┘                   ▲          │       │        ├─ terminating ─ terminated
                                                └──────────┼───────┘ (transfer failed)
                                                           └────────────────┘

A phase never moves backwards (late or duplicated notifications are no-ops); the one exception is
``transferring → established`` for a failed transfer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from mediabot.graph.models import (
    CallState,
    CommsOperation,
    Identity,
    IdentitySet,
    InvitationParticipantInfo,
    Participant,
    ParticipantInfo,
    ResultInfo,
)

__all__ = ["CallOperation", "CallPhase", "ManagedCall", "ToneRecord", "identities", "phase_for_graph_state"]


class CallPhase(StrEnum):
    """Where a call is in mediabot's lifecycle (Graph's ``call.state`` plus our own decisions)."""

    INCOMING = "incoming"
    ANSWERED = "answered"
    REJECTED = "rejected"
    REDIRECTING = "redirecting"
    ESTABLISHING = "establishing"
    ESTABLISHED = "established"
    TRANSFERRING = "transferring"
    TERMINATING = "terminating"
    TERMINATED = "terminated"

    @property
    def rank(self) -> int:
        """Position in the lifecycle; a call only moves to a higher rank."""
        return _RANK[self]

    def can_move_to(self, new: CallPhase) -> bool:
        """Whether going from this phase to ``new`` is progress (not a duplicate, not a step back)."""
        if self is CallPhase.TRANSFERRING and new is CallPhase.ESTABLISHED:
            return True  # the transfer failed and the call goes on
        return new.rank > self.rank


_RANK: dict[CallPhase, int] = {
    CallPhase.INCOMING: 0,
    CallPhase.ANSWERED: 1,
    CallPhase.REJECTED: 1,
    CallPhase.REDIRECTING: 1,
    CallPhase.ESTABLISHING: 2,
    CallPhase.ESTABLISHED: 3,
    CallPhase.TRANSFERRING: 4,
    CallPhase.TERMINATING: 5,
    CallPhase.TERMINATED: 6,
}

_PHASE_BY_STATE: dict[str, CallPhase] = {
    CallState.INCOMING: CallPhase.INCOMING,
    CallState.ESTABLISHING: CallPhase.ESTABLISHING,
    CallState.RINGING: CallPhase.ESTABLISHING,
    CallState.ESTABLISHED: CallPhase.ESTABLISHED,
    CallState.HOLD: CallPhase.ESTABLISHED,
    CallState.TRANSFERRING: CallPhase.TRANSFERRING,
    CallState.TRANSFER_ACCEPTED: CallPhase.TRANSFERRING,
    CallState.REDIRECTING: CallPhase.REDIRECTING,
    CallState.TERMINATING: CallPhase.TERMINATING,
    CallState.TERMINATED: CallPhase.TERMINATED,
}


def phase_for_graph_state(state: str | None) -> CallPhase | None:
    """The phase a Graph ``call.state`` value means (``ringing`` → establishing, ``hold`` → established), or None."""
    return _PHASE_BY_STATE.get(state or "")


_IDENTITY_KINDS = (
    "user",
    "application",
    "application_instance",
    "phone",
    "guest",
    "acs_user",
    "azure_communication_services_user",
    "encrypted",
    "on_premises",
    "device",
)


def identities(identity_set: IdentitySet | None) -> list[tuple[str, Identity]]:
    """The ``(kind, identity)`` pairs present in an identity set, most specific kinds first."""
    if identity_set is None:
        return []
    found = []
    for kind in _IDENTITY_KINDS:
        identity = getattr(identity_set, kind)
        if isinstance(identity, Identity):
            found.append((kind, identity))
    return found


def _display_name(info: ParticipantInfo | None) -> str | None:
    pairs = identities(info.identity if info else None)
    for _, identity in pairs:
        if identity.display_name:
            return identity.display_name
    for _, identity in pairs:
        if identity.id:
            return identity.id
    return None


@dataclass(frozen=True, kw_only=True)
class ToneRecord:
    """A DTMF tone received on the call."""

    tone: str
    sequence_id: int | None
    received: datetime
    call_time: float | None  # seconds on the call timeline (Graph tones: since established), None before that
    participant_id: str | None = None  # who pressed it, when the media plane heard it in their audio
    source: str = "graph"  # "graph" (subscribeToTone) or "inband" (detected in the audio)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "tone": self.tone,
            "sequence_id": self.sequence_id,
            "received": self.received.isoformat(),
            "call_time": self.call_time,
            "participant_id": self.participant_id,
            "source": self.source,
        }


@dataclass(kw_only=True)
class CallOperation:
    """An operation (playPrompt, subscribeToTone, ...) started on the call, and how it ended."""

    client_context: str | None
    id: str | None = None
    kind: str | None = None
    status: str | None = None
    result_info: ResultInfo | None = None
    started: datetime | None = None
    finished: datetime | None = None
    last: CommsOperation | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        """Whether the operation completed or failed."""
        return self.status in ("completed", "failed")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "id": self.id,
            "client_context": self.client_context,
            "kind": self.kind,
            "status": self.status,
            "result_info": self.result_info.to_graph() if self.result_info else None,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
        }


class ManagedCall:
    """One call as the manager tracks it: lifecycle phase, parties, roster, tones, operations, compliance gate."""

    def __init__(
        self,
        call_id: str,
        *,
        direction: str | None,
        state: CallPhase,
        created: datetime,
        created_at: float,
        compliance_recording: bool = False,
    ) -> None:
        self.id = call_id
        self.direction = direction
        self.state = state
        self.graph_state: str | None = None
        self.source: ParticipantInfo | None = None
        self.targets: list[InvitationParticipantInfo] = []
        self.subject: str | None = None
        self.my_participant_id: str | None = None
        self.roster: dict[str, Participant] = {}
        self.roster_sequence: int | None = None
        self.delta_roster = False
        self.tones: list[ToneRecord] = []
        self.operations: dict[str, CallOperation] = {}
        self.result_info: ResultInfo | None = None
        self.note: str | None = None
        self.created = created
        self.answered: datetime | None = None
        self.established: datetime | None = None
        self.ended: datetime | None = None
        self.created_at = created_at
        self.established_at: float | None = None
        self.last_heard = created_at
        self.compliance_recording = compliance_recording
        self.recording_status: str | None = None
        self.media_failed = False
        self.speech_segments = 0
        self._participant_sequence: dict[str, int] = {}
        self._recording_allowed = False
        self._gate_decided = asyncio.Event()

    def __repr__(self) -> str:
        return f"ManagedCall({self.id!r}, {self.direction}, {self.state})"

    # -- who ------------------------------------------------------------------------------------------------------

    def caller_ids(self) -> list[str]:
        """Ids of the source's identities (user, application, application instance, phone, guest, ...)."""
        return [identity.id for _, identity in identities(self.source.identity if self.source else None) if identity.id]

    @property
    def caller_name(self) -> str | None:
        """The caller's display name (or first id) when the source is known."""
        return _display_name(self.source)

    def display_names(self) -> dict[str, str]:
        """Participant id → display name (or identity id) for the current roster."""
        names = {}
        for participant_id, participant in self.roster.items():
            name = _display_name(participant.info)
            if name is not None:
                names[participant_id] = name
        return names

    @property
    def ended_or_ending(self) -> bool:
        """Whether the call is terminating or terminated."""
        return self.state in (CallPhase.TERMINATING, CallPhase.TERMINATED)

    # -- compliance-recording gate -------------------------------------------------------------------------------

    @property
    def recording_allowed(self) -> bool:
        """Whether media may persist anything for this call (compliance gate open)."""
        return self._recording_allowed

    @property
    def recording_decided(self) -> bool:
        """Whether the gate has been decided (opened, refused, or the call ended first)."""
        return self._gate_decided.is_set()

    async def wait_recording_allowed(self) -> bool:
        """Wait until the gate is decided; True if recording is allowed, False if refused or the call ended."""
        await self._gate_decided.wait()
        return self._recording_allowed

    def _decide_gate(self, allowed: bool) -> None:
        self._recording_allowed = allowed
        self._gate_decided.set()

    # -- view -----------------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for the ``/v1`` API."""
        names = self.display_names()
        return {
            "id": self.id,
            "direction": self.direction,
            "state": str(self.state),
            "graph_state": self.graph_state,
            "subject": self.subject,
            "caller": {"ids": self.caller_ids(), "display_name": self.caller_name},
            "source": self.source.to_graph() if self.source else None,
            "targets": [target.to_graph() for target in self.targets],
            "roster": [
                {
                    "id": participant_id,
                    "display_name": names.get(participant_id),
                    "is_muted": participant.is_muted,
                    "is_in_lobby": participant.is_in_lobby,
                    "media_streams": [stream.to_graph() for stream in participant.media_streams or []],
                }
                for participant_id, participant in self.roster.items()
            ],
            "roster_sequence": self.roster_sequence,
            "tones": [tone.to_json() for tone in self.tones],
            "operations": [operation.to_json() for operation in self.operations.values()],
            "result_info": self.result_info.to_graph() if self.result_info else None,
            "note": self.note,
            "created": self.created.isoformat(),
            "answered": self.answered.isoformat() if self.answered else None,
            "established": self.established.isoformat() if self.established else None,
            "ended": self.ended.isoformat() if self.ended else None,
            "compliance": {
                "enabled": self.compliance_recording,
                "recording_allowed": self.recording_allowed,
                "decided": self.recording_decided,
                "recording_status": self.recording_status,
                "media_failed": self.media_failed,
                "speech_segments": self.speech_segments,
            },
        }
