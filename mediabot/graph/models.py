"""Pydantic models of the Microsoft Graph cloud-communications resources mediabot reads and writes.

This module owns the wire shape of Graph objects: calls, participants, media configs, meeting infos, comms
operations, online meetings, presence, call records, subscriptions and the bodies of the bound call actions.

Every model is *open*: attributes are snake_case, wire names camelCase, and fields Graph sends that we do not
model are kept and written back unchanged. Values stay tolerant (``str`` rather than an enum) so a new Graph
value never breaks parsing; the ``StrEnum`` classes below are for comparisons. Polymorphic fields
(``Call.media_config``, ``Call.meeting_info``, ``Participant.info``, ...) come out as the subclass their
``@odata.type`` names, resolved case-insensitively through one registry (:func:`parse_graph_object`).

Building versus parsing: a model built in Python (``AppHostedMediaConfig(blob=...)``) gets the ``@odata.type``
Graph expects in request bodies; a model parsed from the wire with :meth:`GraphModel.from_graph` keeps exactly
what was sent, so ``Model.from_graph(body).to_graph()`` gives the body back (minus nulls, with the documented
oddities normalised: string result codes become ints, ``subCode`` becomes ``subcode``, operation status casing).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Final, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "AddLargeGalleryViewOperation",
    "AddLargeGalleryViewRequest",
    "AnswerRequest",
    "AppHostedMediaConfig",
    "AudioRoutingGroup",
    "Call",
    "CallDirection",
    "CallMediaState",
    "CallOptions",
    "CallRecord",
    "CallRecordEndpoint",
    "CallRecordParticipant",
    "CallRecordSegment",
    "CallRecordSession",
    "CallRoute",
    "CallState",
    "CallTranscriptionInfo",
    "CancelMediaProcessingOperation",
    "CancelMediaProcessingRequest",
    "ChangeScreenSharingRoleRequest",
    "ChangeType",
    "ChatInfo",
    "CommsOperation",
    "ContentSharingSession",
    "DateTimeTimeZone",
    "EndpointType",
    "GraphModel",
    "Identity",
    "IdentitySet",
    "IncomingCallOptions",
    "IncomingContext",
    "InvitationParticipantInfo",
    "InviteParticipantsOperation",
    "InviteParticipantsRequest",
    "ItemBody",
    "JoinMeetingIdMeetingInfo",
    "JoinMeetingIdSettings",
    "MediaConfig",
    "MediaInfo",
    "MediaPrompt",
    "MediaStream",
    "MeetingInfo",
    "MeetingParticipantInfo",
    "MeetingParticipants",
    "Modality",
    "MuteParticipantOperation",
    "MuteRequest",
    "OnlineMeeting",
    "OperationStatus",
    "OrganizerMeetingInfo",
    "OutOfOfficeSettings",
    "OutgoingCallOptions",
    "Participant",
    "ParticipantInfo",
    "PlayPromptOperation",
    "PlayPromptRequest",
    "Presence",
    "PresenceStatusMessage",
    "Prompt",
    "RecordOperation",
    "RecordResponseRequest",
    "RecordingInfo",
    "RecordingStatus",
    "RedirectRequest",
    "RejectReason",
    "RejectRequest",
    "RemovedState",
    "ResultInfo",
    "ScreenSharingRole",
    "SendDtmfTonesOperation",
    "SendDtmfTonesRequest",
    "ServiceHostedMediaConfig",
    "Session",
    "StartHoldMusicOperation",
    "StartHoldMusicRequest",
    "StopHoldMusicOperation",
    "StopHoldMusicRequest",
    "SubscribeToToneOperation",
    "SubscribeToToneRequest",
    "Subscription",
    "TokenMeetingInfo",
    "Tone",
    "ToneInfo",
    "TransferRequest",
    "UnmuteParticipantOperation",
    "UnmuteRequest",
    "UpdateRecordingStatusOperation",
    "UpdateRecordingStatusRequest",
    "lookup_graph_type",
    "parse_graph_object",
]


# --------------------------------------------------------------------------------------------------------------
# Constants for comparisons (model fields stay plain strings)
# --------------------------------------------------------------------------------------------------------------


class CallState(StrEnum):
    """Values of ``call.state``."""

    INCOMING = "incoming"
    ESTABLISHING = "establishing"
    RINGING = "ringing"
    ESTABLISHED = "established"
    HOLD = "hold"
    TRANSFERRING = "transferring"
    TRANSFER_ACCEPTED = "transferAccepted"
    REDIRECTING = "redirecting"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class OperationStatus(StrEnum):
    """Values of ``commsOperation.status``, in the lowercase form every documented payload uses."""

    NOT_STARTED = "notStarted"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Modality(StrEnum):
    """Values of ``requestedModalities`` / ``acceptedModalities``."""

    AUDIO = "audio"
    VIDEO = "video"
    VIDEO_BASED_SCREEN_SHARING = "videoBasedScreenSharing"
    DATA = "data"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class RejectReason(StrEnum):
    """Values of the ``reason`` parameter of ``call: reject``."""

    NONE = "none"
    BUSY = "busy"
    FORBIDDEN = "forbidden"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class Tone(StrEnum):
    """DTMF tones of ``toneInfo.tone`` and ``sendDtmfTones``."""

    TONE0 = "tone0"
    TONE1 = "tone1"
    TONE2 = "tone2"
    TONE3 = "tone3"
    TONE4 = "tone4"
    TONE5 = "tone5"
    TONE6 = "tone6"
    TONE7 = "tone7"
    TONE8 = "tone8"
    TONE9 = "tone9"
    STAR = "star"
    POUND = "pound"
    A = "a"
    B = "b"
    C = "c"
    D = "d"
    FLASH = "flash"


class ScreenSharingRole(StrEnum):
    """Values of the ``role`` parameter of ``call: changeScreenSharingRole``."""

    VIEWER = "viewer"
    SHARER = "sharer"


class RecordingStatus(StrEnum):
    """Values of ``recordingInfo.recordingStatus`` and ``updateRecordingStatus``."""

    UNKNOWN = "unknown"
    NOT_RECORDING = "notRecording"
    RECORDING = "recording"
    FAILED = "failed"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class EndpointType(StrEnum):
    """Values of ``participantInfo.endpointType``."""

    DEFAULT = "default"
    VOICEMAIL = "voicemail"
    SKYPE_FOR_BUSINESS = "skypeForBusiness"
    SKYPE_FOR_BUSINESS_VOIP_PHONE = "skypeForBusinessVoipPhone"
    UNKNOWN_FUTURE_VALUE = "unknownFutureValue"


class CallDirection(StrEnum):
    """Values of ``call.direction``."""

    INCOMING = "incoming"
    OUTGOING = "outgoing"


class ChangeType(StrEnum):
    """Values of ``changeType`` in comms and change notifications."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


# --------------------------------------------------------------------------------------------------------------
# Base model and the @odata.type registry
# --------------------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[GraphModel]] = {}

# Validation context marking data that came from the wire: no request-body @odata.type is filled in.
_WIRE_CONTEXT: Final[Mapping[str, bool]] = {"mediabot_graph_wire": True}


def _registry_key(odata_type: str) -> str:
    return odata_type.strip().lstrip("#").lower()


def lookup_graph_type(odata_type: object) -> type[GraphModel] | None:
    """The model class registered for an ``@odata.type`` value (case-insensitive, ``#`` optional), or None."""
    if not isinstance(odata_type, str):
        return None
    return _REGISTRY.get(_registry_key(odata_type))


def _from_wire(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, Mapping) and bool(context.get("mediabot_graph_wire"))


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _strip_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_strip_none(item) for item in value]
    return value


class GraphModel(BaseModel):
    """Base of every Graph object: open (unknown fields kept), camelCase on the wire, polymorphic by @odata.type."""

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        alias_generator=to_camel,
        coerce_numbers_to_str=True,
        polymorphic_serialization=True,
    )

    # OData type names (without "#") this class stands for; the first one is canonical.
    graph_types: ClassVar[tuple[str, ...]] = ()
    # Whether a model built in Python carries "@odata.type" (Graph wants it on polymorphic request values).
    typed_in_requests: ClassVar[bool] = False

    odata_type: str | None = Field(default=None, alias="@odata.type")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for name in cls.__dict__.get("graph_types", ()):
            _REGISTRY[_registry_key(name)] = cls

    @model_validator(mode="wrap")
    @classmethod
    def _resolve_odata_type(cls, data: Any, handler: ModelWrapValidatorHandler[Self], info: ValidationInfo) -> Self:
        # One place for polymorphism: a value whose @odata.type names a subclass of the declared type becomes it.
        if isinstance(data, Mapping):
            target = lookup_graph_type(data.get("@odata.type"))
            if target is not None and target is not cls and issubclass(target, cls):
                return target.model_validate(data, context=info.context)
        return handler(data)

    @model_validator(mode="after")
    def _default_odata_type(self, info: ValidationInfo) -> Self:
        if self.odata_type is None and self.typed_in_requests and self.graph_types and not _from_wire(info):
            self.odata_type = "#" + self.graph_types[0]
        return self

    @classmethod
    def from_graph(cls, data: Mapping[str, Any]) -> Self:
        """Parse a wire object into this class (or the subclass its @odata.type names), keeping it as sent."""
        return cls.model_validate(data, context=_WIRE_CONTEXT)

    def to_graph(self) -> dict[str, Any]:
        """JSON-ready dict with wire names, unknown fields included and no null members."""
        dumped: dict[str, Any] = _strip_none(self.model_dump(mode="json", by_alias=True, exclude_none=True))
        return dumped


def parse_graph_object(data: Mapping[str, Any], default: type[GraphModel] | None = None) -> GraphModel:
    """Parse a wire object into the class its ``@odata.type`` names, else ``default``, else ``GraphModel``.

    When the registered class is a base of ``default`` (``#microsoft.graph.commsOperation`` parsed with
    ``default=PlayPromptOperation``), the more specific ``default`` wins. Raises ``TypeError`` for a
    non-mapping and ``pydantic.ValidationError`` for values of the wrong shape.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"a Graph object is a JSON object, not {type(data).__name__}")
    cls = lookup_graph_type(data.get("@odata.type"))
    if cls is None:
        cls = default or GraphModel
    elif default is not None and issubclass(default, cls):
        cls = default
    return cls.from_graph(data)


# --------------------------------------------------------------------------------------------------------------
# Identities and participants
# --------------------------------------------------------------------------------------------------------------


class Identity(GraphModel):
    """One identity (user, application, phone, ...); tenantId/identityProvider appear on communications identities."""

    graph_types = (
        "microsoft.graph.identity",
        "microsoft.graph.communicationsUserIdentity",
        "microsoft.graph.communicationsApplicationIdentity",
        "microsoft.graph.communicationsApplicationInstanceIdentity",
        "microsoft.graph.communicationsGuestIdentity",
        "microsoft.graph.communicationsPhoneIdentity",
        "microsoft.graph.communicationsEncryptedIdentity",
        "microsoft.graph.azureCommunicationServicesUserIdentity",
        "microsoft.graph.userIdentity",
        "microsoft.graph.callRecords.userIdentity",
    )

    id: str | None = None
    display_name: str | None = None
    tenant_id: str | None = None
    identity_provider: str | None = None


class IdentitySet(GraphModel):
    """The identities of one party; Graph mixes identitySet and communicationsIdentitySet members freely."""

    graph_types = ("microsoft.graph.identitySet", "microsoft.graph.communicationsIdentitySet")

    user: Identity | None = None
    application: Identity | None = None
    device: Identity | None = None
    phone: Identity | None = None
    guest: Identity | None = None
    application_instance: Identity | None = None
    encrypted: Identity | None = None
    acs_user: Identity | None = None
    azure_communication_services_user: Identity | None = None
    on_premises: Identity | None = None
    asserted_identity: Identity | None = None
    endpoint_type: str | None = None


class ParticipantInfo(GraphModel):
    """Who a participant is and where it connects from."""

    graph_types = ("microsoft.graph.participantInfo",)
    typed_in_requests = True

    identity: IdentitySet | None = None
    endpoint_type: str | None = None
    region: str | None = None
    language_id: str | None = None
    country_code: str | None = None
    participant_id: str | None = None


class InvitationParticipantInfo(ParticipantInfo):
    """A party to call, invite, redirect or transfer to (a ParticipantInfo with invitation options)."""

    graph_types = ("microsoft.graph.invitationParticipantInfo",)

    hidden: bool | None = None
    replaces_call_id: str | None = None
    remove_from_default_audio_routing_group: bool | None = None


class MediaStream(GraphModel):
    """One media stream a participant sends or receives."""

    graph_types = ("microsoft.graph.mediaStream",)

    media_type: str | None = None
    source_id: str | None = None
    direction: str | None = None
    server_muted: bool | None = None
    label: str | None = None


class RecordingInfo(GraphModel):
    """Recording state a participant announces (compliance recording)."""

    graph_types = ("microsoft.graph.recordingInfo",)

    initiator: IdentitySet | None = None
    recording_status: str | None = None


class RemovedState(GraphModel):
    """Why a participant left the roster."""

    graph_types = ("microsoft.graph.removedState",)

    reason: str | None = None


class Participant(GraphModel):
    """A participant of a call, as listed in the roster."""

    graph_types = ("microsoft.graph.participant",)

    id: str | None = None
    info: ParticipantInfo | None = None
    is_muted: bool | None = None
    is_in_lobby: bool | None = None
    media_streams: list[MediaStream] | None = None
    metadata: str | None = None
    recording_info: RecordingInfo | None = None
    removed_state: RemovedState | None = None
    roster_sequence_number: int | None = None

    @property
    def is_removed(self) -> bool:
        """Whether Graph marked this participant as removed from the call."""
        return self.removed_state is not None


# --------------------------------------------------------------------------------------------------------------
# Media, prompts, meetings
# --------------------------------------------------------------------------------------------------------------


class MediaConfig(GraphModel):
    """Base of the media configuration of a call (app-hosted or service-hosted)."""

    graph_types = ("microsoft.graph.mediaConfig",)

    remove_from_default_audio_group: bool | None = None


class AppHostedMediaConfig(MediaConfig):
    """Media hosted by the bot; ``blob`` is the media session descriptor (ours: see ARCHITECTURE.md)."""

    graph_types = ("microsoft.graph.appHostedMediaConfig",)
    typed_in_requests = True

    blob: str | None = None


class MediaInfo(GraphModel):
    """A media file Graph fetches (prompt audio)."""

    graph_types = ("microsoft.graph.mediaInfo",)
    typed_in_requests = True

    uri: str | None = None
    resource_id: str | None = None


class ServiceHostedMediaConfig(MediaConfig):
    """Media hosted by Graph; ``pre_fetch_media`` lists prompts to cache before they are played."""

    graph_types = ("microsoft.graph.serviceHostedMediaConfig",)
    typed_in_requests = True

    pre_fetch_media: list[MediaInfo] | None = None


class Prompt(GraphModel):
    """Base of a prompt to play."""

    graph_types = ("microsoft.graph.prompt",)


class MediaPrompt(Prompt):
    """A prompt that plays one media file."""

    graph_types = ("microsoft.graph.mediaPrompt",)
    typed_in_requests = True

    media_info: MediaInfo | None = None


class MeetingInfo(GraphModel):
    """Base of how to find the meeting a call joins."""

    graph_types = ("microsoft.graph.meetingInfo",)


class OrganizerMeetingInfo(MeetingInfo):
    """Meeting identified by its organizer (with chatInfo for the thread)."""

    graph_types = ("microsoft.graph.organizerMeetingInfo",)
    typed_in_requests = True

    organizer: IdentitySet | None = None
    allow_conversation_without_host: bool | None = None


class TokenMeetingInfo(MeetingInfo):
    """Meeting identified by a join token (policy-based recording)."""

    graph_types = ("microsoft.graph.tokenMeetingInfo",)
    typed_in_requests = True

    token: str | None = None


class JoinMeetingIdMeetingInfo(MeetingInfo):
    """Meeting identified by its numeric join id and passcode."""

    graph_types = ("microsoft.graph.joinMeetingIdMeetingInfo",)
    typed_in_requests = True

    join_meeting_id: str | None = None
    passcode: str | None = None


class ChatInfo(GraphModel):
    """The chat thread of a meeting."""

    graph_types = ("microsoft.graph.chatInfo",)
    typed_in_requests = True

    thread_id: str | None = None
    message_id: str | None = None
    reply_chain_message_id: str | None = None


class ResultInfo(GraphModel):
    """Outcome of a call or operation; ``code``/``subcode`` arrive as ints, numeric strings or as ``subCode``."""

    graph_types = ("microsoft.graph.resultInfo",)

    code: int | None = None
    subcode: int | None = Field(
        default=None, validation_alias=AliasChoices("subcode", "subCode"), serialization_alias="subcode"
    )
    message: str | None = None


class ToneInfo(GraphModel):
    """A DTMF tone received on a call subscribed with subscribeToTone."""

    graph_types = ("microsoft.graph.toneInfo",)

    sequence_id: int | None = None
    tone: str | None = None


class CallMediaState(GraphModel):
    """Whether the call's audio is active."""

    graph_types = ("microsoft.graph.callMediaState",)

    audio: str | None = None


class IncomingContext(GraphModel):
    """Who an incoming call is really from (on behalf of, transferor, observed participant)."""

    graph_types = ("microsoft.graph.incomingContext",)
    typed_in_requests = True

    source_participant_id: str | None = None
    observed_participant_id: str | None = None
    on_behalf_of: IdentitySet | None = None
    transferor: IdentitySet | None = None


class CallRoute(GraphModel):
    """How an incoming call was routed (forwarded, lookup, selfFork)."""

    graph_types = ("microsoft.graph.callRoute",)

    routing_type: str | None = None
    original: IdentitySet | None = None
    final: IdentitySet | None = None


class CallOptions(GraphModel):
    """Options of a call (content-sharing notifications, delta roster, ...)."""

    graph_types = ("microsoft.graph.callOptions",)

    hide_bot_after_escalation: bool | None = None
    is_content_sharing_notification_enabled: bool | None = None
    is_delta_roster_enabled: bool | None = None
    is_interactive_roster_enabled: bool | None = None


class OutgoingCallOptions(CallOptions):
    """Options of a call the bot places."""

    graph_types = ("microsoft.graph.outgoingCallOptions",)
    typed_in_requests = True


class IncomingCallOptions(CallOptions):
    """Options of a call the bot answers."""

    graph_types = ("microsoft.graph.incomingCallOptions",)
    typed_in_requests = True


class CallTranscriptionInfo(GraphModel):
    """Transcription state of a call."""

    graph_types = ("microsoft.graph.callTranscriptionInfo",)

    state: str | None = None
    last_modified_date_time: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------------------------

_OPERATION_STATUS_BY_LOWER: Final[dict[str, str]] = {status.value.lower(): status.value for status in OperationStatus}


class CommsOperation(GraphModel):
    """A long-running call action; ``status`` is normalised to the lowercase form (``Running`` → ``running``)."""

    graph_types = ("microsoft.graph.commsOperation",)

    id: str | None = None
    status: str | None = None
    client_context: str | None = None
    result_info: ResultInfo | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _normalise_status(cls, value: Any) -> Any:
        if isinstance(value, str):
            return _OPERATION_STATUS_BY_LOWER.get(value.lower(), value)
        return value


class PlayPromptOperation(CommsOperation):
    """Operation of ``call: playPrompt``."""

    graph_types = ("microsoft.graph.playPromptOperation",)

    completion_reason: str | None = None


class RecordOperation(CommsOperation):
    """Operation of ``call: recordResponse``; the recording is downloaded with its access token."""

    graph_types = ("microsoft.graph.recordOperation",)

    recording_location: str | None = None
    recording_access_token: str | None = None
    completion_reason: str | None = None


class CancelMediaProcessingOperation(CommsOperation):
    """Operation of ``call: cancelMediaProcessing``."""

    graph_types = ("microsoft.graph.cancelMediaProcessingOperation",)


class SubscribeToToneOperation(CommsOperation):
    """Operation of ``call: subscribeToTone``."""

    graph_types = ("microsoft.graph.subscribeToToneOperation",)


class SendDtmfTonesOperation(CommsOperation):
    """Operation of ``call: sendDtmfTones``."""

    graph_types = ("microsoft.graph.sendDtmfTonesOperation",)

    completion_reason: str | None = None


class InviteParticipantsOperation(CommsOperation):
    """Operation of ``participants: invite``."""

    graph_types = ("microsoft.graph.inviteParticipantsOperation",)

    participants: list[InvitationParticipantInfo] | None = None


class MuteParticipantOperation(CommsOperation):
    """Operation of ``call: mute`` / ``participant: mute``."""

    graph_types = ("microsoft.graph.muteParticipantOperation",)


class UnmuteParticipantOperation(CommsOperation):
    """Operation of ``call: unmute``."""

    graph_types = ("microsoft.graph.unmuteParticipantOperation",)


class UpdateRecordingStatusOperation(CommsOperation):
    """Operation of ``call: updateRecordingStatus``."""

    graph_types = ("microsoft.graph.updateRecordingStatusOperation",)


class StartHoldMusicOperation(CommsOperation):
    """Operation of ``participant: startHoldMusic``."""

    graph_types = ("microsoft.graph.startHoldMusicOperation",)


class StopHoldMusicOperation(CommsOperation):
    """Operation of ``participant: stopHoldMusic``."""

    graph_types = ("microsoft.graph.stopHoldMusicOperation",)


class AddLargeGalleryViewOperation(CommsOperation):
    """Operation of ``call: addLargeGalleryView``."""

    graph_types = ("microsoft.graph.addLargeGalleryViewOperation",)


# --------------------------------------------------------------------------------------------------------------
# Calls
# --------------------------------------------------------------------------------------------------------------


class ContentSharingSession(GraphModel):
    """A screen-sharing session in a call."""

    graph_types = ("microsoft.graph.contentSharingSession",)

    id: str | None = None


class AudioRoutingGroup(GraphModel):
    """Audio routing between participants of a call."""

    graph_types = ("microsoft.graph.audioRoutingGroup",)

    id: str | None = None
    routing_mode: str | None = None
    sources: list[str] | None = None
    receivers: list[str] | None = None


class Call(GraphModel):
    """A call: the body of ``POST /communications/calls`` and the resource of call notifications."""

    graph_types = ("microsoft.graph.call",)
    typed_in_requests = True

    id: str | None = None
    state: str | None = None
    direction: str | None = None
    callback_uri: str | None = None
    call_chain_id: str | None = None
    subject: str | None = None
    source: ParticipantInfo | None = None
    targets: list[InvitationParticipantInfo] | None = None
    requested_modalities: list[str] | None = None
    active_modalities: list[str] | None = None
    media_config: MediaConfig | None = None
    media_state: CallMediaState | None = None
    meeting_info: MeetingInfo | None = None
    chat_info: ChatInfo | None = None
    call_options: CallOptions | None = None
    call_routes: list[CallRoute] | None = None
    incoming_context: IncomingContext | None = None
    my_participant_id: str | None = None
    tenant_id: str | None = None
    result_info: ResultInfo | None = None
    tone_info: ToneInfo | None = None
    transcription: CallTranscriptionInfo | None = None
    answered_by: ParticipantInfo | None = None
    ringing_timeout_in_seconds: int | None = None
    routing_policies: list[str] | None = None
    termination_reason: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Bodies of bound call / participant actions (no @odata.type: they are parameter lists)
# --------------------------------------------------------------------------------------------------------------


class AnswerRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/answer``."""

    callback_uri: str | None = None
    media_config: MediaConfig | None = None
    accepted_modalities: list[str] | None = None
    participant_capacity: int | None = None
    call_options: IncomingCallOptions | None = None


class RejectRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/reject``."""

    reason: str | None = None
    callback_uri: str | None = None


class RedirectRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/redirect``."""

    targets: list[InvitationParticipantInfo] | None = None
    timeout: int | None = None
    callback_uri: str | None = None


class TransferRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/transfer``."""

    transfer_target: InvitationParticipantInfo | None = None
    transferee: ParticipantInfo | None = None
    client_context: str | None = None


class PlayPromptRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/playPrompt``."""

    prompts: list[Prompt] | None = None
    client_context: str | None = None


class RecordResponseRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/recordResponse``."""

    prompts: list[Prompt] | None = None
    barge_in_allowed: bool | None = None
    initial_silence_timeout_in_seconds: int | None = None
    max_silence_timeout_in_seconds: int | None = None
    max_record_duration_in_seconds: int | None = None
    play_beep: bool | None = None
    stop_tones: list[str] | None = None
    client_context: str | None = None


class SendDtmfTonesRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/sendDtmfTones``."""

    tones: list[str] | None = None
    delay_between_tones_ms: int | None = None
    client_context: str | None = None


class SubscribeToToneRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/subscribeToTone``."""

    client_context: str | None = None


class CancelMediaProcessingRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/cancelMediaProcessing``."""

    client_context: str | None = None


class MuteRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/mute`` (and ``participants/{id}/mute``)."""

    client_context: str | None = None


class UnmuteRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/unmute``."""

    client_context: str | None = None


class ChangeScreenSharingRoleRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/changeScreenSharingRole``."""

    role: str | None = None


class UpdateRecordingStatusRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/updateRecordingStatus``."""

    status: str | None = None
    client_context: str | None = None


class AddLargeGalleryViewRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/addLargeGalleryView``."""

    client_context: str | None = None


class InviteParticipantsRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/participants/invite``."""

    participants: list[InvitationParticipantInfo] | None = None
    client_context: str | None = None


class StartHoldMusicRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/participants/{id}/startHoldMusic``."""

    custom_prompt: Prompt | None = None
    client_context: str | None = None


class StopHoldMusicRequest(GraphModel):
    """Body of ``POST /communications/calls/{id}/participants/{id}/stopHoldMusic``."""

    client_context: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Online meetings
# --------------------------------------------------------------------------------------------------------------


class JoinMeetingIdSettings(GraphModel):
    """Numeric join id and passcode of an online meeting."""

    graph_types = ("microsoft.graph.joinMeetingIdSettings",)

    join_meeting_id: str | None = None
    passcode: str | None = None
    is_passcode_required: bool | None = None


class MeetingParticipantInfo(GraphModel):
    """One organizer or attendee of an online meeting."""

    graph_types = ("microsoft.graph.meetingParticipantInfo",)

    identity: IdentitySet | None = None
    upn: str | None = None
    role: str | None = None


class MeetingParticipants(GraphModel):
    """Organizer and attendees of an online meeting."""

    graph_types = ("microsoft.graph.meetingParticipants",)

    organizer: MeetingParticipantInfo | None = None
    attendees: list[MeetingParticipantInfo] | None = None


class OnlineMeeting(GraphModel):
    """A Teams online meeting (create, createOrGet, get)."""

    graph_types = ("microsoft.graph.onlineMeeting", "microsoft.graph.onlineMeetingBase")

    id: str | None = None
    join_web_url: str | None = None
    join_meeting_id_settings: JoinMeetingIdSettings | None = None
    subject: str | None = None
    start_date_time: str | None = None
    end_date_time: str | None = None
    creation_date_time: str | None = None
    participants: MeetingParticipants | None = None
    chat_info: ChatInfo | None = None
    external_id: str | None = None
    video_teleconference_id: str | None = None
    is_broadcast: bool | None = None
    allowed_presenters: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Presence
# --------------------------------------------------------------------------------------------------------------


class OutOfOfficeSettings(GraphModel):
    """Out-of-office state shown with presence."""

    graph_types = ("microsoft.graph.outOfOfficeSettings",)

    is_out_of_office: bool | None = None
    message: str | None = None


class ItemBody(GraphModel):
    """Text or HTML content."""

    graph_types = ("microsoft.graph.itemBody",)

    content: str | None = None
    content_type: str | None = None


class DateTimeTimeZone(GraphModel):
    """A local date-time with its time zone."""

    graph_types = ("microsoft.graph.dateTimeTimeZone",)

    date_time: str | None = None
    time_zone: str | None = None


class PresenceStatusMessage(GraphModel):
    """A user's presence status message."""

    graph_types = ("microsoft.graph.presenceStatusMessage",)

    message: ItemBody | None = None
    expiry_date_time: DateTimeTimeZone | None = None
    published_date_time: str | None = None


class Presence(GraphModel):
    """A user's presence (availability and activity)."""

    graph_types = ("microsoft.graph.presence",)

    id: str | None = None
    availability: str | None = None
    activity: str | None = None
    status_message: PresenceStatusMessage | None = None
    out_of_office_settings: OutOfOfficeSettings | None = None
    sequence_number: str | None = None


# --------------------------------------------------------------------------------------------------------------
# Call records
# --------------------------------------------------------------------------------------------------------------


class CallRecordEndpoint(GraphModel):
    """Caller or callee endpoint of a call-record session or segment."""

    graph_types = (
        "microsoft.graph.callRecords.endpoint",
        "microsoft.graph.callRecords.participantEndpoint",
        "microsoft.graph.callRecords.serviceEndpoint",
    )

    name: str | None = None
    identity: IdentitySet | None = None
    associated_identity: Identity | None = None
    user_agent: dict[str, Any] | None = None
    feedback: dict[str, Any] | None = None


class CallRecordParticipant(GraphModel):
    """Organizer or participant of a call record (``organizer_v2`` / ``participants_v2``)."""

    graph_types = (
        "microsoft.graph.callRecords.participantBase",
        "microsoft.graph.callRecords.organizer",
        "microsoft.graph.callRecords.participant",
    )

    id: str | None = None
    identity: IdentitySet | None = None


class CallRecordSegment(GraphModel):
    """One segment of a call-record session, with its media quality data."""

    graph_types = ("microsoft.graph.callRecords.segment",)

    id: str | None = None
    start_date_time: str | None = None
    end_date_time: str | None = None
    caller: CallRecordEndpoint | None = None
    callee: CallRecordEndpoint | None = None
    failure_info: dict[str, Any] | None = None
    media: list[dict[str, Any]] | None = None


class CallRecordSession(GraphModel):
    """One session (pair of endpoints) of a call record."""

    graph_types = ("microsoft.graph.callRecords.session",)

    id: str | None = None
    modalities: list[str] | None = None
    start_date_time: str | None = None
    end_date_time: str | None = None
    is_test: bool | None = None
    caller: CallRecordEndpoint | None = None
    callee: CallRecordEndpoint | None = None
    failure_info: dict[str, Any] | None = None
    segments: list[CallRecordSegment] | None = None


Session = CallRecordSession


class CallRecord(GraphModel):
    """The record of a finished call (``/communications/callRecords/{id}``)."""

    # Change notifications spell it "#Microsoft.Graph.callrecord", without the callRecords namespace.
    graph_types = ("microsoft.graph.callRecords.callRecord", "microsoft.graph.callRecord")

    id: str | None = None
    version: int | None = None
    type: str | None = None
    modalities: list[str] | None = None
    last_modified_date_time: str | None = None
    start_date_time: str | None = None
    end_date_time: str | None = None
    join_web_url: str | None = None
    organizer: IdentitySet | None = None
    participants: list[IdentitySet] | None = None
    organizer_v2: CallRecordParticipant | None = Field(default=None, alias="organizer_v2")
    participants_v2: list[CallRecordParticipant] | None = Field(default=None, alias="participants_v2")
    sessions: list[CallRecordSession] | None = None


# --------------------------------------------------------------------------------------------------------------
# Subscriptions
# --------------------------------------------------------------------------------------------------------------


class Subscription(GraphModel):
    """A change-notification subscription (callRecords, presence)."""

    graph_types = ("microsoft.graph.subscription",)

    id: str | None = None
    resource: str | None = None
    change_type: str | None = None
    notification_url: str | None = None
    lifecycle_notification_url: str | None = None
    expiration_date_time: str | None = None
    client_state: str | None = None
    include_resource_data: bool | None = None
    encryption_certificate: str | None = None
    encryption_certificate_id: str | None = None
    latest_supported_tls_version: str | None = None
    application_id: str | None = None
    creator_id: str | None = None
