"""All in-memory state of the emulated cloud, behind one lock.

Owns app registrations (persisted through the config), calls with their participants and operations, recordings,
call records, online meetings, presence, subscriptions, injected faults and the request log. Handlers call its
methods; each method holds the lock for its whole read-modify-write and returns copies, never live state.

Call progress is immediate and deterministic: a created or answered call answers ``establishing`` and is
``established`` on the next GET; operations answer ``running`` and are ``completed`` on the next GET of
``operations/{id}``. Ending a call (DELETE, reject, redirect, transfer, admin end) removes it (GET → 404) and files a
callRecord for it at once.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import fnmatch
import math
import secrets
import struct
import threading
import uuid
import wave
from collections.abc import Iterable
from functools import cache
from io import BytesIO
from typing import Any
from urllib.parse import quote

from ._config import AppRegistration, SandboxConfig
from ._errors import GraphErrorResponse

__all__ = ["CallEntry", "Fault", "PresenceEntry", "SandboxStore", "app_identity", "not_found", "recording_wav"]

_REQUEST_LOG_LIMIT = 5000
_AVAILABILITY_PRECEDENCE = ("DoNotDisturb", "Busy", "Available", "Away", "BeRightBack", "Offline")


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def not_found(what: str) -> GraphErrorResponse:
    """A Graph 404 for a missing resource."""
    return GraphErrorResponse(404, "NotFound", f"{what} not found.")


@dataclasses.dataclass
class Fault:
    """An injected failure: the next ``count`` requests matching ``method`` and ``path`` answer ``status``.

    ``match`` is ``"prefix"`` (the request path starts with ``path``), ``"exact"`` or ``"glob"`` (fnmatch pattern).
    ``phase`` says when it strikes:

    - ``"before"`` the request is handled: ``delay`` seconds are waited (slow processing); then ``status``, if
      given, answers instead and nothing is applied, else the request is handled normally.
    - ``"after"`` the request was handled (the operation took effect): the response is withheld ``delay`` seconds
      (past a client's timeout), then the client gets ``status`` (with ``retry_after``) if given, else the real
      response. The "did it happen?" case a retry with the same ``client-request-id`` must survive.
    """

    method: str
    path: str
    status: int | None
    count: int
    retry_after: int | None = None
    delay: float = 0.0
    match: str = "prefix"
    phase: str = "before"
    id: str = dataclasses.field(default_factory=_new_id)

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is subject to this fault."""
        if self.method not in ("*", method.upper()):
            return False
        if self.match == "exact":
            return path == self.path
        if self.match == "glob":
            return fnmatch.fnmatchcase(path, self.path)
        return path.startswith(self.path)


@dataclasses.dataclass
class CallEntry:
    """One live call: its Graph resource, owner app, roster, operations and bookkeeping for its callRecord."""

    resource: dict[str, Any]
    owner: str
    participants: dict[str, dict[str, Any]]
    operations: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    started: dt.datetime = dataclasses.field(default_factory=_now)
    roster_history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    join_web_url: str | None = None
    next_source_id: int = 1
    tones_subscribed: bool = False
    tone_sequence: int = 0

    def new_source_id(self) -> str:
        """A fresh ``mediaStreams[].sourceId`` for a participant joining this call."""
        self.next_source_id += 1
        return str(self.next_source_id)


@dataclasses.dataclass
class PresenceEntry:
    """A user's presence sessions (setPresence), preferred presence and status message."""

    sessions: dict[str, tuple[str, str, dt.datetime | None]] = dataclasses.field(default_factory=dict)
    preferred: tuple[str, str, dt.datetime | None] | None = None
    status_message: dict[str, Any] | None = None

    def aggregate(self, now: dt.datetime) -> tuple[str, str]:
        """The (availability, activity) the user shows now."""
        if self.preferred and (self.preferred[2] is None or self.preferred[2] > now):
            return self.preferred[0], self.preferred[1]
        live = [(a, b) for a, b, until in self.sessions.values() if until is None or until > now]
        if not live:
            return "Offline", "Offline"
        return min(live, key=lambda pair: _precedence(pair[0]))


def _precedence(availability: str) -> int:
    return (
        _AVAILABILITY_PRECEDENCE.index(availability)
        if availability in _AVAILABILITY_PRECEDENCE
        else len(_AVAILABILITY_PRECEDENCE)
    )


@cache
def recording_wav() -> bytes:
    """A small real WAV (0.5 s, 16 kHz mono 16-bit, a 440 Hz tone) served as every recordResponse recording."""
    rate = 16000
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate))) for n in range(rate // 2))
    buffer = BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def _participant(identity: dict[str, Any], participant_id: str, source_id: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.participant",
        "id": participant_id,
        "info": {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": copy.deepcopy(identity),
            "endpointType": "default",
            "languageId": None,
            "region": None,
            "participantId": participant_id,
        },
        "mediaStreams": [
            {
                "@odata.type": "#microsoft.graph.mediaStream",
                "mediaType": "audio",
                "sourceId": source_id,
                "direction": "sendReceive",
                "serverMuted": False,
                "label": "main-audio",
            }
        ],
        "isMuted": False,
        "isInLobby": False,
        "metadata": None,
        "recordingInfo": None,
        "restrictedExperience": None,
    }


def app_identity(app: AppRegistration) -> dict[str, Any]:
    """The identitySet of a bot application."""
    return {
        "@odata.type": "#microsoft.graph.identitySet",
        "application": {
            "@odata.type": "#microsoft.graph.identity",
            "displayName": app.display_name,
            "id": app.client_id,
        },
    }


class SandboxStore:
    """The emulated cloud's state; every public method is atomic under one lock."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._lock = threading.RLock()
        self._apps: dict[str, AppRegistration] = {app.client_id: app for app in config.apps}
        self._calls: dict[str, CallEntry] = {}
        self._recordings: dict[str, str] = {}
        self._call_records: dict[str, dict[str, Any]] = {}
        self._meetings: dict[str, dict[str, Any]] = {}
        self._presence: dict[str, PresenceEntry] = {}
        self._subscriptions: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._requests: list[dict[str, Any]] = []
        self._default_callbacks: dict[str, str] = {}

    @property
    def tenant_id(self) -> str:
        """The emulated tenant."""
        return self._config.tenant_id

    # -- apps ---------------------------------------------------------------------------------------------------
    def app(self, client_id: str) -> AppRegistration | None:
        """The registration of ``client_id``, if known."""
        with self._lock:
            return self._apps.get(client_id)

    def apps(self) -> list[AppRegistration]:
        """Every app registration, default app first."""
        with self._lock:
            return list(self._apps.values())

    def add_app(self, app: AppRegistration) -> None:
        """Register an app and persist the registrations."""
        with self._lock:
            self._apps[app.client_id] = app
            self._config.save_apps(list(self._apps.values()))

    def set_default_callback(self, client_id: str, callback_uri: str) -> None:
        """The callbackUri of the app's incoming calls when the ringing request names none."""
        with self._lock:
            self._default_callbacks[client_id] = callback_uri

    def default_callback(self, client_id: str) -> str:
        """The app's default callbackUri for incoming calls (empty: none registered)."""
        with self._lock:
            return self._default_callbacks.get(client_id, "")

    # -- faults and request log ---------------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        """Arm a fault."""
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[Fault]:
        """The armed faults."""
        with self._lock:
            return [dataclasses.replace(fault) for fault in self._faults]

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching the request, if any."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return dataclasses.replace(fault)
            return None

    def log_request(self, entry: dict[str, Any]) -> None:
        """Append to the request log (bounded)."""
        with self._lock:
            self._requests.append(entry)
            del self._requests[:-_REQUEST_LOG_LIMIT]

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first."""
        with self._lock:
            return copy.deepcopy(self._requests)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._requests.clear()

    # -- calls --------------------------------------------------------------------------------------------------
    def create_call(
        self, app: AppRegistration, body: dict[str, Any], context: str, meeting: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Create an outgoing call (P2P, group or meeting join); the ``establishing`` snapshot."""
        call_id = _new_id()
        bot_participant_id = _new_id()
        resource = copy.deepcopy(body)
        resource.update(
            {
                "@odata.type": "#microsoft.graph.call",
                "@odata.context": context,
                "id": call_id,
                "state": "establishing",
                "direction": "outgoing",
                "callChainId": _new_id(),
                "myParticipantId": bot_participant_id,
                "tenantId": body.get("tenantId") or self.tenant_id,
                "source": body.get("source")
                or {"@odata.type": "#microsoft.graph.participantInfo", "identity": app_identity(app)},
                "resultInfo": None,
                "mediaState": None,
                "toneInfo": None,
                "answeredBy": None,
            }
        )
        for key in ("subject", "chatInfo", "meetingInfo", "callOptions"):
            resource.setdefault(key, None)
        resource.setdefault("targets", [])
        resource.setdefault("requestedModalities", ["audio"])
        with self._lock:
            entry = CallEntry(resource=resource, owner=app.client_id, participants={})
            entry.join_web_url = meeting.get("joinWebUrl") if meeting else None
            self._join(entry, app_identity(app), bot_participant_id)
            if meeting:
                organizer = meeting["participants"]["organizer"]["identity"]
                self._join(entry, {"@odata.type": "#microsoft.graph.identitySet", **organizer}, _new_id())
            for target in resource["targets"]:
                identity = target.get("identity") or {}
                self._join(entry, identity, target.get("participantId") or _new_id())
            self._calls[call_id] = entry
            snapshot = copy.deepcopy(resource)
            resource["state"] = "established"
            return snapshot

    def _join(self, entry: CallEntry, identity: dict[str, Any], participant_id: str) -> dict[str, Any]:
        participant = _participant(identity, participant_id, entry.new_source_id())
        entry.participants[participant_id] = participant
        entry.roster_history.append({"identity": copy.deepcopy(identity), "joined": _now()})
        return participant

    def incoming_call(
        self,
        app: AppRegistration,
        caller: dict[str, Any],
        callback_uri: str,
        context: str,
    ) -> dict[str, Any]:
        """A call ringing the bot (state ``incoming``), as the calling platform would offer it."""
        call_id = _new_id()
        bot_participant_id = _new_id()
        caller_participant_id = _new_id()
        resource: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.call",
            "@odata.context": context,
            "id": call_id,
            "state": "incoming",
            "direction": "incoming",
            "callbackUri": callback_uri,
            "callChainId": _new_id(),
            "myParticipantId": bot_participant_id,
            "tenantId": self.tenant_id,
            "source": {
                "@odata.type": "#microsoft.graph.participantInfo",
                "identity": copy.deepcopy(caller),
                "endpointType": "default",
                "region": None,
                "languageId": None,
                "participantId": caller_participant_id,
            },
            "targets": [{"@odata.type": "#microsoft.graph.invitationParticipantInfo", "identity": app_identity(app)}],
            "requestedModalities": ["audio"],
            "incomingContext": {
                "@odata.type": "#microsoft.graph.incomingContext",
                "sourceParticipantId": caller_participant_id,
                "observedParticipantId": caller_participant_id,
            },
            "mediaConfig": None,
            "subject": None,
            "chatInfo": None,
            "meetingInfo": None,
            "resultInfo": None,
            "mediaState": None,
            "toneInfo": None,
        }
        with self._lock:
            entry = CallEntry(resource=resource, owner=app.client_id, participants={})
            self._join(entry, caller, caller_participant_id)
            self._join(entry, app_identity(app), bot_participant_id)
            self._calls[call_id] = entry
            return copy.deepcopy(resource)

    def _call(self, call_id: str, app_id: str) -> CallEntry:
        entry = self._calls.get(call_id)
        if entry is None or entry.owner != app_id:
            # Calls are scoped to the app that created or received them; another app sees nothing.
            raise not_found(f"Call '{call_id}'")
        return entry

    def get_call(self, call_id: str, app_id: str) -> dict[str, Any]:
        """The call as GET returns it."""
        with self._lock:
            return copy.deepcopy(self._call(call_id, app_id).resource)

    def call_exists(self, call_id: str, app_id: str) -> bool:
        """Whether the app owns a live call with that id."""
        with self._lock:
            entry = self._calls.get(call_id)
            return entry is not None and entry.owner == app_id

    def answer(self, call_id: str, app_id: str, body: dict[str, Any]) -> None:
        """Answer an incoming call (400 when the call is not ``incoming``)."""
        with self._lock:
            entry = self._call(call_id, app_id)
            self._require_incoming(entry, "answer")
            entry.resource["callbackUri"] = body["callbackUri"]
            entry.resource["mediaConfig"] = copy.deepcopy(body["mediaConfig"])
            if body.get("callOptions") is not None:
                entry.resource["callOptions"] = copy.deepcopy(body["callOptions"])
            entry.resource["state"] = "established"

    @staticmethod
    def _require_incoming(entry: CallEntry, action: str) -> None:
        state = entry.resource["state"]
        if state != "incoming":
            raise GraphErrorResponse(
                400,
                "BadRequest",
                f"Call '{entry.resource['id']}' cannot {action}: the call is in state '{state}', "
                "only an incoming call can be answered, rejected or redirected.",
            )

    def reject_or_redirect(self, call_id: str, app_id: str, action: str) -> str:
        """Reject or redirect an incoming call; it ends. The callRecord id."""
        with self._lock:
            entry = self._call(call_id, app_id)
            self._require_incoming(entry, action)
            return self._end(call_id)

    def end_call(self, call_id: str, app_id: str | None = None) -> str:
        """End a call (DELETE, transfer, or the admin route); the callRecord id."""
        with self._lock:
            if app_id is not None:
                self._call(call_id, app_id)
            elif call_id not in self._calls:
                raise not_found(f"Call '{call_id}'")
            return self._end(call_id)

    def end_all_calls(self) -> list[tuple[dict[str, Any], str]]:
        """End every live call (filing their callRecords); each one's last snapshot and owner app."""
        with self._lock:
            ended = [(copy.deepcopy(entry.resource), entry.owner) for entry in self._calls.values()]
            for call, _owner in ended:
                self._end(call["id"])
            return ended

    def call_snapshot(self, call_id: str) -> tuple[dict[str, Any], str]:
        """The call and its owner app, whoever asks (admin routes; 404 once it ended)."""
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                raise not_found(f"Call '{call_id}'")
            return copy.deepcopy(entry.resource), entry.owner

    def expire_call(self, call_id: str, only_state: str | None = None) -> tuple[dict[str, Any], str] | None:
        """End a call on a platform timer (only while in ``only_state``, when given); (last snapshot, owner)."""
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None or (only_state is not None and entry.resource["state"] != only_state):
                return None
            snapshot = copy.deepcopy(entry.resource)
            self._end(call_id)
            return snapshot, entry.owner

    def subscribe_to_tones(self, call_id: str, app_id: str) -> None:
        """Mark the call as subscribed to DTMF tones."""
        with self._lock:
            self._call(call_id, app_id).tones_subscribed = True

    def receive_tones(self, call_id: str, tones: Iterable[str]) -> tuple[dict[str, Any], str, list[tuple[int, str]]]:
        """Tones pressed by the remote side: (call, owner, [(sequenceId, tone)]); none unless subscribed."""
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                raise not_found(f"Call '{call_id}'")
            received: list[tuple[int, str]] = []
            if entry.tones_subscribed:
                for tone in tones:
                    entry.tone_sequence += 1
                    received.append((entry.tone_sequence, tone))
                    entry.resource["toneInfo"] = {
                        "@odata.type": "#microsoft.graph.toneInfo",
                        "sequenceId": entry.tone_sequence,
                        "tone": tone,
                    }
            return copy.deepcopy(entry.resource), entry.owner, received

    def _end(self, call_id: str) -> str:
        entry = self._calls.pop(call_id)
        ended = _now()
        record_id = entry.resource["callChainId"]
        organizer = entry.resource["source"].get("identity") if entry.resource.get("source") else None
        bot = [p for p in entry.roster_history if "application" in p["identity"]]
        others = [p for p in entry.roster_history if "application" not in p["identity"]]
        group = bool(entry.resource.get("meetingInfo")) or len(others) > 1
        bot_identity = bot[0]["identity"] if bot else {}
        sessions = []
        for member in others or bot:
            session_id = _new_id()
            start = _iso(member["joined"])
            caller = _endpoint(bot_identity)
            callee = _endpoint(member["identity"])
            sessions.append(
                {
                    "id": session_id,
                    "modalities": ["audio"],
                    "startDateTime": start,
                    "endDateTime": _iso(ended),
                    "isTest": False,
                    "caller": caller,
                    "callee": callee,
                    "failureInfo": None,
                    "segments": [
                        {
                            "id": session_id,
                            "startDateTime": start,
                            "endDateTime": _iso(ended),
                            "caller": copy.deepcopy(caller),
                            "callee": copy.deepcopy(callee),
                            "failureInfo": None,
                            "media": [{"label": "main-audio", "streams": []}],
                        }
                    ],
                }
            )
        self._call_records[record_id] = {
            "id": record_id,
            "version": 1,
            "type": "groupCall" if group else "peerToPeer",
            "modalities": ["audio"],
            "lastModifiedDateTime": _iso(ended),
            "startDateTime": _iso(entry.started),
            "endDateTime": _iso(ended),
            "joinWebUrl": entry.join_web_url,
            "organizer": copy.deepcopy(organizer),
            "participants": [copy.deepcopy(p["identity"]) for p in entry.roster_history],
            "sessions": sessions,
        }
        return str(record_id)

    def update_call(self, call_id: str, app_id: str, changes: dict[str, Any]) -> None:
        """Apply property changes to a live call (e.g. ``toneInfo``)."""
        with self._lock:
            self._call(call_id, app_id).resource.update(copy.deepcopy(changes))

    def set_participant_muted(self, call_id: str, app_id: str, participant_id: str | None, muted: bool) -> None:
        """Mute or unmute a participant (``None``: the bot itself)."""
        with self._lock:
            entry = self._call(call_id, app_id)
            pid = participant_id or entry.resource["myParticipantId"]
            participant = entry.participants.get(pid)
            if participant is None:
                raise not_found(f"Participant '{pid}'")
            participant["isMuted"] = muted

    def set_recording_status(self, call_id: str, app_id: str, status: str) -> None:
        """Record the bot's recording status on its own participant."""
        with self._lock:
            entry = self._call(call_id, app_id)
            bot = entry.participants.get(entry.resource["myParticipantId"])
            if bot is not None:
                bot["recordingInfo"] = {"@odata.type": "#microsoft.graph.recordingInfo", "recordingStatus": status}

    def add_operation(
        self,
        call_id: str,
        app_id: str,
        odata_type: str,
        client_context: str | None,
        final: dict[str, Any] | None = None,
        initial: dict[str, Any] | None = None,
        immediate: bool = False,
    ) -> dict[str, Any]:
        """Start an operation on a call; the ``running`` snapshot (``completed`` when ``immediate``).

        ``final`` is merged in when it completes; synchronous actions (mute, subscribeToTone, ...) are ``immediate``,
        as Graph answers them already completed.
        """
        operation_id = _new_id()
        snapshot: dict[str, Any] = {
            "@odata.type": f"#microsoft.graph.{odata_type}",
            "id": operation_id,
            "status": "running",
            "clientContext": client_context,
            "resultInfo": None,
            **(initial or {}),
        }
        with self._lock:
            entry = self._call(call_id, app_id)
            completed = copy.deepcopy(snapshot)
            completed.update(
                {
                    "status": "completed",
                    "resultInfo": {
                        "@odata.type": "#microsoft.graph.resultInfo",
                        "code": 200,
                        "subcode": 0,
                        "message": "Action completed successfully.",
                    },
                    **(final or {}),
                }
            )
            entry.operations[operation_id] = completed
        return copy.deepcopy(completed) if immediate else snapshot

    def get_operation(self, call_id: str, app_id: str, operation_id: str) -> dict[str, Any]:
        """An operation of a call, as GET returns it."""
        with self._lock:
            operation = self._call(call_id, app_id).operations.get(operation_id)
            if operation is None:
                raise not_found(f"Operation '{operation_id}'")
            return copy.deepcopy(operation)

    def add_recording(self, access_token: str) -> str:
        """Register a recording download; its id."""
        recording_id = _new_id()
        with self._lock:
            self._recordings[recording_id] = access_token
        return recording_id

    def recording_token(self, recording_id: str) -> str | None:
        """The access token guarding a recording, if it exists."""
        with self._lock:
            return self._recordings.get(recording_id)

    # -- participants -------------------------------------------------------------------------------------------
    def participants(self, call_id: str, app_id: str) -> list[dict[str, Any]]:
        """The call's roster."""
        with self._lock:
            return copy.deepcopy(list(self._call(call_id, app_id).participants.values()))

    def participant(self, call_id: str, app_id: str, participant_id: str) -> dict[str, Any]:
        """One participant."""
        with self._lock:
            participant = self._call(call_id, app_id).participants.get(participant_id)
            if participant is None:
                raise not_found(f"Participant '{participant_id}'")
            return copy.deepcopy(participant)

    def invite(self, call_id: str, app_id: str, invitations: Iterable[dict[str, Any]]) -> list[str]:
        """Add invited participants to the roster; their ids."""
        with self._lock:
            entry = self._call(call_id, app_id)
            added = []
            for invitation in invitations:
                participant_id = invitation.get("participantId") or _new_id()
                self._join(entry, invitation.get("identity") or {}, participant_id)
                added.append(participant_id)
            return added

    def reserve_source_id(self, call_id: str) -> str:
        """A sourceId for a participant that will join the call later (a scenario's late joiner)."""
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                raise not_found(f"Call '{call_id}'")
            return entry.new_source_id()

    def replace_participants(self, call_id: str, keep: str) -> None:
        """Remove everyone but ``keep`` (the bot's participant): a scenario brings its own roster."""
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                raise not_found(f"Call '{call_id}'")
            entry.participants = {pid: p for pid, p in entry.participants.items() if pid == keep}

    def join(self, call_id: str, identity: dict[str, Any], participant_id: str, source_id: str) -> bool:
        """A participant joins with a known sourceId; False when the call is gone."""
        with self._lock:
            entry = self._calls.get(call_id)
            if entry is None:
                return False
            participant = _participant(identity, participant_id, source_id)
            entry.participants[participant_id] = participant
            entry.roster_history.append({"identity": copy.deepcopy(identity), "joined": _now()})
            return True

    def leave(self, call_id: str, participant_id: str) -> bool:
        """A participant leaves; False when the call or the participant is gone."""
        with self._lock:
            entry = self._calls.get(call_id)
            return entry is not None and entry.participants.pop(participant_id, None) is not None

    def call_owner(self, call_id: str) -> str | None:
        """The app that owns a live call (None once it ended)."""
        with self._lock:
            entry = self._calls.get(call_id)
            return entry.owner if entry is not None else None

    def remove_participant(self, call_id: str, app_id: str, participant_id: str) -> None:
        """Remove a participant from the roster."""
        with self._lock:
            entry = self._call(call_id, app_id)
            if entry.participants.pop(participant_id, None) is None:
                raise not_found(f"Participant '{participant_id}'")

    def set_participant_field(self, call_id: str, app_id: str, participant_id: str, key: str, value: Any) -> None:
        """Set one property of a participant (404 when absent)."""
        with self._lock:
            participant = self._call(call_id, app_id).participants.get(participant_id)
            if participant is None:
                raise not_found(f"Participant '{participant_id}'")
            participant[key] = copy.deepcopy(value)

    # -- call records -------------------------------------------------------------------------------------------
    def call_record(self, record_id: str) -> dict[str, Any]:
        """A callRecord including its sessions and segments."""
        with self._lock:
            record = self._call_records.get(record_id)
            if record is None:
                raise not_found(f"CallRecord '{record_id}'")
            return copy.deepcopy(record)

    # -- online meetings ----------------------------------------------------------------------------------------
    def create_meeting(
        self, user_id: str, body: dict[str, Any], external_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create a meeting organised by ``user_id`` (or return the one with ``external_id``); (meeting, created)."""
        with self._lock:
            if external_id is not None:
                for meeting in self._meetings.values():
                    if meeting["externalId"] == external_id and meeting["_organizer"] == user_id:
                        return _public(meeting), False
            token = secrets.token_urlsafe(24).replace("-", "").replace("_", "")[:32]
            thread_id = f"19:meeting_{token}@thread.v2"
            context = quote(f'{{"Tid":"{self.tenant_id}","Oid":"{user_id}"}}', safe="")
            join_web_url = f"https://teams.microsoft.com/l/meetup-join/{quote(thread_id, safe='')}/0?context={context}"
            now = _now()
            settings = body.get("joinMeetingIdSettings") or {}
            needs_passcode = settings.get("isPasscodeRequired", True) is not False
            meeting_id = _b64(f"1*{user_id}*0**{thread_id}")
            organizer = {
                "identity": {
                    "user": {"id": user_id, "tenantId": self.tenant_id, "displayName": None},
                },
                "role": "presenter",
                "upn": None,
            }
            participants = copy.deepcopy(body.get("participants") or {})
            participants["organizer"] = organizer
            participants.setdefault("attendees", [])
            meeting = {
                **copy.deepcopy(body),
                "id": meeting_id,
                "creationDateTime": _iso(now),
                "startDateTime": body.get("startDateTime") or _iso(now),
                "endDateTime": body.get("endDateTime") or _iso(now + dt.timedelta(hours=1)),
                "subject": body.get("subject"),
                "externalId": external_id or body.get("externalId"),
                "joinWebUrl": join_web_url,
                "isBroadcast": bool(body.get("isBroadcast", False)),
                "allowedPresenters": body.get("allowedPresenters", "everyone"),
                "participants": participants,
                "chatInfo": {"threadId": thread_id, "messageId": "0", "replyChainMessageId": None},
                "joinMeetingIdSettings": {
                    "isPasscodeRequired": needs_passcode,
                    "joinMeetingId": str(secrets.randbelow(9 * 10**11) + 10**11),
                    "passcode": secrets.token_hex(3) if needs_passcode else None,
                },
                "lobbyBypassSettings": {"scope": "organization", "isDialInBypassEnabled": False},
                "audioConferencing": None,
                "videoTeleconferenceId": None,
                "_organizer": user_id,
            }
            self._meetings[meeting_id] = meeting
            return _public(meeting), True

    def meeting(self, user_id: str, meeting_id: str) -> dict[str, Any]:
        """A meeting of ``user_id`` by id."""
        with self._lock:
            meeting = self._meetings.get(meeting_id)
            if meeting is None or meeting["_organizer"] != user_id:
                raise not_found(f"OnlineMeeting '{meeting_id}'")
            return _public(meeting)

    def find_meetings(self, user_id: str | None, **criteria: str) -> list[dict[str, Any]]:
        """Meetings (of ``user_id`` when given) whose join URL, join meeting id or chat thread match."""
        with self._lock:
            found = []
            for meeting in self._meetings.values():
                if user_id is not None and meeting["_organizer"] != user_id:
                    continue
                if "join_web_url" in criteria and meeting["joinWebUrl"] != criteria["join_web_url"]:
                    continue
                if (
                    "join_meeting_id" in criteria
                    and meeting["joinMeetingIdSettings"]["joinMeetingId"] != criteria["join_meeting_id"]
                ):
                    continue
                if "thread_id" in criteria and meeting["chatInfo"]["threadId"] != criteria["thread_id"]:
                    continue
                found.append(_public(meeting))
            return found

    # -- presence -----------------------------------------------------------------------------------------------
    def presence(self, user_id: str) -> dict[str, Any]:
        """The user's presence as GET returns it."""
        with self._lock:
            entry = self._presence.get(user_id.lower(), PresenceEntry())
            availability, activity = entry.aggregate(_now())
            return {
                "id": user_id,
                "availability": availability,
                "activity": activity,
                "statusMessage": copy.deepcopy(entry.status_message),
            }

    def set_presence(
        self, user_id: str, session_id: str, availability: str, activity: str, until: dt.datetime | None
    ) -> None:
        """Record an application's presence session for a user."""
        with self._lock:
            self._presence.setdefault(user_id.lower(), PresenceEntry()).sessions[session_id] = (
                availability,
                activity,
                until,
            )

    def clear_presence(self, user_id: str, session_id: str) -> None:
        """Drop an application's presence session."""
        with self._lock:
            self._presence.setdefault(user_id.lower(), PresenceEntry()).sessions.pop(session_id, None)

    def set_preferred_presence(self, user_id: str, preferred: tuple[str, str, dt.datetime | None] | None) -> None:
        """Set (or clear with ``None``) the user's preferred presence."""
        with self._lock:
            self._presence.setdefault(user_id.lower(), PresenceEntry()).preferred = preferred

    def set_status_message(self, user_id: str, message: dict[str, Any] | None) -> None:
        """Set the user's status message."""
        with self._lock:
            self._presence.setdefault(user_id.lower(), PresenceEntry()).status_message = copy.deepcopy(message)

    # -- subscriptions ------------------------------------------------------------------------------------------
    def add_subscription(self, subscription: dict[str, Any], owner: str) -> None:
        """Store a validated subscription."""
        with self._lock:
            self._subscriptions[subscription["id"]] = {**copy.deepcopy(subscription), "_owner": owner}

    def subscription(self, subscription_id: str, owner: str) -> dict[str, Any]:
        """A subscription of ``owner``."""
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None or subscription["_owner"] != owner:
                raise not_found(f"Subscription '{subscription_id}'")
            return _public(subscription)

    def subscriptions(self, owner: str) -> list[dict[str, Any]]:
        """All subscriptions of ``owner``."""
        with self._lock:
            return [_public(s) for s in self._subscriptions.values() if s["_owner"] == owner]

    def subscribers(self, resource_prefix: str) -> list[tuple[dict[str, Any], str]]:
        """Every live subscription (with its owner) whose resource starts with ``resource_prefix``."""
        wanted = resource_prefix.strip("/").lower()
        with self._lock:
            return [
                (_public(s), str(s["_owner"]))
                for s in self._subscriptions.values()
                if str(s.get("resource", "")).strip("/").lower().startswith(wanted)
            ]

    def update_subscription(self, subscription_id: str, owner: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a PATCH to a subscription."""
        with self._lock:
            self.subscription(subscription_id, owner)
            self._subscriptions[subscription_id].update(copy.deepcopy(changes))
            return _public(self._subscriptions[subscription_id])

    def delete_subscription(self, subscription_id: str, owner: str) -> None:
        """Delete a subscription."""
        with self._lock:
            self.subscription(subscription_id, owner)
            del self._subscriptions[subscription_id]


def _endpoint(identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.callRecords.participantEndpoint",
        "identity": copy.deepcopy(identity),
        "userAgent": {
            "@odata.type": "#microsoft.graph.callRecords.clientUserAgent",
            "headerValue": "mediabot-sandbox",
            "platform": "unknown",
            "productFamily": "teams",
        },
        "feedback": None,
    }


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {key: copy.deepcopy(value) for key, value in item.items() if not key.startswith("_")}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")
