"""Graph models against Microsoft's documented examples and the v1.0 JSON Schemas."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from mediabot.graph.models import (
    AddLargeGalleryViewRequest,
    AnswerRequest,
    AppHostedMediaConfig,
    AudioRoutingGroup,
    Call,
    CallRecord,
    CallRecordParticipant,
    CallRecordSession,
    CallState,
    CancelMediaProcessingRequest,
    ChangeScreenSharingRoleRequest,
    ChatInfo,
    CommsOperation,
    EndpointType,
    GraphModel,
    Identity,
    IdentitySet,
    IncomingCallOptions,
    InvitationParticipantInfo,
    InviteParticipantsOperation,
    InviteParticipantsRequest,
    JoinMeetingIdMeetingInfo,
    JoinMeetingIdSettings,
    MediaConfig,
    MediaInfo,
    MediaPrompt,
    MeetingInfo,
    MeetingParticipantInfo,
    MeetingParticipants,
    Modality,
    MuteRequest,
    OnlineMeeting,
    OperationStatus,
    OrganizerMeetingInfo,
    OutgoingCallOptions,
    Participant,
    ParticipantInfo,
    PlayPromptOperation,
    PlayPromptRequest,
    Presence,
    RecordingStatus,
    RecordOperation,
    RecordResponseRequest,
    RedirectRequest,
    RejectReason,
    RejectRequest,
    ResultInfo,
    ScreenSharingRole,
    SendDtmfTonesRequest,
    ServiceHostedMediaConfig,
    Session,
    StartHoldMusicRequest,
    StopHoldMusicRequest,
    SubscribeToToneRequest,
    Subscription,
    TokenMeetingInfo,
    Tone,
    TransferRequest,
    UnmuteRequest,
    UpdateRecordingStatusRequest,
    lookup_graph_type,
    parse_graph_object,
)

SCHEMA_BASE = "https://msgraph-contract.local/schemas/v1.0/"

_ACTION_REQUESTS: dict[str, type[GraphModel]] = {
    "answer": AnswerRequest,
    "reject": RejectRequest,
    "redirect": RedirectRequest,
    "transfer": TransferRequest,
    "playprompt": PlayPromptRequest,
    "recordresponse": RecordResponseRequest,
    "microsoft.graph.senddtmftones": SendDtmfTonesRequest,
    "senddtmftones": SendDtmfTonesRequest,
    "subscribetotone": SubscribeToToneRequest,
    "cancelmediaprocessing": CancelMediaProcessingRequest,
    "mute": MuteRequest,
    "unmute": UnmuteRequest,
    "changescreensharingrole": ChangeScreenSharingRoleRequest,
    "updaterecordingstatus": UpdateRecordingStatusRequest,
    "addlargegalleryview": AddLargeGalleryViewRequest,
    "invite": InviteParticipantsRequest,
    "startholdmusic": StartHoldMusicRequest,
    "stopholdmusic": StopHoldMusicRequest,
}


# ----------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------


def _examples(contract: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((contract / "examples").glob("*.json")):
        yield path.stem, json.loads(path.read_text(encoding="utf-8"))


def _example(contract: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((contract / "examples" / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _notification(contract: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((contract / "notifications" / f"{name}.json").read_text(encoding="utf-8"))
    return data


def _default_type(path: str, body: dict[str, Any], *, request: bool) -> type[GraphModel] | None:
    """The model a client would parse this example body with, chosen by route like the brief says."""
    segments = [segment.lower() for segment in path.strip("/").split("/") if segment]
    last = segments[-1] if segments else ""
    if request and last in _ACTION_REQUESTS:
        return _ACTION_REQUESTS[last]
    if not request and "status" in body and "calls" in segments:
        return CommsOperation
    if "subscriptions" in segments:
        return Subscription
    if "callrecords" in segments:
        return CallRecordSession if "sessions" in segments else CallRecord
    if "onlinemeetings" in segments:
        return OnlineMeeting
    if "presence" in segments or "presences" in segments or "getpresencesbyuserid" in segments:
        return Presence if not request else None
    if "audioroutinggroups" in segments:
        return AudioRoutingGroup
    if "contentsharingsessions" in segments:
        return None
    if "participants" in segments:
        return Participant if not request else None
    if segments[:2] == ["communications", "calls"] and len(segments) <= 3:
        return Call
    return None


def _bodies(example: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], type[GraphModel] | None]]:
    for field, request in (("request_body", True), ("response_body", False)):
        body = example.get(field)
        if not isinstance(body, dict):
            continue
        items = body.get("value")
        if isinstance(items, list):
            for index, item in enumerate(items):
                yield f"{field}.value[{index}]", item, _default_type(example["path"], item, request=request)
            yield field, body, None
        else:
            yield field, body, _default_type(example["path"], body, request=request)


def _strip_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _strip_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_strip_none(item) for item in value]
    return value


def _normalised(value: Any, key: str = "") -> Any:
    """The documented body with nulls removed and the documented oddities in their corrected form."""
    if isinstance(value, dict):
        out = {name: _normalised(item, name) for name, item in value.items() if item is not None}
        if key == "resultInfo":
            if "subCode" in out:
                out["subcode"] = out.pop("subCode")
            for name in ("code", "subcode"):
                if isinstance(out.get(name), str):
                    out[name] = int(out[name])
        status = out.get("status")
        if "operation" in str(out.get("@odata.type", "")).lower() and isinstance(status, str):
            out["status"] = status[:1].lower() + status[1:]  # the CSDL's PascalCase "Running" → "running"
        return out
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    return value


@pytest.fixture(scope="module")
def schema_registry(graph_contract: Path) -> Registry[Any]:
    resources = []
    for path in [
        *graph_contract.glob("schemas/microsoft.graph.*.json"),
        *graph_contract.glob("schemas/actions/*.json"),
    ]:
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((contents["$id"], Resource.from_contents(contents)))
    registry: Registry[Any] = Registry().with_resources(resources)
    return registry


def _validator(registry: Registry[Any], name: str) -> Draft202012Validator:
    schema = registry.contents(SCHEMA_BASE + name)
    return Draft202012Validator(schema, registry=registry)


def _schema_errors(registry: Registry[Any], name: str, body: dict[str, Any]) -> list[str]:
    return [f"{list(error.path)}: {error.message}" for error in _validator(registry, name).iter_errors(body)]


# ----------------------------------------------------------------------------------------------------------------
# every documented example
# ----------------------------------------------------------------------------------------------------------------


def test_contract_has_the_examples(graph_contract: Path) -> None:
    assert len(list(_examples(graph_contract))) == 109


def test_every_example_body_parses_and_round_trips(graph_contract: Path) -> None:
    checked = 0
    failures: list[str] = []
    for name, example in _examples(graph_contract):
        for where, body, default in _bodies(example):
            model = parse_graph_object(body, default)
            registered = lookup_graph_type(body.get("@odata.type"))
            expected = registered or default or GraphModel
            if default is not None and registered is not None and issubclass(default, registered):
                expected = default
            if type(model) is not expected:
                failures.append(f"{name} {where}: {type(model).__name__} instead of {expected.__name__}")
            if model.to_graph() != _normalised(body):
                failures.append(f"{name} {where}: to_graph() differs from the documented body")
            checked += 1
    assert not failures, "\n".join(failures)
    assert checked > 150


def test_round_trip_keeps_unknown_fields(graph_contract: Path) -> None:
    body = _example(graph_contract, "get_callrecord_expanded")["response_body"]
    record = parse_graph_object(body, CallRecord)
    assert isinstance(record, CallRecord)
    dumped = record.to_graph()
    assert dumped["@odata.context"] == body["@odata.context"]
    assert dumped["sessions@odata.nextLink"] == body["sessions@odata.nextLink"]
    assert dumped["sessions"][0]["segments"][0]["media"][0]["streams"][0]["averageJitter"] == "PT0.016S"


# ----------------------------------------------------------------------------------------------------------------
# typed fields of specific examples
# ----------------------------------------------------------------------------------------------------------------


def test_answer_with_app_hosted_media_gives_the_blob(graph_contract: Path) -> None:
    body = _example(graph_contract, "call-answer-app-hosted-media")["request_body"]
    answer = parse_graph_object(body, AnswerRequest)
    assert isinstance(answer, AnswerRequest)
    assert isinstance(answer.media_config, AppHostedMediaConfig)
    assert answer.media_config.blob == body["mediaConfig"]["blob"]
    assert answer.accepted_modalities == [Modality.AUDIO]


def test_answer_with_service_hosted_media_gives_prefetch(graph_contract: Path) -> None:
    body = _example(graph_contract, "call-answer-service-hosted-media")["request_body"]
    answer = AnswerRequest.from_graph(body)
    assert isinstance(answer.media_config, ServiceHostedMediaConfig)


def test_join_meeting_by_id_and_passcode(graph_contract: Path) -> None:
    body = _example(graph_contract, "join-meeting-with-join-meeting-id-and-passcode")["request_body"]
    call = parse_graph_object(body, Call)
    assert isinstance(call, Call)
    assert isinstance(call.meeting_info, JoinMeetingIdMeetingInfo)
    assert call.meeting_info.join_meeting_id == body["meetingInfo"]["joinMeetingId"]
    assert call.meeting_info.passcode == body["meetingInfo"]["passcode"]
    assert isinstance(call.media_config, ServiceHostedMediaConfig)


def test_join_scheduled_meeting_gives_organizer_and_chat(graph_contract: Path) -> None:
    body = _example(graph_contract, "join-scheduled-meeting-app-hosted-media")["request_body"]
    call = Call.from_graph(body)
    assert isinstance(call.meeting_info, OrganizerMeetingInfo)
    assert call.meeting_info.organizer is not None
    assert call.meeting_info.organizer.user is not None
    assert call.meeting_info.organizer.user.id == body["meetingInfo"]["organizer"]["user"]["id"]
    # tenantId on the identity is kept as a typed field and written back.
    assert call.meeting_info.organizer.user.tenant_id == body["meetingInfo"]["organizer"]["user"]["tenantId"]
    assert isinstance(call.chat_info, ChatInfo)
    assert call.chat_info.thread_id == body["chatInfo"]["threadId"]
    assert isinstance(call.media_config, AppHostedMediaConfig)


def test_create_call_service_hosted_response(graph_contract: Path) -> None:
    example = _example(graph_contract, "create-call-service-hosted-media-1")
    request = Call.from_graph(example["request_body"])
    assert isinstance(request.call_options, OutgoingCallOptions)
    assert request.call_options.is_content_sharing_notification_enabled is True
    call = Call.from_graph(example["response_body"])
    assert call.state == CallState.ESTABLISHING
    assert isinstance(call.media_config, ServiceHostedMediaConfig)
    assert call.media_config.pre_fetch_media is not None
    assert [media.uri for media in call.media_config.pre_fetch_media] == [
        "https://cdn.contoso.com/beep.wav",
        "https://cdn.contoso.com/cool.wav",
    ]
    assert all(isinstance(media, MediaInfo) for media in call.media_config.pre_fetch_media)
    assert call.targets is not None
    assert isinstance(call.targets[0], InvitationParticipantInfo)
    assert isinstance(call.source, ParticipantInfo)
    assert call.source.identity is not None
    assert call.source.identity.application is not None
    assert call.source.identity.application.display_name == "Calling Bot"


def test_invite_response_is_typed(graph_contract: Path) -> None:
    body = _example(graph_contract, "participant-invite-1")["response_body"]
    operation = parse_graph_object(body, CommsOperation)
    assert isinstance(operation, InviteParticipantsOperation)
    assert operation.status == OperationStatus.RUNNING
    assert operation.participants is not None
    assert all(isinstance(info, InvitationParticipantInfo) for info in operation.participants)


def test_record_response_operation(graph_contract: Path) -> None:
    body = _example(graph_contract, "call-recordResponse")["response_body"]
    operation = parse_graph_object(body, CommsOperation)
    assert isinstance(operation, RecordOperation)
    assert operation.id == "0fe0623f-d628-42ed-b4bd-8ac290072cc5"
    assert operation.recording_location is None


def test_configure_mixer_base_operation_keeps_a_more_specific_default(graph_contract: Path) -> None:
    body = _example(graph_contract, "beta-participant-configureMixer")["response_body"]
    assert type(parse_graph_object(body)) is CommsOperation
    assert type(parse_graph_object(body, PlayPromptOperation)) is PlayPromptOperation


def test_get_participant(graph_contract: Path) -> None:
    body = _example(graph_contract, "get-participant")["response_body"]
    participant = parse_graph_object(body, Participant)
    assert isinstance(participant, Participant)
    assert participant.is_muted is False
    assert participant.media_streams is not None
    assert participant.media_streams[0].source_id == "1"
    assert participant.media_streams[0].server_muted is False
    assert participant.info is not None
    assert participant.info.identity is not None
    assert participant.info.identity.application is not None
    assert participant.is_removed is False


def test_call_records(graph_contract: Path) -> None:
    record = CallRecord.from_graph(_example(graph_contract, "get_callrecord_expanded")["response_body"])
    assert record.version == 1
    assert record.type == "peerToPeer"
    assert isinstance(record.organizer_v2, CallRecordParticipant)
    assert record.organizer_v2.identity is not None
    assert record.organizer_v2.identity.user is not None
    assert record.organizer_v2.identity.user.display_name == "Abbie Wilkins"
    assert record.sessions is not None
    assert record.sessions[0].segments is not None
    assert record.sessions[0].callee is not None
    assert record.sessions[0].callee.feedback == {"rating": "poor"}
    assert Session is CallRecordSession


def test_online_meeting_with_passcode(graph_contract: Path) -> None:
    example = _example(graph_contract, "create-online-meeting-with-passcode")
    meeting = OnlineMeeting.from_graph(example["response_body"])
    assert isinstance(meeting.join_meeting_id_settings, JoinMeetingIdSettings)
    assert meeting.join_meeting_id_settings.is_passcode_required is True
    assert meeting.join_web_url is not None
    assert meeting.join_web_url.startswith("https://teams.microsoft.com/")
    assert isinstance(meeting.chat_info, ChatInfo)


def test_presence_and_status_message(graph_contract: Path) -> None:
    body = _example(graph_contract, "setstatusmessage-another-user-get-presence")["response_body"]
    presence = parse_graph_object(body, Presence)
    assert isinstance(presence, Presence)
    assert presence.availability == "Available"
    assert presence.status_message is not None
    assert presence.status_message.message is not None
    assert presence.status_message.message.content == "Hey I am available now"
    assert presence.out_of_office_settings is not None
    assert presence.out_of_office_settings.is_out_of_office is False


def test_subscription(graph_contract: Path) -> None:
    body = _example(graph_contract, "subscription-callrecords-concept")["request_body"]
    subscription = Subscription.from_graph(body)
    assert subscription.resource == "/communications/callRecords"
    assert subscription.change_type == "created,updated"
    assert subscription.lifecycle_notification_url == body["lifecycleNotificationUrl"]


# ----------------------------------------------------------------------------------------------------------------
# the documented oddities
# ----------------------------------------------------------------------------------------------------------------


def test_result_info_codes_given_as_strings(graph_contract: Path) -> None:
    body = _notification(graph_contract, "call-delete-terminated")["body"]["value"][0]["resourceData"]
    call = Call.from_graph(body)
    assert call.result_info is not None
    assert call.result_info.code == 200
    assert call.result_info.subcode == 5001
    assert call.to_graph()["resultInfo"] == {
        "@odata.type": "#microsoft.graph.resultInfo",
        "code": 200,
        "subcode": 5001,
        "message": "The conversation has ended.",
    }


def test_result_info_subcode_spelled_subCode(graph_contract: Path) -> None:
    body = _notification(graph_contract, "call-transfer-ex1-transfer-failed")["body"]["value"][0]["resourceData"]
    call = Call.from_graph(body)
    assert call.result_info is not None
    assert (call.result_info.code, call.result_info.subcode) == (500, 7000)
    assert ResultInfo(code=1, subcode=2).to_graph() == {"code": 1, "subcode": 2}


@pytest.mark.parametrize(
    ("sent", "expected"),
    [("Running", "running"), ("NotStarted", "notStarted"), ("COMPLETED", "completed"), ("failed", "failed")],
)
def test_operation_status_casing_is_normalised(sent: str, expected: str) -> None:
    assert CommsOperation.from_graph({"status": sent}).status == expected


def test_unknown_operation_status_is_kept() -> None:
    assert CommsOperation.from_graph({"status": "paused"}).status == "paused"


def test_odata_type_is_case_insensitive() -> None:
    assert lookup_graph_type("#Microsoft.Graph.callrecord") is CallRecord
    assert lookup_graph_type("microsoft.graph.APPHOSTEDMEDIACONFIG") is AppHostedMediaConfig
    assert lookup_graph_type("#microsoft.graph.nothingLikeThis") is None
    assert lookup_graph_type(42) is None
    call = Call.from_graph({"mediaConfig": {"@odata.type": "#Microsoft.Graph.ServiceHostedMediaConfig"}})
    assert isinstance(call.media_config, ServiceHostedMediaConfig)
    # the wire spelling is kept
    assert call.to_graph() == {"mediaConfig": {"@odata.type": "#Microsoft.Graph.ServiceHostedMediaConfig"}}


def test_identity_extras_are_kept() -> None:
    body = {"user": {"id": "u", "identityProvider": "AAD", "tenantId": "t", "someFutureField": {"a": 1}}}
    identities = IdentitySet.from_graph(body)
    assert identities.user is not None
    assert identities.user.identity_provider == "AAD"
    assert identities.user.model_extra == {"someFutureField": {"a": 1}}
    assert identities.to_graph() == body


def test_polymorphic_field_without_odata_type_stays_the_declared_base() -> None:
    call = Call.from_graph({"mediaConfig": {"blob": "x"}, "meetingInfo": {"token": "t"}})
    assert type(call.media_config) is MediaConfig
    assert type(call.meeting_info) is MeetingInfo
    assert call.to_graph() == {"mediaConfig": {"blob": "x"}, "meetingInfo": {"token": "t"}}


def test_unrelated_odata_type_does_not_hijack_a_field() -> None:
    call = Call.from_graph({"mediaConfig": {"@odata.type": "#microsoft.graph.call", "blob": "x"}})
    assert type(call.media_config) is MediaConfig


def test_participant_info_can_be_an_invitation() -> None:
    participant = Participant.from_graph(
        {"info": {"@odata.type": "#microsoft.graph.invitationParticipantInfo", "replacesCallId": "c"}}
    )
    assert isinstance(participant.info, InvitationParticipantInfo)
    assert participant.info.replaces_call_id == "c"


def test_parse_graph_object_without_type_or_default_is_open() -> None:
    model = parse_graph_object({"anything": [1, {"b": None}]})
    assert type(model) is GraphModel
    assert model.to_graph() == {"anything": [1, {}]}


def test_parse_graph_object_refuses_non_objects() -> None:
    with pytest.raises(TypeError):
        parse_graph_object([1, 2])  # type: ignore[arg-type]


def test_numbers_are_tolerated_in_string_fields() -> None:
    assert Call.from_graph({"state": 3}).state == "3"


# ----------------------------------------------------------------------------------------------------------------
# building request bodies in Python
# ----------------------------------------------------------------------------------------------------------------


def test_built_models_carry_the_request_odata_type() -> None:
    assert AppHostedMediaConfig(blob="b").to_graph() == {
        "@odata.type": "#microsoft.graph.appHostedMediaConfig",
        "blob": "b",
    }
    assert MediaPrompt(media_info=MediaInfo(uri="https://x/a.wav")).to_graph() == {
        "@odata.type": "#microsoft.graph.mediaPrompt",
        "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": "https://x/a.wav"},
    }
    assert ChatInfo(thread_id="t").to_graph()["@odata.type"] == "#microsoft.graph.chatInfo"
    # a parsed body keeps exactly what was sent
    assert AppHostedMediaConfig.from_graph({"blob": "b"}).to_graph() == {"blob": "b"}
    # response-only types get no @odata.type when built
    assert CommsOperation(id="1").to_graph() == {"id": "1"}


def test_built_request_bodies_have_no_nulls() -> None:
    body = AnswerRequest(callback_uri="https://bot/cb", media_config=ServiceHostedMediaConfig()).to_graph()
    assert body == {
        "callbackUri": "https://bot/cb",
        "mediaConfig": {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"},
    }


def _user(user_id: str) -> IdentitySet:
    return IdentitySet(user=Identity(id=user_id, display_name="Someone"))


def _built_bodies() -> list[tuple[str, GraphModel]]:
    prompt = MediaPrompt(media_info=MediaInfo(uri="https://bot.contoso.com/hello.wav", resource_id="r1"))
    target = InvitationParticipantInfo(identity=_user("u1"))
    return [
        (
            "microsoft.graph.call.json",
            Call(
                callback_uri="https://bot.contoso.com/callback",
                source=ParticipantInfo(identity=IdentitySet(application=Identity(id="app"))),
                targets=[target],
                requested_modalities=[Modality.AUDIO],
                media_config=AppHostedMediaConfig(blob="eyJ2IjoxfQ"),
                call_options=OutgoingCallOptions(is_content_sharing_notification_enabled=True),
            ),
        ),
        (
            "microsoft.graph.call.json",
            Call(
                callback_uri="https://bot.contoso.com/callback",
                requested_modalities=[Modality.AUDIO],
                media_config=ServiceHostedMediaConfig(pre_fetch_media=[MediaInfo(uri="https://x/a.wav")]),
                chat_info=ChatInfo(thread_id="19:meeting@thread.v2", message_id="0"),
                meeting_info=OrganizerMeetingInfo(organizer=_user("organizer")),
                tenant_id="tenant",
            ),
        ),
        (
            "microsoft.graph.call.json",
            Call(
                callback_uri="https://bot.contoso.com/callback",
                requested_modalities=[Modality.AUDIO],
                media_config=ServiceHostedMediaConfig(),
                meeting_info=JoinMeetingIdMeetingInfo(join_meeting_id="1234567", passcode="abc"),
            ),
        ),
        (
            "microsoft.graph.call.json",
            Call(
                callback_uri="https://b/cb",
                media_config=AppHostedMediaConfig(),
                meeting_info=TokenMeetingInfo(token="t"),
            ),
        ),
        (
            "actions/call.answer.json",
            AnswerRequest(
                callback_uri="https://bot.contoso.com/callback",
                media_config=AppHostedMediaConfig(blob="eyJ2IjoxfQ"),
                accepted_modalities=[Modality.AUDIO],
                participant_capacity=200,
                call_options=IncomingCallOptions(is_content_sharing_notification_enabled=True),
            ),
        ),
        ("actions/call.reject.json", RejectRequest(reason=RejectReason.BUSY)),
        ("actions/call.redirect.json", RedirectRequest(targets=[target], callback_uri="https://b/cb", timeout=30)),
        (
            "actions/call.transfer.json",
            TransferRequest(
                transfer_target=InvitationParticipantInfo(identity=_user("u2"), endpoint_type=EndpointType.DEFAULT),
                transferee=ParticipantInfo(identity=_user("u3"), participant_id="p"),
            ),
        ),
        ("actions/call.playPrompt.json", PlayPromptRequest(prompts=[prompt], client_context="ctx")),
        (
            "actions/call.recordResponse.json",
            RecordResponseRequest(
                prompts=[prompt],
                barge_in_allowed=True,
                max_record_duration_in_seconds=10,
                initial_silence_timeout_in_seconds=5,
                max_silence_timeout_in_seconds=2,
                play_beep=True,
                stop_tones=["#"],
                client_context="ctx",
            ),
        ),
        (
            "actions/call.sendDtmfTones.json",
            SendDtmfTonesRequest(tones=[Tone.TONE1, Tone.POUND], delay_between_tones_ms=300, client_context="c"),
        ),
        ("actions/call.subscribeToTone.json", SubscribeToToneRequest(client_context="c")),
        ("actions/call.cancelMediaProcessing.json", CancelMediaProcessingRequest(client_context="c")),
        ("actions/call.mute.json", MuteRequest(client_context="c")),
        ("actions/call.unmute.json", UnmuteRequest(client_context="c")),
        ("actions/call.changeScreenSharingRole.json", ChangeScreenSharingRoleRequest(role=ScreenSharingRole.VIEWER)),
        (
            "actions/call.updateRecordingStatus.json",
            UpdateRecordingStatusRequest(status=RecordingStatus.RECORDING, client_context="c"),
        ),
        ("actions/call.addLargeGalleryView.json", AddLargeGalleryViewRequest(client_context="c")),
        ("actions/participants.invite.json", InviteParticipantsRequest(participants=[target], client_context="c")),
        ("actions/participant.startHoldMusic.json", StartHoldMusicRequest(custom_prompt=prompt, client_context="c")),
        ("actions/participant.stopHoldMusic.json", StopHoldMusicRequest(client_context="c")),
        (
            "microsoft.graph.onlineMeeting.json",
            OnlineMeeting(
                subject="Standup",
                start_date_time="2026-01-01T10:00:00Z",
                end_date_time="2026-01-01T10:30:00Z",
                external_id="ext-1",
                join_meeting_id_settings=JoinMeetingIdSettings(is_passcode_required=True),
                participants=MeetingParticipants(attendees=[MeetingParticipantInfo(identity=_user("a"), upn="a@x")]),
            ),
        ),
        (
            "microsoft.graph.subscription.json",
            Subscription(
                change_type="created",
                notification_url="https://bot.contoso.com/api/notifications",
                lifecycle_notification_url="https://bot.contoso.com/api/lifecycle",
                resource="/communications/callRecords",
                expiration_date_time="2026-01-03T00:00:00Z",
                client_state="secret",
            ),
        ),
    ]


@pytest.mark.parametrize(("schema", "model"), _built_bodies(), ids=lambda value: getattr(value, "__name__", None))
def test_built_request_bodies_validate_against_the_schemas(
    schema_registry: Registry[Any], schema: str, model: GraphModel
) -> None:
    body = model.to_graph()
    assert _schema_errors(schema_registry, schema, body) == []
    # and parsing the body we built gives the same body back
    assert type(model).from_graph(body).to_graph() == body


def test_schema_validation_can_fail(schema_registry: Registry[Any]) -> None:
    # proves the schema check above is not vacuous
    assert _schema_errors(schema_registry, "actions/call.answer.json", AnswerRequest(callback_uri="x").to_graph())
    assert _schema_errors(schema_registry, "actions/call.reject.json", {"reason": "tired"})
    assert _schema_errors(schema_registry, "microsoft.graph.resultInfo.json", {"code": "200"})
    assert not _schema_errors(
        schema_registry, "microsoft.graph.resultInfo.json", ResultInfo.from_graph({"code": "200"}).to_graph()
    )


# ----------------------------------------------------------------------------------------------------------------
# constants agree with the CSDL enums
# ----------------------------------------------------------------------------------------------------------------


def _schema_enum(contract: Path, name: str) -> list[str]:
    schema = json.loads((contract / "schemas" / f"microsoft.graph.{name}.json").read_text(encoding="utf-8"))
    values: list[str] = schema["enum"]
    return values


@pytest.mark.parametrize(
    ("constants", "schema"),
    [
        (Modality, "modality"),
        (RejectReason, "rejectReason"),
        (Tone, "tone"),
        (ScreenSharingRole, "screenSharingRole"),
        (RecordingStatus, "recordingStatus"),
        (EndpointType, "endpointType"),
    ],
)
def test_constants_match_schema_enums(graph_contract: Path, constants: type[StrEnum], schema: str) -> None:
    assert [member.value for member in constants] == _schema_enum(graph_contract, schema)


def test_call_state_and_operation_status_constants(graph_contract: Path) -> None:
    # "ringing" is beta-only; everything v1.0 has is there too.
    assert set(_schema_enum(graph_contract, "callState")) | {"ringing"} == {state.value for state in CallState}
    statuses = _schema_enum(graph_contract, "operationStatus")
    assert [status.lower() for status in statuses] == [status.value.lower() for status in OperationStatus]
