"""``GraphClient``: every Graph cloud-communications operation a bot needs, on httpx, with app-only tokens.

Nothing here knows about the sandbox: pointed at ``https://graph.microsoft.com`` with a real app registration it
works unchanged. Methods are named after Graph's operations in snake_case and return the pydantic models of
:mod:`mediabot.graph.models`.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from mediabot._errors import GraphAPIError, GraphNotFoundError
from mediabot.config import Settings
from mediabot.graph._transport import GraphRequester, TokenSource
from mediabot.graph.auth import TokenProvider
from mediabot.graph.join_url import parse_join_web_url
from mediabot.graph.models import (
    Call,
    CallRecord,
    CallRecordSession,
    CancelMediaProcessingOperation,
    CommsOperation,
    GraphModel,
    InvitationParticipantInfo,
    InviteParticipantsOperation,
    MediaConfig,
    MuteParticipantOperation,
    OnlineMeeting,
    Participant,
    PlayPromptOperation,
    Presence,
    Prompt,
    RecordOperation,
    SendDtmfTonesOperation,
    StartHoldMusicOperation,
    StopHoldMusicOperation,
    SubscribeToToneOperation,
    Subscription,
    UnmuteParticipantOperation,
    UpdateRecordingStatusOperation,
    parse_graph_object,
)

__all__ = ["GraphClient", "media_prompt", "phone_target", "user_target"]

M = TypeVar("M", bound=GraphModel)

CALLS = "/communications/calls"
_NOT_IDS = ("", ".", "..")


def _id(value: str) -> str:
    """One path segment for a Graph id: percent-encoded (``/``, ``?``, ``#``, ``%`` and the rest), never a dot
    segment, so that no id can point a request at another resource."""
    if value in _NOT_IDS:
        raise ValueError(f"{value!r} is not a Graph id")
    return quote(value, safe="@:")


def _clean(value: Any) -> Any:
    """A JSON-ready value: models via ``to_graph()``, None-valued keys dropped, recursively."""
    if isinstance(value, GraphModel):
        return value.to_graph()
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _identity(kind: str, identity_id: str, display_name: str | None, tenant_id: str | None) -> dict[str, Any]:
    identity: dict[str, Any] = {"@odata.type": "#microsoft.graph.identity", "id": identity_id}
    if display_name:
        identity["displayName"] = display_name
    if tenant_id:
        identity["tenantId"] = tenant_id
    return {"@odata.type": "#microsoft.graph.identitySet", kind: identity}


def user_target(user_id: str, *, display_name: str | None = None, tenant_id: str | None = None) -> dict[str, Any]:
    """An ``invitationParticipantInfo`` for a Teams user, for calls, invites, redirects and transfers."""
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": _identity("user", user_id, display_name, tenant_id),
    }


def phone_target(number: str) -> dict[str, Any]:
    """An ``invitationParticipantInfo`` for a PSTN number in E.164 form."""
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {
            "@odata.type": "#microsoft.graph.identitySet",
            "phone": {"@odata.type": "#microsoft.graph.identity", "id": number},
        },
    }


def media_prompt(uri: str, resource_id: str | None = None) -> dict[str, Any]:
    """A ``mediaPrompt`` that plays the audio file at ``uri``."""
    return {
        "@odata.type": "#microsoft.graph.mediaPrompt",
        "mediaInfo": _clean(
            {
                "@odata.type": "#microsoft.graph.mediaInfo",
                "uri": uri,
                "resourceId": resource_id or str(uuid.uuid4()),
            }
        ),
    }


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class GraphClient:
    """Async client for Graph's calls, IVR, participants, meetings, presence, call records and subscriptions."""

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._owns_tokens = tokens is None
        self._tokens: TokenSource = tokens if tokens is not None else TokenProvider(settings)
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(settings.ca_bundle)) if settings.ca_bundle is not None else True
        )
        self.base_url = settings.graph_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=settings.graph_timeout,
            transport=transport,
            verify=verify,
            trust_env=False,
            proxy=settings.proxy_url,
            headers={"Accept": "application/json"},
        )
        self._requester = GraphRequester(
            self._http,
            self._tokens,
            max_retries=settings.graph_max_retries,
            max_backoff=settings.graph_max_backoff,
        )

    @property
    def beta_url(self) -> str:
        """The beta endpoint next to the configured one, for the few operations only beta has."""
        root, _, _version = self.base_url.rpartition("/")
        return f"{root}/beta"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections (and the token provider's, when this client made it)."""
        await self._http.aclose()
        if self._owns_tokens and isinstance(self._tokens, TokenProvider):
            self._tokens.close()

    # -- plumbing ---------------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        expected: Sequence[int] = (200, 201, 202, 204),
    ) -> httpx.Response:
        """Send a request to a Graph path (relative to the base URL, or absolute) with retries and typed errors."""
        body = _clean(json_body) if json_body is not None else None
        return await self._requester.request(method, path, json_body=body, params=params, expected=expected)

    async def _get_model(self, path: str, model: type[M], params: Mapping[str, str] | None = None) -> M:
        response = await self.request("GET", path, params=params, expected=(200,))
        return _as(model, response.json())

    async def _action(self, path: str, body: Mapping[str, Any], model: type[M]) -> M:
        """POST an action that answers with a commsOperation (or nothing, in which case a stub operation)."""
        response = await self.request("POST", path, json_body=body)
        if response.content:
            return _as(model, response.json())
        # 202 with no body (answer, reject, redirect, transfer): the operation's id is in Location.
        location = response.headers.get("Location", "")
        op_id = location.rstrip("/").rpartition("/")[2] if "/operations/" in location else None
        return model.model_validate({"id": op_id, "status": "running", "clientContext": body.get("clientContext")})

    async def _collection(self, path: str, model: type[M], params: Mapping[str, str] | None = None) -> AsyncIterator[M]:
        """Every item of a collection, following ``@odata.nextLink`` page by page."""
        next_url: str | None = path
        page_params = params
        while next_url:
            response = await self.request("GET", next_url, params=page_params, expected=(200,))
            page = response.json()
            for item in page.get("value", []):
                yield _as(model, item)
            next_url = page.get("@odata.nextLink")
            page_params = None  # the next link carries its own query

    # -- calls ------------------------------------------------------------------------------------------------

    async def create_call(self, call: Call | Mapping[str, Any]) -> Call:
        """POST /communications/calls with a full call body; returns the created call (state establishing)."""
        body = _clean(call)
        body.setdefault("@odata.type", "#microsoft.graph.call")
        response = await self.request("POST", CALLS, json_body=body, expected=(200, 201))
        return _as(Call, response.json())

    def _call_body(
        self,
        *,
        callback_uri: str,
        media_config: MediaConfig | Mapping[str, Any],
        targets: Iterable[Mapping[str, Any]] | None = None,
        display_name: str | None = None,
        modalities: Sequence[str] = ("audio",),
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": callback_uri,
            "source": {
                "@odata.type": "#microsoft.graph.participantInfo",
                "identity": _identity("application", self._settings.client_id, display_name, None),
            },
            "requestedModalities": list(modalities),
            "mediaConfig": _clean(media_config),
            "tenantId": self._settings.tenant_id or None,
        }
        if targets is not None:
            body["targets"] = [_clean(t) for t in targets]
        body.update(extra or {})
        return _clean(body)  # type: ignore[no-any-return]

    async def call_user(
        self,
        user_id: str,
        *,
        callback_uri: str,
        media_config: MediaConfig | Mapping[str, Any],
        display_name: str | None = None,
        tenant_id: str | None = None,
    ) -> Call:
        """Place a peer-to-peer call to a Teams user."""
        target = user_target(user_id, tenant_id=tenant_id)
        return await self.create_call(
            self._call_body(
                callback_uri=callback_uri,
                media_config=media_config,
                targets=[target],
                display_name=display_name,
            )
        )

    async def call_group(
        self,
        targets: Sequence[Mapping[str, Any]],
        *,
        callback_uri: str,
        media_config: MediaConfig | Mapping[str, Any],
        display_name: str | None = None,
        subject: str | None = None,
    ) -> Call:
        """Place a group call to several targets (built with ``user_target``/``phone_target``)."""
        return await self.create_call(
            self._call_body(
                callback_uri=callback_uri,
                media_config=media_config,
                targets=targets,
                display_name=display_name,
                extra={"subject": subject},
            )
        )

    async def join_meeting(
        self,
        *,
        callback_uri: str,
        media_config: MediaConfig | Mapping[str, Any],
        chat_info: Mapping[str, Any] | None = None,
        meeting_info: Mapping[str, Any] | None = None,
        tenant_id: str | None = None,
        display_name: str | None = None,
    ) -> Call:
        """Join a meeting by its ``chatInfo`` and ``meetingInfo`` (organizer, token or join-meeting-id variant)."""
        extra: dict[str, Any] = {"chatInfo": chat_info, "meetingInfo": meeting_info}
        if tenant_id:
            extra["tenantId"] = tenant_id
        return await self.create_call(
            self._call_body(
                callback_uri=callback_uri, media_config=media_config, display_name=display_name, extra=extra
            )
        )

    async def join_meeting_by_id(
        self,
        join_meeting_id: str,
        *,
        passcode: str | None,
        callback_uri: str,
        media_config: MediaConfig | Mapping[str, Any],
        display_name: str | None = None,
    ) -> Call:
        """Join a meeting by its numeric join-meeting id and passcode."""
        meeting_info = {
            "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": join_meeting_id,
            "passcode": passcode,
        }
        return await self.join_meeting(
            callback_uri=callback_uri,
            media_config=media_config,
            meeting_info=_clean(meeting_info),
            display_name=display_name,
        )

    async def join_meeting_by_url(
        self,
        join_web_url: str,
        *,
        callback_uri: str,
        media_config: MediaConfig | Mapping[str, Any],
        display_name: str | None = None,
    ) -> Call:
        """Join a meeting from its join link (``/l/meetup-join/...`` or ``/meet/<id>?p=...``)."""
        info = parse_join_web_url(join_web_url)
        if info.join_meeting_id is not None:
            return await self.join_meeting_by_id(
                info.join_meeting_id,
                passcode=info.passcode,
                callback_uri=callback_uri,
                media_config=media_config,
                display_name=display_name,
            )
        assert info.organizer_id is not None and info.thread_id is not None  # the parser guarantees both
        return await self.join_meeting(
            callback_uri=callback_uri,
            media_config=media_config,
            chat_info={
                "@odata.type": "#microsoft.graph.chatInfo",
                "threadId": info.thread_id,
                "messageId": info.message_id,
            },
            meeting_info={
                "@odata.type": "#microsoft.graph.organizerMeetingInfo",
                "organizer": _identity("user", info.organizer_id, None, info.tenant_id),
            },
            tenant_id=info.tenant_id,
            display_name=display_name,
        )

    async def get_call(self, call_id: str) -> Call:
        """GET a call: its state, media state, roster-independent properties."""
        return await self._get_model(f"{CALLS}/{_id(call_id)}", Call)

    async def hang_up(self, call_id: str) -> None:
        """DELETE the call: the bot leaves (a peer-to-peer call ends)."""
        await self.request("DELETE", f"{CALLS}/{_id(call_id)}", expected=(200, 204))

    async def answer(
        self,
        call_id: str,
        *,
        callback_uri: str,
        media_config: MediaConfig | Mapping[str, Any],
        accepted_modalities: Sequence[str] = ("audio",),
        participant_capacity: int | None = None,
        call_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer an incoming call (Graph expects this within about 15 seconds of the incoming notification)."""
        body = {
            "callbackUri": callback_uri,
            "mediaConfig": media_config,
            "acceptedModalities": list(accepted_modalities),
            "participantCapacity": participant_capacity,
            "callOptions": call_options,
        }
        await self.request("POST", f"{CALLS}/{_id(call_id)}/answer", json_body=body, expected=(200, 202))

    async def reject(self, call_id: str, *, reason: str | None = None, callback_uri: str | None = None) -> None:
        """Reject an incoming call (reason ``none``, ``busy`` or ``forbidden``)."""
        body = {"reason": reason, "callbackUri": callback_uri}
        await self.request("POST", f"{CALLS}/{_id(call_id)}/reject", json_body=body, expected=(200, 202, 204))

    async def redirect(
        self,
        call_id: str,
        targets: Sequence[Mapping[str, Any]],
        *,
        ring_timeout_s: int | None = None,
        callback_uri: str | None = None,
    ) -> None:
        """Redirect an incoming call to other targets before answering it (ringing them ``ring_timeout_s``)."""
        body = {"targets": list(targets), "timeout": ring_timeout_s, "callbackUri": callback_uri}
        await self.request("POST", f"{CALLS}/{_id(call_id)}/redirect", json_body=body, expected=(200, 202, 204))

    async def transfer(
        self,
        call_id: str,
        transfer_target: Mapping[str, Any],
        *,
        transferee: Mapping[str, Any] | None = None,
    ) -> None:
        """Transfer an established call (blind; or consultative when ``transfer_target`` carries replacesCallId)."""
        body = {"transferTarget": transfer_target, "transferee": transferee}
        await self.request("POST", f"{CALLS}/{_id(call_id)}/transfer", json_body=body, expected=(200, 202, 204))

    async def keep_alive(self, call_id: str) -> None:
        """Tell Graph the bot still owns the call (at least every 45 minutes); 404 means the call is gone."""
        await self.request("POST", f"{CALLS}/{_id(call_id)}/keepAlive", expected=(200, 204))

    async def mute(self, call_id: str, *, client_context: str | None = None) -> MuteParticipantOperation:
        """Mute the bot itself in the call."""
        body = {"clientContext": client_context}
        return await self._action(f"{CALLS}/{_id(call_id)}/mute", body, MuteParticipantOperation)

    async def unmute(self, call_id: str, *, client_context: str | None = None) -> UnmuteParticipantOperation:
        """Unmute the bot itself."""
        body = {"clientContext": client_context}
        return await self._action(f"{CALLS}/{_id(call_id)}/unmute", body, UnmuteParticipantOperation)

    async def update_recording_status(
        self, call_id: str, status: str, *, client_context: str | None = None
    ) -> UpdateRecordingStatusOperation:
        """Tell Teams whether the bot records (``recording``, ``notRecording``, ``failed``): the compliance banner."""
        body = {"status": status, "clientContext": client_context}
        return await self._action(f"{CALLS}/{_id(call_id)}/updateRecordingStatus", body, UpdateRecordingStatusOperation)

    async def change_screen_sharing_role(self, call_id: str, role: str) -> None:
        """Become ``viewer`` or ``sharer`` of screen sharing in the call."""
        body = {"role": role}
        await self.request(
            "POST", f"{CALLS}/{_id(call_id)}/changeScreenSharingRole", json_body=body, expected=(200, 202, 204)
        )

    async def get_operation(self, call_id: str, operation_id: str) -> CommsOperation:
        """Poll a commsOperation; completion normally arrives as a notification, this is the fallback."""
        return await self._get_model(f"{CALLS}/{_id(call_id)}/operations/{_id(operation_id)}", CommsOperation)

    # -- IVR --------------------------------------------------------------------------------------------------

    async def play_prompt(
        self,
        call_id: str,
        prompts: Sequence[Prompt | Mapping[str, Any]],
        *,
        client_context: str | None = None,
    ) -> PlayPromptOperation:
        """Play prompts (``media_prompt(uri)``) into the call; completion arrives as an operation notification."""
        body = {"prompts": list(prompts), "clientContext": client_context}
        return await self._action(f"{CALLS}/{_id(call_id)}/playPrompt", body, PlayPromptOperation)

    async def record_response(
        self,
        call_id: str,
        *,
        prompts: Sequence[Prompt | Mapping[str, Any]] = (),
        barge_in_allowed: bool | None = None,
        initial_silence_timeout_seconds: int | None = None,
        max_silence_timeout_seconds: int | None = None,
        max_record_duration_seconds: int | None = None,
        play_beep: bool | None = None,
        stop_tones: Sequence[str] = (),
        client_context: str | None = None,
    ) -> RecordOperation:
        """Record the caller's spoken response; the completed operation has ``recording_location`` and a token."""
        body = {
            "prompts": list(prompts) or None,
            "bargeInAllowed": barge_in_allowed,
            "initialSilenceTimeoutInSeconds": initial_silence_timeout_seconds,
            "maxSilenceTimeoutInSeconds": max_silence_timeout_seconds,
            "maxRecordDurationInSeconds": max_record_duration_seconds,
            "playBeep": play_beep,
            "stopTones": list(stop_tones) or None,
            "clientContext": client_context,
        }
        return await self._action(f"{CALLS}/{_id(call_id)}/recordResponse", body, RecordOperation)

    async def download_recording(self, recording_location: str, recording_access_token: str) -> bytes:
        """Fetch a recordResponse recording with its own access token (not the app token)."""
        response = await self._requester.request(
            "GET",
            recording_location,
            headers={"Authorization": f"Bearer {recording_access_token}"},
            expected=(200,),
            authenticate=False,
        )
        return response.content

    async def cancel_media_processing(
        self, call_id: str, *, client_context: str | None = None
    ) -> CancelMediaProcessingOperation:
        """Cancel the running playPrompt or recordResponse of the call."""
        body = {"clientContext": client_context}
        return await self._action(f"{CALLS}/{_id(call_id)}/cancelMediaProcessing", body, CancelMediaProcessingOperation)

    async def subscribe_to_tone(self, call_id: str, *, client_context: str | None = None) -> SubscribeToToneOperation:
        """Ask for DTMF tones of the call to be notified (as call updates carrying ``toneInfo``)."""
        body = {"clientContext": client_context}
        return await self._action(f"{CALLS}/{_id(call_id)}/subscribeToTone", body, SubscribeToToneOperation)

    async def send_dtmf_tones(
        self,
        call_id: str,
        tones: Sequence[str],
        *,
        delay_between_tones_ms: int | None = None,
        client_context: str | None = None,
    ) -> SendDtmfTonesOperation:
        """Send DTMF tones (``tone0`` … ``tone9``, ``star``, ``pound``, ``a``…``d``) into the call."""
        body = {
            "tones": list(tones),
            "delayBetweenTonesMs": delay_between_tones_ms,
            "clientContext": client_context,
        }
        return await self._action(f"{CALLS}/{_id(call_id)}/sendDtmfTones", body, SendDtmfTonesOperation)

    # -- participants -----------------------------------------------------------------------------------------

    async def list_participants(self, call_id: str) -> list[Participant]:
        """The call's roster."""
        return [p async for p in self._collection(f"{CALLS}/{_id(call_id)}/participants", Participant)]

    async def get_participant(self, call_id: str, participant_id: str) -> Participant:
        """One participant of the call."""
        return await self._get_model(f"{CALLS}/{_id(call_id)}/participants/{_id(participant_id)}", Participant)

    async def invite_participants(
        self,
        call_id: str,
        participants: Sequence[InvitationParticipantInfo | Mapping[str, Any]],
        *,
        client_context: str | None = None,
    ) -> InviteParticipantsOperation:
        """Invite participants into the call (group calls and meetings)."""
        body = {"participants": list(participants), "clientContext": client_context}
        return await self._action(f"{CALLS}/{_id(call_id)}/participants/invite", body, InviteParticipantsOperation)

    async def mute_participant(
        self, call_id: str, participant_id: str, *, client_context: str | None = None
    ) -> MuteParticipantOperation:
        """Mute another participant (needs the meeting's permission for the bot)."""
        body = {"clientContext": client_context}
        path = f"{CALLS}/{_id(call_id)}/participants/{_id(participant_id)}/mute"
        return await self._action(path, body, MuteParticipantOperation)

    async def mute_all(
        self, call_id: str, *, participants: Sequence[str] = (), client_context: str | None = None
    ) -> CommsOperation:
        """Mute all participants, or the given ids (beta only)."""
        body = {"participants": list(participants), "clientContext": client_context}
        return await self._action(f"{self.beta_url}{CALLS}/{_id(call_id)}/participants/muteAll", body, CommsOperation)

    async def remove_participant(self, call_id: str, participant_id: str) -> None:
        """Remove a participant from the call (or cancel a pending invite)."""
        await self.request("DELETE", f"{CALLS}/{_id(call_id)}/participants/{_id(participant_id)}", expected=(200, 204))

    async def start_hold_music(
        self,
        call_id: str,
        participant_id: str,
        *,
        custom_prompt: Prompt | Mapping[str, Any] | None = None,
        client_context: str | None = None,
    ) -> StartHoldMusicOperation:
        """Put a participant on hold, with music (a custom prompt, or Teams' default)."""
        body = {"customPrompt": custom_prompt, "clientContext": client_context}
        path = f"{CALLS}/{_id(call_id)}/participants/{_id(participant_id)}/startHoldMusic"
        return await self._action(path, body, StartHoldMusicOperation)

    async def stop_hold_music(
        self, call_id: str, participant_id: str, *, client_context: str | None = None
    ) -> StopHoldMusicOperation:
        """Take a participant off hold."""
        body = {"clientContext": client_context}
        path = f"{CALLS}/{_id(call_id)}/participants/{_id(participant_id)}/stopHoldMusic"
        return await self._action(path, body, StopHoldMusicOperation)

    # -- online meetings (application permissions: /users/{organizer}/onlineMeetings) -------------------------

    async def create_online_meeting(
        self, organizer_id: str, meeting: OnlineMeeting | Mapping[str, Any]
    ) -> OnlineMeeting:
        """Create a meeting on behalf of ``organizer_id`` (needs an application access policy for that user)."""
        path = f"/users/{_id(organizer_id)}/onlineMeetings"
        response = await self.request("POST", path, json_body=meeting, expected=(200, 201))
        return _as(OnlineMeeting, response.json())

    async def get_online_meeting(self, organizer_id: str, meeting_id: str) -> OnlineMeeting:
        """A meeting by its id."""
        return await self._get_model(f"/users/{_id(organizer_id)}/onlineMeetings/{_id(meeting_id)}", OnlineMeeting)

    async def find_online_meeting_by_join_url(self, organizer_id: str, join_web_url: str) -> OnlineMeeting | None:
        """The organizer's meeting with this join link, or None."""
        quoted = join_web_url.replace("'", "''")
        return await self._first_meeting(organizer_id, f"JoinWebUrl eq '{quoted}'")

    async def find_online_meeting_by_join_meeting_id(
        self, organizer_id: str, join_meeting_id: str
    ) -> OnlineMeeting | None:
        """The organizer's meeting with this numeric join-meeting id, or None."""
        quoted = join_meeting_id.replace("'", "''")
        return await self._first_meeting(organizer_id, f"joinMeetingIdSettings/joinMeetingId eq '{quoted}'")

    async def _first_meeting(self, organizer_id: str, odata_filter: str) -> OnlineMeeting | None:
        path = f"/users/{_id(organizer_id)}/onlineMeetings"
        async for meeting in self._collection(path, OnlineMeeting, params={"$filter": odata_filter}):
            return meeting
        return None

    async def create_or_get_online_meeting(
        self,
        organizer_id: str,
        external_id: str,
        *,
        subject: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        participants: Mapping[str, Any] | None = None,
        chat_info: Mapping[str, Any] | None = None,
    ) -> OnlineMeeting:
        """The meeting with this external id, created if it does not exist yet."""
        body = {
            "externalId": external_id,
            "subject": subject,
            "startDateTime": _iso(start) if start else None,
            "endDateTime": _iso(end) if end else None,
            "participants": participants,
            "chatInfo": chat_info,
        }
        path = f"/users/{_id(organizer_id)}/onlineMeetings/createOrGet"
        response = await self.request("POST", path, json_body=body, expected=(200, 201))
        return _as(OnlineMeeting, response.json())

    # -- presence ---------------------------------------------------------------------------------------------

    async def get_presence(self, user_id: str | None = None) -> Presence:
        """A user's presence; ``None`` means ``/me`` (delegated tokens only: Graph refuses it for an app)."""
        path = "/me/presence" if user_id is None else f"/users/{_id(user_id)}/presence"
        return await self._get_model(path, Presence)

    async def get_presences(self, user_ids: Sequence[str]) -> list[Presence]:
        """Presence of several users at once (getPresencesByUserId)."""
        body = {"ids": list(user_ids)}
        response = await self.request("POST", "/communications/getPresencesByUserId", json_body=body, expected=(200,))
        return [_as(Presence, item) for item in response.json().get("value", [])]

    async def set_presence(
        self,
        user_id: str,
        *,
        session_id: str,
        availability: str,
        activity: str,
        expiration: timedelta | None = None,
    ) -> None:
        """Set the presence of the app's session for a user (``session_id`` is the app's client id)."""
        body = {
            "sessionId": session_id,
            "availability": availability,
            "activity": activity,
            "expirationDuration": _duration(expiration) if expiration else None,
        }
        await self.request("POST", f"/users/{_id(user_id)}/presence/setPresence", json_body=body, expected=(200, 204))

    async def clear_presence(self, user_id: str, *, session_id: str) -> None:
        """Clear the app's presence session for a user."""
        body = {"sessionId": session_id}
        await self.request("POST", f"/users/{_id(user_id)}/presence/clearPresence", json_body=body, expected=(200, 204))

    async def set_user_preferred_presence(
        self, user_id: str, *, availability: str, activity: str, expiration: timedelta | None = None
    ) -> None:
        """Set a user's preferred presence (what they chose, which outranks session presence)."""
        body = {
            "availability": availability,
            "activity": activity,
            "expirationDuration": _duration(expiration) if expiration else None,
        }
        path = f"/users/{_id(user_id)}/presence/setUserPreferredPresence"
        await self.request("POST", path, json_body=body, expected=(200, 204))

    # -- call records and subscriptions -----------------------------------------------------------------------

    async def get_call_record(self, record_id: str, *, expand_sessions: bool = True) -> CallRecord:
        """A call record, with its sessions and their segments unless ``expand_sessions`` is False."""
        params = {"$expand": "sessions($expand=segments)"} if expand_sessions else None
        return await self._get_model(f"/communications/callRecords/{_id(record_id)}", CallRecord, params=params)

    async def iter_call_record_sessions(
        self, record_id: str, *, expand_segments: bool = True
    ) -> AsyncIterator[CallRecordSession]:
        """Every session of a call record, following ``@odata.nextLink``."""
        params = {"$expand": "segments"} if expand_segments else None
        path = f"/communications/callRecords/{_id(record_id)}/sessions"
        async for session in self._collection(path, CallRecordSession, params=params):
            yield session

    async def list_call_record_sessions(
        self, record_id: str, *, expand_segments: bool = True
    ) -> list[CallRecordSession]:
        """All sessions of a call record as a list (all pages)."""
        return [s async for s in self.iter_call_record_sessions(record_id, expand_segments=expand_segments)]

    async def create_subscription(
        self,
        *,
        resource: str,
        change_type: str,
        notification_url: str,
        expiration: datetime,
        client_state: str | None = None,
        lifecycle_notification_url: str | None = None,
    ) -> Subscription:
        """Subscribe a webhook to changes (e.g. ``/communications/callRecords``, ``created``)."""
        body = {
            "resource": resource,
            "changeType": change_type,
            "notificationUrl": notification_url,
            "expirationDateTime": _iso(expiration),
            "clientState": client_state,
            "lifecycleNotificationUrl": lifecycle_notification_url,
        }
        response = await self.request("POST", "/subscriptions", json_body=body, expected=(201, 200))
        return _as(Subscription, response.json())

    async def renew_subscription(self, subscription_id: str, expiration: datetime) -> Subscription:
        """Move a subscription's expiry (PATCH)."""
        body = {"expirationDateTime": _iso(expiration)}
        response = await self.request(
            "PATCH", f"/subscriptions/{_id(subscription_id)}", json_body=body, expected=(200,)
        )
        return _as(Subscription, response.json())

    async def get_subscription(self, subscription_id: str) -> Subscription:
        """One subscription."""
        return await self._get_model(f"/subscriptions/{_id(subscription_id)}", Subscription)

    async def delete_subscription(self, subscription_id: str) -> None:
        """Delete a subscription; an already-gone one is not an error."""
        try:
            await self.request("DELETE", f"/subscriptions/{_id(subscription_id)}", expected=(200, 204))
        except GraphNotFoundError:
            return


def _duration(value: timedelta) -> str:
    """ISO 8601 duration (PT#H#M#S) for Graph's Edm.Duration parameters."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"PT{hours}H{minutes}M{secs}S"


def _as(model: type[M], data: Any) -> M:
    """Parse a Graph body as ``model`` (or the subtype its ``@odata.type`` names)."""
    if not isinstance(data, Mapping):
        raise GraphAPIError(200, "UnexpectedBody", f"expected a JSON object for {model.__name__}", body=data)
    parsed = parse_graph_object(data, default=model)
    if isinstance(parsed, model):
        return parsed
    return model.model_validate(data)
