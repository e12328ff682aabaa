"""Notification parsing against every documented callback and webhook payload, plus malformed and random input."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediabot import NotificationError
from mediabot.graph.models import (
    Call,
    CallRecord,
    CallState,
    CommsOperation,
    InvitationParticipantInfo,
    InviteParticipantsOperation,
    OperationStatus,
    Participant,
    PlayPromptOperation,
    Presence,
    RecordOperation,
    SendDtmfTonesOperation,
    StartHoldMusicOperation,
    Tone,
    parse_graph_object,
)
from mediabot.graph.notifications import (
    CallTerminated,
    CallUpdated,
    ChangeNotification,
    CommsEvent,
    ContentSharingUpdated,
    OperationUpdated,
    RosterUpdated,
    ToneReceived,
    UnknownNotification,
    is_graph_id,
    normalize_resource_path,
    parse_change_notification_collection,
    parse_change_notifications,
    parse_comms_notifications,
)


def _files(contract: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((contract / "notifications").glob("*.json")):
        yield path.stem, json.loads(path.read_text(encoding="utf-8"))


def _body(contract: Path, name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((contract / "notifications" / f"{name}.json").read_text(encoding="utf-8"))["body"]
    return body


def _one(contract: Path, name: str) -> CommsEvent:
    events = parse_comms_notifications(json.dumps(_body(contract, name)).encode())
    assert len(events) == 1
    return events[0]


# ----------------------------------------------------------------------------------------------------------------
# every documented payload
# ----------------------------------------------------------------------------------------------------------------


def test_every_documented_payload_parses_into_typed_values(graph_contract: Path) -> None:
    counts = {"comms": 0, "change": 0, "decrypted": 0}
    for name, document in _files(graph_contract):
        body = document["body"]
        kind = document["kind"]
        if kind.startswith("commsNotifications"):
            events = parse_comms_notifications(json.dumps(body).encode("utf-8"))
            assert len(events) == len(body["value"]), name
            for event, item in zip(events, body["value"], strict=True):
                assert type(event) is not UnknownNotification, name
                assert isinstance(event, CommsEvent)
                assert event.call_id, name
                assert event.resource_url.startswith(f"/communications/calls/{event.call_id}"), name
                assert event.change_type == item["changeType"]
                assert event.raw == item
            counts["comms"] += 1
        elif kind.startswith("changeNotificationCollection"):
            notifications = parse_change_notifications(body)
            assert len(notifications) == len(body["value"]) > 0
            assert all(isinstance(notification, ChangeNotification) for notification in notifications)
            assert all(notification.subscription_id for notification in notifications)
            counts["change"] += 1
        else:
            assert isinstance(parse_graph_object(body), Presence), name
            counts["decrypted"] += 1
    assert counts == {"comms": 96, "change": 3, "decrypted": 1}


def test_events_agree_with_the_contract_summaries(graph_contract: Path) -> None:
    """The contract's derived ``summary`` (state, operation status) matches what the events carry."""
    checked = 0
    for name, document in _files(graph_contract):
        if not document["kind"].startswith("commsNotifications"):
            continue
        events = parse_comms_notifications(document["body"])
        for event, summary in zip(events, document["summary"], strict=True):
            if "state" in summary:
                assert isinstance(event, CallUpdated | CallTerminated), name
                assert event.call.state == summary["state"], name
                checked += 1
            if "operation_status" in summary:
                assert isinstance(event, OperationUpdated), name
                assert event.operation.status == summary["operation_status"], name
                checked += 1
    assert checked > 70


# ----------------------------------------------------------------------------------------------------------------
# documented flows, one by one
# ----------------------------------------------------------------------------------------------------------------


def test_incoming_call(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-answer-ex1-incoming")
    assert type(event) is CallUpdated
    assert event.change_type == "created"
    assert event.call.state == CallState.INCOMING
    assert event.state == CallState.INCOMING
    assert event.call_id == "57DAB8B1894C409AB240BD8BEAE78896"
    assert event.call.source is not None


def test_policy_based_recording_incoming_mixed_shape(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-answer-ex3-incoming-policy-based-recording")
    assert isinstance(event, CallUpdated)
    assert event.resource_url == "/communications/calls/e71f0300-9c1f-4d99-b5f4-2722e877d497"
    assert event.call.incoming_context is not None
    assert event.call.incoming_context.observed_participant_id == "30fad2ce-8989-41a1-8a66-f6636e629a2a"
    # botData is not modelled and stays available as sent
    assert event.call.model_extra is not None
    assert event.call.model_extra["applicationMetadata"]["botData"]["policyIdentifier"] == "Test Policy"


def test_legacy_beta_app_calls(graph_contract: Path) -> None:
    body = _body(graph_contract, "beta-legacy-app-calls-incoming")
    assert "@odata.type" not in body
    assert "resourceUrl" not in body["value"][0]
    [event] = parse_comms_notifications(body)
    assert type(event) is CallUpdated
    assert event.call_id == "57DAB8B1894C409AB240BD8BEAE78896"
    assert event.resource_url == "/communications/calls/57DAB8B1894C409AB240BD8BEAE78896"
    assert event.call.state == CallState.INCOMING


def test_call_terminated_with_string_codes(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-delete-terminated")
    assert isinstance(event, CallTerminated)
    assert event.result_info is not None
    assert (event.result_info.code, event.result_info.subcode) == (200, 5001)
    assert event.result_info.message == "The conversation has ended."


def test_terminating_is_still_an_update(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-delete-terminating")
    assert type(event) is CallUpdated
    assert event.call.state == CallState.TERMINATING


def test_deleted_call_without_state_is_terminated(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-reject-ex2-deleted")
    assert isinstance(event, CallTerminated)


def test_transfer_failed_is_an_update_with_result(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-transfer-ex1-transfer-failed")
    assert type(event) is CallUpdated
    assert event.call.state == CallState.ESTABLISHED
    assert event.call.result_info is not None
    assert (event.call.result_info.code, event.call.result_info.subcode) == (500, 7000)


def test_transfer_accepted_and_completed(graph_contract: Path) -> None:
    accepted = _one(graph_contract, "call-transfer-ex1-transfer-accepted")
    assert isinstance(accepted, CallUpdated)
    assert accepted.call.state == CallState.TRANSFER_ACCEPTED
    assert isinstance(_one(graph_contract, "call-transfer-ex1-transfer-completed"), CallTerminated)


def test_play_prompt_completed(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-playprompt-operation-completed")
    assert isinstance(event, OperationUpdated)
    assert isinstance(event.operation, PlayPromptOperation)
    assert event.operation.status == OperationStatus.COMPLETED
    assert event.operation_id == "0FE0623FD62842EDB4BD8AC290072CC5"
    assert event.change_type == "deleted"


def test_record_response_completed_has_the_recording(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-recordresponse-operation-completed")
    assert isinstance(event, OperationUpdated)
    assert isinstance(event.operation, RecordOperation)
    assert event.operation.recording_location
    assert event.operation.recording_access_token


def test_send_dtmf_error_keeps_completion_reason(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-senddtmftones-completed-error1")
    assert isinstance(event, OperationUpdated)
    assert isinstance(event.operation, SendDtmfTonesOperation)
    assert event.operation.completion_reason == "mediaOperationCanceled"


def test_configure_mixer_base_operation(graph_contract: Path) -> None:
    event = _one(graph_contract, "beta-participant-configuremixer-operation-completed")
    assert isinstance(event, OperationUpdated)
    assert type(event.operation) is CommsOperation


def test_start_hold_music_resource_without_leading_slash(graph_contract: Path) -> None:
    body = _body(graph_contract, "participant-startholdmusic-operation-completed")
    assert not body["value"][0]["resourceUrl"].startswith("/")
    [event] = parse_comms_notifications(body)
    assert isinstance(event, OperationUpdated)
    assert isinstance(event.operation, StartHoldMusicOperation)
    assert event.call_id == "e141b67c-90fd-455d-858b-b48a40b9cc8d"
    assert event.resource_url.startswith("/communications/calls/e141b67c-90fd-455d-858b-b48a40b9cc8d/operations/")


def test_subscribe_to_tone_gives_tone_received(graph_contract: Path) -> None:
    event = _one(graph_contract, "call-subscribetotone-tone-received")
    assert type(event) is ToneReceived
    assert isinstance(event, CallUpdated)  # state tracking still sees it
    assert event.tone.tone == Tone.TONE1
    assert event.tone.sequence_id == 1
    assert event.call.state == CallState.ESTABLISHED


def test_roster_update(graph_contract: Path) -> None:
    event = _one(graph_contract, "join-meeting-ex5-roster")
    assert isinstance(event, RosterUpdated)
    assert len(event.participants) == 2
    assert all(isinstance(participant, Participant) for participant in event.participants)
    assert all(participant.id for participant in event.participants)
    assert event.removed == []
    assert event.present == event.participants


def test_large_gallery_roster(graph_contract: Path) -> None:
    event = _one(graph_contract, "roster-with-large-gallery-view")
    assert isinstance(event, RosterUpdated)
    assert len(event.participants) == 6


def test_invite_roster_under_operations_path_is_typed_by_odata_type(graph_contract: Path) -> None:
    event = _one(graph_contract, "participant-invite-n4-roster-updated-with-participants-added")
    assert isinstance(event, RosterUpdated)
    assert len(event.participants) == 2
    assert isinstance(event.participants[0].info, InvitationParticipantInfo)
    completed = _one(graph_contract, "participant-invite-n3-operation-completed")
    assert isinstance(completed, OperationUpdated)
    assert isinstance(completed.operation, InviteParticipantsOperation)
    assert completed.operation.participants is not None
    assert len(completed.operation.participants) == 2


def test_content_sharing_with_and_without_resource_data(graph_contract: Path) -> None:
    started = _one(graph_contract, "create-call-ex1-contentsharing-started")
    assert isinstance(started, ContentSharingUpdated)
    assert [session.id for session in started.sessions] == [
        "F7D9EF30FF0A9BD3F64B274387FB8FF8E96B6CFBA8F87F8305A74DE99AF007BC"
    ]
    ended = _one(graph_contract, "call-answer-ex2-contentsharing-ended")
    assert isinstance(ended, ContentSharingUpdated)
    assert ended.change_type == "deleted"
    assert [session.id for session in ended.sessions] == ["2765eb15-01f8-47c6-b12b-c32111a4a86f"]


def test_call_records_change_notification(graph_contract: Path) -> None:
    [notification] = parse_change_notifications(_body(graph_contract, "callrecords-change-notification"))
    assert notification.change_type == "created"
    assert notification.client_state == "{Secret client state}"
    assert notification.resource == "communications/callRecords/{Call id}"
    assert isinstance(notification.resource_data, CallRecord)  # "#Microsoft.Graph.callrecord"
    assert notification.resource_data.id == "{Call id}"


def test_presence_change_notification_with_encrypted_content(graph_contract: Path) -> None:
    collection = parse_change_notification_collection(
        json.dumps(_body(graph_contract, "presence-change-notification-with-resource-data"))
    )
    assert collection.validation_tokens == ["{Validation Tokens}"]
    [notification] = collection.value
    assert isinstance(notification.resource_data, Presence)
    assert notification.encrypted_content is not None
    assert notification.encrypted_content.data_key == "{Encrypted data key for encrypting content}"
    assert notification.tenant_id == "{Organization/Tenant id}"


def test_lifecycle_notification() -> None:
    body = {
        "value": [
            {
                "lifecycleEvent": "reauthorizationRequired",
                "subscriptionId": "sub",
                "subscriptionExpirationDateTime": "2026-01-01T00:00:00Z",
                "clientState": "secret",
            }
        ]
    }
    [notification] = parse_change_notifications(body)
    assert notification.lifecycle_event == "reauthorizationRequired"
    assert notification.resource is None


# ----------------------------------------------------------------------------------------------------------------
# rules that the contract does not exercise
# ----------------------------------------------------------------------------------------------------------------


def _comms(*items: dict[str, Any]) -> dict[str, Any]:
    return {"@odata.type": "#microsoft.graph.commsNotifications", "value": list(items)}


def test_removed_participants() -> None:
    body = _comms(
        {
            "changeType": "updated",
            "resourceUrl": "/communications/calls/c1/participants",
            "resourceData": [
                {"@odata.type": "#microsoft.graph.participant", "id": "p1"},
                {"@odata.type": "#microsoft.graph.participant", "id": "p2", "removedState": {"reason": "left"}},
            ],
        },
        {"changeType": "deleted", "resourceUrl": "/communications/calls/c1/participants/p3"},
    )
    delta, deleted = parse_comms_notifications(body)
    assert isinstance(delta, RosterUpdated)
    assert [participant.id for participant in delta.removed] == ["p2"]
    assert [participant.id for participant in delta.present] == ["p1"]
    assert isinstance(deleted, RosterUpdated)
    assert [participant.id for participant in deleted.removed] == ["p3"]


def test_unknown_resources_are_kept() -> None:
    body = _comms(
        {
            "changeType": "updated",
            "resourceUrl": "/communications/calls/c1/audioRoutingGroups/g",
            "resourceData": {"x": 1},
        },
        {"changeType": "updated", "resourceUrl": "/communications/somethingElse/7", "resourceData": [1, 2]},
        {
            "changeType": "created",
            "resourceUrl": "/communications/calls/c1",
            "resourceData": {"@odata.type": "#microsoft.graph.presence"},
        },
    )
    in_call, outside, odd_type = parse_comms_notifications(body)
    assert isinstance(in_call, UnknownNotification)
    assert in_call.call_id == "c1"
    assert in_call.resource_data == {"x": 1}
    assert isinstance(outside, UnknownNotification)
    assert outside.call_id == ""
    assert outside.resource_data == [1, 2]
    assert isinstance(odd_type, UnknownNotification)


def test_operation_without_odata_type_is_found_by_path() -> None:
    body = _comms(
        {
            "changeType": "deleted",
            "resourceUrl": "/communications/calls/c1/operations/o1",
            "resourceData": {"status": "Completed", "clientContext": "ctx"},
        }
    )
    [event] = parse_comms_notifications(body)
    assert isinstance(event, OperationUpdated)
    assert event.operation_id == "o1"
    assert event.operation.status == OperationStatus.COMPLETED


def test_call_without_resource_data_is_found_by_path() -> None:
    [event] = parse_comms_notifications(_comms({"changeType": "updated", "resourceUrl": "/communications/calls/c9"}))
    assert type(event) is CallUpdated
    assert isinstance(event.call, Call)
    assert event.call.state is None


@pytest.mark.parametrize(
    ("resource", "normalised"),
    [
        ("/communications/calls/abc", "/communications/calls/abc"),
        ("communications/calls/abc/operations/o", "/communications/calls/abc/operations/o"),
        ("/app/calls/ABC/participants", "/communications/calls/ABC/participants"),
        ("/APP/Calls/ABC", "/communications/calls/ABC"),
        ("https://graph.microsoft.com/v1.0/communications/calls/abc", "/communications/calls/abc"),
        ("/beta/app/calls/abc", "/communications/calls/abc"),
        ("  /communications//calls/abc/ ", "/communications/calls/abc"),
        ("http://[broken/communications/calls/abc", "/http:/[broken/communications/calls/abc"),
    ],
)
def test_normalize_resource_path(resource: str, normalised: str) -> None:
    assert normalize_resource_path(resource) == normalised


def test_payload_forms_are_equivalent(graph_contract: Path) -> None:
    body = _body(graph_contract, "call-answer-ex1-incoming")
    text = json.dumps(body)
    from_mapping = parse_comms_notifications(body)
    assert parse_comms_notifications(text) == from_mapping
    assert parse_comms_notifications(text.encode()) == from_mapping
    assert parse_comms_notifications(b"\xef\xbb\xbf" + text.encode()) == from_mapping


# ----------------------------------------------------------------------------------------------------------------
# malformed input
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid UTF-8"),
        ("", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("null", "must be a JSON object"),
        ({}, "no 'value' list"),
        ({"value": {"a": 1}}, "no 'value' list"),
        ({"value": [1]}, "value[0] is not an object"),
        ({"value": [{"changeType": "created"}]}, "no resourceUrl or resource"),
        ({"value": [{"changeType": "created", "resourceUrl": "  "}]}, "no resourceUrl or resource"),
        ({"value": [{"changeType": "created", "resourceUrl": 5}]}, "no resourceUrl or resource"),
        ({"value": [{"resourceUrl": "/communications/calls/c"}]}, "no changeType"),
        (
            {
                "value": [
                    {"changeType": "updated", "resourceUrl": "/communications/calls/c", "resourceData": {"state": {}}}
                ]
            },
            "malformed resourceData",
        ),
        (
            {
                "value": [
                    {
                        "changeType": "updated",
                        "resourceUrl": "/communications/calls/c/participants",
                        "resourceData": [{"isMuted": "perhaps"}],
                    }
                ]
            },
            "malformed resourceData",
        ),
    ],
)
def test_malformed_comms_notifications(payload: Any, message: str) -> None:
    with pytest.raises(NotificationError, match=re.escape(message)):
        parse_comms_notifications(payload)


def test_wrong_payload_type() -> None:
    with pytest.raises(NotificationError, match="bytes, str or a mapping"):
        parse_comms_notifications(42)  # type: ignore[arg-type]


def test_deep_nesting_is_a_notification_error() -> None:
    with pytest.raises(NotificationError):
        parse_comms_notifications("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x80", "not valid UTF-8"),
        ({"validationTokens": []}, "no 'value' list"),
        ({"value": ["x"]}, "is not an object"),
        ({"value": [{"changeType": "created"}]}, "no subscriptionId"),
        ({"value": [{"subscriptionId": "s", "encryptedContent": "nope"}]}, "malformed change notification"),
        ({"value": [{"subscriptionId": "s"}], "validationTokens": "one"}, "malformed change notification"),
    ],
)
def test_malformed_change_notifications(payload: Any, message: str) -> None:
    with pytest.raises(NotificationError, match=re.escape(message)):
        parse_change_notifications(payload)


# ----------------------------------------------------------------------------------------------------------------
# random input: a NotificationError or a result, never anything else
# ----------------------------------------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        "value",
        "changeType",
        "resource",
        "resourceUrl",
        "resourceData",
        "@odata.type",
        "state",
        "status",
        "toneInfo",
        "resultInfo",
        "code",
        "subCode",
        "id",
        "info",
        "mediaStreams",
        "removedState",
        "participants",
        "subscriptionId",
        "encryptedContent",
        "validationTokens",
        "mediaConfig",
        "identity",
        "user",
    ]
)
_STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "/communications/calls/c1",
            "/app/calls/c1/participants",
            "communications/calls/c1/operations/o1",
            "/communications/calls/c1/contentsharingsessions/s",
            "https://graph.microsoft.com/beta/app/calls/c1",
            "http://[broken/communications/calls/c1",
            "#microsoft.graph.call",
            "#microsoft.graph.participant",
            "#microsoft.graph.playPromptOperation",
            "#Microsoft.Graph.callrecord",
            "#microsoft.graph.appHostedMediaConfig",
            "#microsoft.graph.contentSharingSession",
            "#microsoft.graph.presence",
            "created",
            "updated",
            "deleted",
            "terminated",
            "Running",
            "200",
        ]
    ),
)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _STRINGS)
_JSON = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_KEYS, st.text(max_size=6)), children, max_size=5),
    ),
    max_leaves=40,
)
_ITEM = st.dictionaries(_KEYS, _JSON, max_size=6)
_TYPED_OBJECT = st.fixed_dictionaries(
    {"@odata.type": _STRINGS}, optional={"state": _JSON, "status": _JSON, "id": _JSON}
)
_RESOURCE_DATA = st.one_of(_JSON, _ITEM, _TYPED_OBJECT, st.lists(st.one_of(_TYPED_OBJECT, _ITEM), max_size=3))
# Items that pass the envelope checks, so the fuzz reaches event building and model validation.
_PLAUSIBLE_ITEM = st.fixed_dictionaries(
    {"changeType": _STRINGS, "resourceUrl": _STRINGS},
    optional={"resource": _STRINGS, "resourceData": _RESOURCE_DATA, "subscriptionId": _STRINGS},
)
_NEAR_VALID = st.fixed_dictionaries({"value": st.lists(st.one_of(_PLAUSIBLE_ITEM, _ITEM, _JSON), max_size=4)})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(_JSON, _NEAR_VALID))
def test_fuzz_comms_notifications_mapping(payload: Any) -> None:
    try:
        events = parse_comms_notifications(payload)
    except NotificationError:
        return
    assert all(isinstance(event, CommsEvent) for event in events)


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=200), _JSON.map(lambda value: json.dumps(value).encode()), st.text()))
def test_fuzz_comms_notifications_bytes(payload: bytes | str) -> None:
    with contextlib.suppress(NotificationError):
        parse_comms_notifications(payload)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(_JSON, _NEAR_VALID, st.binary(max_size=100)))
def test_fuzz_change_notifications(payload: Any) -> None:
    try:
        notifications = parse_change_notifications(payload)
    except NotificationError:
        return
    assert all(isinstance(notification, ChangeNotification) for notification in notifications)


# -- found by fuzzing the service (tests/service/test_fuzz.py) --------------------------------------------------------


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\uDBFF x", "\\ud83d\\u0041"])
def test_an_unpaired_surrogate_escape_is_a_notification_error(escape: str) -> None:
    # json.loads turns it into a str that no UTF-8 encoder takes: it used to reach Graph URLs, logs and responses.
    comms = '{"value": [{"changeType": "updated", "resourceUrl": "/communications/calls/' + escape + '"}]}'
    with pytest.raises(NotificationError, match="surrogate"):
        parse_comms_notifications(comms.encode())
    change = '{"value": [{"subscriptionId": "s", "clientState": "' + escape + '"}]}'
    with pytest.raises(NotificationError, match="surrogate"):
        parse_change_notifications(change.encode())


def test_paired_surrogate_escapes_and_escaped_backslashes_are_text() -> None:
    body = b'{"value": [{"subscriptionId": "s", "clientState": "\\ud83d\\ude00 \\\\ud800"}]}'
    [notification] = parse_change_notifications(body)
    assert notification.client_state == "\U0001f600 \\ud800"


@pytest.mark.parametrize(
    "resource",
    [
        "/communications/calls/..",
        "/communications/calls/.",
        "/app/calls/abc/participants/..",
        "/communications/calls/a%2e%2e",
        "/communications/calls/a?b=c",
        "/communications/calls/a#b",
        "/communications/calls/a\\b",
        "/communications/calls/a b",
        "/communications/calls/a\x00",
        "/communications/calls/abc/operations/x\x85y",
    ],
)
def test_a_call_resource_with_an_id_unfit_for_a_url_is_a_notification_error(resource: str) -> None:
    # Call and participant ids go back into Graph URLs (".." climbed out of the call) and name recordings folders.
    with pytest.raises(NotificationError, match="malformed id"):
        parse_comms_notifications({"value": [{"changeType": "updated", "resourceUrl": resource}]})


@pytest.mark.parametrize("resource_data", ["", 0, True, "x"])
def test_resource_data_that_is_neither_an_object_nor_a_list_is_a_notification_error(resource_data: Any) -> None:
    # It was kept as an UnknownNotification's data and the callback accepted (the spec says object or array).
    item = {"changeType": "updated", "resourceUrl": "/somewhere/else", "resourceData": resource_data}
    with pytest.raises(NotificationError, match="resourceData"):
        parse_comms_notifications({"value": [item]})


@pytest.mark.parametrize(
    ("value", "fit"),
    [
        ("491f0b00-ffff-4bc9-a43e-b226498ec22a", True),
        ("adele@contoso.com", True),
        ("o'brien", True),
        ("a..b", True),
        ("é", True),
        ("", False),
        (".", False),
        ("..", False),
        ("...", False),
        ("a/b", False),
        ("a?b", False),
        ("a#b", False),
        ("a%2e", False),
        ("a\\b", False),
        ("a b", False),
        ("a\x1f", False),
        ("a\x7f", False),
        ("a\x85", False),
    ],
)
def test_which_ids_fit_in_a_graph_url_path(value: str, fit: bool) -> None:
    assert is_graph_id(value) is fit
