"""Fixtures for the call-plane tests: a real GraphClient on the sandbox, a recording Bot, a manager factory."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mediabot import Settings
from mediabot.calls import (
    AnswerDecision,
    Bot,
    CallConfig,
    CallManager,
    ManagedCall,
    ManualClock,
    MediaProvider,
    ServiceHostedMedia,
    ToneRecord,
)
from mediabot.calls.media import RosterEntry
from mediabot.graph import GraphClient
from mediabot.graph.models import CommsOperation, Participant
from mediabot.graph.notifications import parse_comms_notifications
from mediabot.media.session import SpeechEvent
from mediabot.sandbox import SandboxServer
from tests.graph.conftest import RecordingTransport as GraphRecordingTransport

CALLBACK = "https://bot.example.com/api/calling"


class RecordingTransport(GraphRecordingTransport):
    """The real network, keeping every request so tests can read the bodies the manager sent."""

    def posts(self, call_id: str, action: str | None = None) -> list[dict[str, Any]]:
        """JSON bodies POSTed to ``/communications/calls/{call_id}[/action]``."""
        suffix = f"/communications/calls/{call_id}" + (f"/{action}" if action else "")
        return [
            json.loads(r.content) if r.content else {}
            for r in self.sent
            if r.method == "POST" and r.url.path.endswith(suffix)
        ]


class RecordingBot(Bot):
    """A Bot that records every hook call; behaviour is configurable per test."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.decision: AnswerDecision | None = None
        self.incoming: Callable[[ManagedCall], Awaitable[AnswerDecision | None]] | None = None
        self.established: Callable[[ManagedCall], Awaitable[None]] | None = None
        self.fail_in: set[str] = set()

    def _record(self, name: str, value: Any) -> None:
        self.seen.append((name, value))
        if name in self.fail_in:
            raise RuntimeError(f"{name} exploded")

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def of(self, name: str) -> list[Any]:
        return [value for seen, value in self.seen if seen == name]

    async def on_incoming_call(self, call: ManagedCall) -> AnswerDecision | None:
        self._record("incoming", call.id)
        if self.incoming is not None:
            return await self.incoming(call)
        return self.decision

    async def on_established(self, call: ManagedCall) -> None:
        self._record("established", call.id)
        if self.established is not None:
            await self.established(call)

    async def on_participants_changed(
        self, call: ManagedCall, joined: list[Participant], left: list[Participant]
    ) -> None:
        self._record("participants", ([p.id for p in joined], [p.id for p in left]))

    async def on_tone(self, call: ManagedCall, tone: ToneRecord) -> None:
        self._record("tone", tone)

    async def on_speech(self, call: ManagedCall, event: SpeechEvent) -> None:
        self._record("speech", event)

    async def on_operation_completed(self, call: ManagedCall, operation: CommsOperation) -> None:
        self._record("operation", operation)

    async def on_recording_status(self, call: ManagedCall, allowed: bool, reason: str | None) -> None:
        self._record("recording", (allowed, reason))

    async def on_terminated(self, call: ManagedCall) -> None:
        self._record("terminated", call.id)


class FakeMedia(ServiceHostedMedia):
    """App-hosted media config with a fixed blob; remembers everything the manager told it."""

    def __init__(self, *, hosts: bool = False) -> None:
        self.released: list[str] = []
        self.asked: list[str | None] = []
        self.gated: list[bool] = []
        self.bound: list[str] = []
        self.discarded = 0
        self.rosters: list[tuple[str, list[RosterEntry]]] = []
        self.gates: list[tuple[str, bool]] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        self.prompts: list[tuple[str, str]] = []
        self.hosting = hosts
        self.prompt_error: Exception | None = None
        self.listener: Any = None

    def set_listener(self, listener: Any) -> None:
        self.listener = listener

    async def media_config(self, call_id: str | None, *, gated: bool = False) -> dict[str, Any]:
        self.asked.append(call_id)
        self.gated.append(gated)
        return {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "eyJ2IjoxfQ"}

    def bind(self, media_config: dict[str, Any], call_id: str) -> None:
        self.bound.append(call_id)

    async def discard(self, media_config: dict[str, Any]) -> None:
        self.discarded += 1

    def roster_changed(self, call_id: str, entries: list[RosterEntry]) -> None:
        self.rosters.append((call_id, entries))

    def recording_decided(self, call_id: str, allowed: bool) -> None:
        self.gates.append((call_id, allowed))

    def call_event(self, call_id: str, kind: str, **data: Any) -> None:
        self.events.append((call_id, kind, data))

    def hosts(self, call_id: str) -> bool:
        return self.hosting

    async def play_prompt(self, call_id: str, uri: str) -> float:
        self.prompts.append((call_id, uri))
        if self.prompt_error is not None:
            raise self.prompt_error
        return 1.5

    async def release(self, call_id: str) -> None:
        self.released.append(call_id)


@pytest.fixture(autouse=True)
def _clear_faults(sandbox: SandboxServer) -> Iterator[None]:
    yield
    sandbox.clear_faults()


@pytest.fixture
def transport(sandbox: SandboxServer) -> RecordingTransport:
    return RecordingTransport(str(sandbox.ca_path))


@pytest.fixture
async def graph(sandbox: SandboxServer, transport: RecordingTransport) -> AsyncIterator[GraphClient]:
    settings = Settings(
        _env_file=None,
        tenant_id=sandbox.tenant_id,
        client_id=sandbox.default_app.client_id,
        client_secret=sandbox.default_app.client_secret,
        authority=sandbox.authority,
        graph_url=sandbox.graph_url,
        ca_bundle=sandbox.ca_path,
        graph_max_retries=0,
    )
    async with GraphClient(settings, transport=transport) as client:
        yield client


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def bot() -> RecordingBot:
    return RecordingBot()


ManagerFactory = Callable[..., Awaitable[CallManager]]


@pytest.fixture
async def make_manager(graph: GraphClient, bot: RecordingBot, clock: ManualClock) -> AsyncIterator[ManagerFactory]:
    """Build and start a manager (config overrides as keywords); stopped after the test."""
    managers: list[CallManager] = []

    async def make(*, media: MediaProvider | None = None, **overrides: Any) -> CallManager:
        values: dict[str, Any] = {"callback_url": CALLBACK, "reconcile_after": 100_000.0}
        values.update(overrides)
        manager = CallManager(graph, bot, CallConfig(**values), clock=clock, media=media)
        await manager.start()
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        await manager.stop()


# -- notification bodies ---------------------------------------------------------------------------------------------


def contract_body(contract: Path, name: str, call_id: str, **replace: str) -> dict[str, Any]:
    """A documented notification body with its call id (and any other ``old=new`` strings) rewritten."""
    data = json.loads((contract / "notifications" / f"{name}.json").read_text("utf-8"))
    body = data["body"]
    documented = parse_comms_notifications(body)[0].call_id
    text = json.dumps(body).replace(documented, call_id)
    for old, new in replace.items():
        text = text.replace(old, new)
    result: dict[str, Any] = json.loads(text)
    return result


def call_body(call_id: str, change_type: str = "updated", **resource: Any) -> dict[str, Any]:
    """A commsNotifications body about the call resource itself."""
    return {
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": [
            {
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": change_type,
                "resourceUrl": f"/communications/calls/{call_id}",
                "resourceData": {"@odata.type": "#microsoft.graph.call", **resource},
            }
        ],
    }


def participant(participant_id: str, name: str, **extra: Any) -> dict[str, Any]:
    """A roster participant in the documented shape."""
    return {
        "@odata.type": "#microsoft.graph.participant",
        "id": participant_id,
        "info": {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": {
                "@odata.type": "#microsoft.graph.identitySet",
                "user": {
                    "@odata.type": "#microsoft.graph.identity",
                    "id": f"user-{participant_id}",
                    "displayName": name,
                },
            },
        },
        "mediaStreams": [{"@odata.type": "#microsoft.graph.mediaStream", "mediaType": "audio", "sourceId": "1"}],
        "isMuted": False,
        "isInLobby": False,
        **extra,
    }


def roster_body(call_id: str, participants: list[dict[str, Any]], change_type: str = "updated") -> dict[str, Any]:
    """A commsNotifications roster body (``/participants`` with a list of participants)."""
    return {
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": [
            {
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": change_type,
                "resourceUrl": f"/communications/calls/{call_id}/participants",
                "resourceData": participants,
            }
        ],
    }


async def notify(manager: CallManager, body: dict[str, Any]) -> None:
    """Feed a body to the manager as the service would, then let its background work finish."""
    await manager.handle_notifications(parse_comms_notifications(body))
    await manager.drain()


def sandbox_paths(sandbox: SandboxServer, call_id: str) -> list[tuple[str, str, int]]:
    """(method, path after the call id, status) of every sandbox request about the call."""
    marker = f"/communications/calls/{call_id}"
    out = []
    for entry in sandbox.requests():
        path = entry["path"]
        if marker in path:
            out.append((entry["method"], path.split(marker, 1)[1], entry["status"]))
    return out
