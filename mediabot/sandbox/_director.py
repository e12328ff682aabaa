"""``ScenarioDirector``: runs scenario files on sandbox calls — the roster they imply and the media the relay plays.

A scenario is started through ``POST /_sandbox/scenarios``. For ``incoming`` the sandbox rings the bot at once
(the caller is the first participant); for ``meeting`` it creates an online meeting whose ``joinWebUrl`` the bot must
join; for ``outgoing`` it waits for the bot to call the first participant's user id. When that call is established
with app-hosted media, the call's roster becomes the scenario's participants present at the start (each with its own
``sourceId``), and the :class:`~mediabot.sandbox._relay.MediaRelay` publishes their audio over WHIP to the blob's
endpoint; joins and leaves change the roster (notified as Graph does) and, at ``duration``, the platform ends the call
as a remote hang-up. A call answered with service-hosted media, or whose blob does not decode, runs no media (the run
says why).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import ssl
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mediabot._errors import MediaError
from mediabot.media.blob import MediaConfigBlob

from ._notifications import REMOTE_HUNG_UP_RESULT
from ._relay import MediaRelay, RelayRun
from ._scenario import PreparedScenario, Scenario, load_scenario, prepare
from ._store import SandboxStore

if TYPE_CHECKING:
    from ._platform import CallPlatform

__all__ = ["ScenarioDirector", "ScenarioRun"]

logger = logging.getLogger(__name__)


@dataclass
class Member:
    """A scenario participant on its call: Graph ids, its sourceId, whether it is in the roster now."""

    name: str
    participant_id: str
    user_id: str
    source_id: str = ""
    present: bool = False

    def identity(self, tenant_id: str) -> dict[str, Any]:
        """Its identitySet (a Teams user)."""
        return {
            "@odata.type": "#microsoft.graph.identitySet",
            "user": {
                "@odata.type": "#microsoft.graph.identity",
                "id": self.user_id,
                "displayName": self.name,
                "tenantId": tenant_id,
            },
        }


@dataclass
class ScenarioRun:
    """One scenario on one call: its state, ids, what the relay did."""

    id: str
    scenario: Scenario
    path: str
    app_id: str
    prepared: PreparedScenario
    members: dict[str, Member]
    status: str = "armed"
    call_id: str | None = None
    join_web_url: str | None = None
    thread_id: str | None = None
    error: str | None = None
    relay: RelayRun | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def to_json(self) -> dict[str, Any]:
        """What ``/_sandbox/scenarios/{id}`` shows."""
        stats = self.relay.stats() if self.relay is not None else {}
        return {
            "id": self.id,
            "name": self.scenario.name,
            "kind": self.scenario.kind,
            "path": self.path,
            "status": self.status,
            "call_id": self.call_id,
            "join_web_url": self.join_web_url,
            "target_user_id": next(iter(self.members.values())).user_id,
            "error": self.error,
            "duration": self.scenario.duration,
            "media": self.scenario.media,
            "compliance_recording": self.scenario.compliance_recording,
            "main": (
                {
                    "received_frames": self.relay.main.received_frames,
                    "audio_at": self.relay.main_audio_at,
                    "sent": self.relay.main.sent,
                }
                if self.relay is not None
                else None
            ),
            "participants": [
                {
                    "name": m.name,
                    "participant_id": m.participant_id,
                    "user_id": m.user_id,
                    "source_id": m.source_id,
                    "present": m.present,
                    **(_stats_json(stats[m.name]) if m.name in stats else {}),
                }
                for m in self.members.values()
            ],
        }


def _stats_json(stats: Any) -> dict[str, Any]:
    return {
        "packets": stats.packets,
        "sent": stats.sent,
        "dropped": stats.dropped,
        "stream_error": stats.error,
    }


class ScenarioDirector:
    """Starts scenarios, attaches them to calls, drives the roster and the relay; one per sandbox."""

    def __init__(self, store: SandboxStore, *, verify: ssl.SSLContext | bool, allow_loopback: bool = False) -> None:
        self._store = store
        self._verify = verify
        self._allow_loopback = allow_loopback
        self._relay: MediaRelay | None = None
        self._runs: dict[str, ScenarioRun] = {}
        self._by_call: dict[str, ScenarioRun] = {}
        self.platform: CallPlatform | None = None
        # Its own worker: the loop's default executor also resolves host names, and a bot's unresolvable
        # callbackUri can keep all of those workers waiting on DNS.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mediabot-scenarios")

    # -- runs --------------------------------------------------------------------------------------------------------

    async def create(self, path: Path, app_id: str, *, seed: int = 0) -> ScenarioRun:
        """Load and prepare a scenario (encoding happens once, off the loop) for the app's next matching call."""
        loop = asyncio.get_running_loop()
        scenario = await loop.run_in_executor(self._executor, load_scenario, path)
        prepared = await loop.run_in_executor(self._executor, functools.partial(prepare, scenario, seed=seed))
        members = {
            spec.name: Member(name=spec.name, participant_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()))
            for spec in scenario.participants
        }
        run = ScenarioRun(
            id=secrets.token_hex(8),
            scenario=scenario,
            path=str(path),
            app_id=app_id,
            prepared=prepared,
            members=members,
        )
        self._runs[run.id] = run
        if scenario.kind == "meeting":
            organizer = next(iter(members.values()))
            meeting, _ = self._store.create_meeting(organizer.user_id, {"subject": scenario.name})
            run.join_web_url = str(meeting["joinWebUrl"])
            run.thread_id = str(meeting["chatInfo"]["threadId"])
        logger.info("scenario %s (%s, %s) armed as run %s", scenario.name, scenario.kind, path, run.id)
        return run

    def run(self, run_id: str) -> ScenarioRun | None:
        """A run by id."""
        return self._runs.get(run_id)

    def runs(self) -> list[ScenarioRun]:
        """Every run, oldest first."""
        return list(self._runs.values())

    def attach(self, run: ScenarioRun, call_id: str) -> None:
        """The run plays on this call."""
        run.call_id = call_id
        run.status = "ringing" if run.scenario.kind == "incoming" else "attached"
        self._by_call[call_id] = run

    def _match(self, call: dict[str, Any], app_id: str) -> ScenarioRun | None:
        if (run := self._by_call.get(call["id"])) is not None:
            return run
        for run in self._runs.values():
            if run.status != "armed" or run.app_id != app_id:
                continue
            thread_id = (call.get("chatInfo") or {}).get("threadId")
            targets = [((t.get("identity") or {}).get("user") or {}).get("id") for t in call.get("targets") or []]
            if run.scenario.kind == "meeting" and thread_id and thread_id == run.thread_id:
                self.attach(run, call["id"])
                return run
            if run.scenario.kind == "outgoing" and next(iter(run.members.values())).user_id in targets:
                self.attach(run, call["id"])
                return run
        return None

    # -- the platform's news -----------------------------------------------------------------------------------------

    def establishing(self, call: dict[str, Any], app_id: str) -> ScenarioRun | None:
        """A call is about to be notified established: give it the scenario's roster (before the roster goes out)."""
        run = self._match(call, app_id)
        if run is None:
            return None
        self._store.replace_participants(call["id"], keep=str(call.get("myParticipantId") or ""))
        tenant = self._store.tenant_id
        for spec in run.scenario.participants:
            member = run.members[spec.name]
            member.source_id = self._store.reserve_source_id(call["id"])
            if spec.join_at <= 0:
                self._store.join(call["id"], member.identity(tenant), member.participant_id, member.source_id)
                member.present = True
        return run

    def established(self, call: dict[str, Any], app_id: str) -> None:
        """The call is established (notified): start its media if it has a scenario and app-hosted media."""
        run = self._by_call.get(call["id"])
        if run is None or run.task is not None:
            return
        try:
            blob = MediaConfigBlob.from_media_config(call.get("mediaConfig"))
        except MediaError as exc:
            self._fail(run, f"the bot's media config blob is not usable: {exc}")
            return
        if blob is None:
            self._fail(run, "the call uses service-hosted media: there is no WHIP endpoint to play into")
            return
        run.status = "connecting"
        run.task = asyncio.get_running_loop().create_task(self._play(run, blob), name=f"scenario {run.id}")

    def ended(self, call_id: str) -> None:
        """The call ended (hang-up, expiry, transfer): stop its media."""
        run = self._by_call.pop(call_id, None)
        if run is None:
            return
        if run.status not in ("finished", "failed"):
            run.status = "finished"
        if run.relay is not None:
            asyncio.get_running_loop().create_task(run.relay.stop())
        run.done.set()

    # -- media -------------------------------------------------------------------------------------------------------

    async def _play(self, run: ScenarioRun, blob: MediaConfigBlob) -> None:
        assert run.call_id is not None
        call_id = run.call_id
        if self._relay is None:
            self._relay = MediaRelay(verify=self._verify, allow_loopback=self._allow_loopback)
        if blob.receive == "mixed" and run.prepared.mixed is None:
            # The bot asked for one mixed stream: the platform mixes (the scenario file may have said unmixed).
            mixed = functools.partial(prepare, run.scenario, seed=run.prepared.seed, media="mixed")
            run.prepared = await asyncio.get_running_loop().run_in_executor(self._executor, mixed)
        sources = {name: member.source_id for name, member in run.members.items()}
        try:
            run.relay = await self._relay.start(
                blob,
                run.prepared,
                sources,
                on_join=lambda name: self._join(run, name),
                on_leave=lambda name: self._leave(run, name),
                on_end=lambda: self._end(run),
            )
        except MediaError as exc:
            self._fail(run, f"the relay could not connect: {exc}")
            return
        run.status = "running"
        logger.info("scenario run %s: playing into call %s", run.id, call_id)
        await run.relay.wait()

    def _join(self, run: ScenarioRun, name: str) -> None:
        member = run.members[name]
        if member.present or run.call_id is None:
            return
        identity = member.identity(self._store.tenant_id)
        if self._store.join(run.call_id, identity, member.participant_id, member.source_id):
            member.present = True
            self._roster_changed(run)

    def _leave(self, run: ScenarioRun, name: str) -> None:
        member = run.members[name]
        if run.call_id is not None and member.present and self._store.leave(run.call_id, member.participant_id):
            member.present = False
            self._roster_changed(run)

    def _roster_changed(self, run: ScenarioRun) -> None:
        owner = self._store.call_owner(run.call_id or "")
        if owner is not None and self.platform is not None and run.call_id is not None:
            self.platform.roster_changed(run.call_id, owner)

    def _end(self, run: ScenarioRun) -> None:
        """The scenario's duration is over: everyone hangs up; the call ends as a remote hang-up."""
        run.status = "finished"
        call_id = run.call_id
        if call_id is None or self.platform is None:
            return
        owner = self._store.call_owner(call_id)
        if owner is None:
            return
        call, _ = self._store.call_snapshot(call_id)
        self._store.end_call(call_id)
        self.platform.ended(call, owner, REMOTE_HUNG_UP_RESULT)

    def _fail(self, run: ScenarioRun, message: str) -> None:
        run.status = "failed"
        run.error = message
        logger.warning("scenario run %s: %s", run.id, message)

    async def aclose(self) -> None:
        """Stop every run and the relay."""
        for run in self._runs.values():
            if run.relay is not None:
                await run.relay.stop()
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in self._runs.values() if r.task is not None), return_exceptions=True)
        if self._relay is not None:
            await self._relay.aclose()
            self._relay = None
        self._executor.shutdown(wait=False, cancel_futures=True)
