"""Every GraphClient method against the running sandbox: real HTTPS, real msal, bodies checked against the schemas.

The resilience section arms sandbox faults that strike after an operation was applied (a 503, or the response
withheld until the client's ``graph_timeout`` fires) and checks the retry, carrying the same ``client-request-id``,
gets the sandbox's replay: the call succeeds and the operation happened exactly once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from mediabot import GraphAPIError, GraphNotFoundError, GraphPermissionError, GraphThrottledError
from mediabot.graph import GraphClient, media_prompt, phone_target, user_target
from mediabot.graph._transport import GraphRequester
from mediabot.graph.models import (
    AppHostedMediaConfig,
    Call,
    CallState,
    InviteParticipantsOperation,
    JoinMeetingIdMeetingInfo,
    MuteParticipantOperation,
    OperationStatus,
    OrganizerMeetingInfo,
    PlayPromptOperation,
    RecordOperation,
    SendDtmfTonesOperation,
    SubscribeToToneOperation,
)
from mediabot.sandbox import SandboxServer
from tests.graph.conftest import RecordingTransport, sandbox_settings
from tests.sandbox.conftest import arm_fault

SERVICE_MEDIA = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
CALLBACK = "https://bot.example.com/api/calling"
JOIN_URL = (
    "https://teams.microsoft.com/l/meetup-join/19%3ameeting_M2IzYzczNTItYmY3OC00MDlmLWJjMzUtYmFiMjNlOTY4MGEx"
    "%40thread.v2/0?context=%7b%22Tid%22%3a%22{tid}%22%2c%22Oid%22%3a%22{oid}%22%7d"
)


def schema_for(method: str, path: str) -> str | None:
    """Which contract schema a request body of the client must satisfy."""
    parts = path.split("/")[2:]  # drop "" and the version
    tail = parts[-1]
    if parts[:2] == ["communications", "calls"]:
        if len(parts) == 2:
            return "microsoft.graph.call.json"
        if len(parts) == 4:
            return f"actions/call.{tail}.json"
        if parts[3] == "participants" and tail == "invite":
            return "actions/participants.invite.json"
        if parts[3] == "participants" and len(parts) == 6:
            return f"actions/participant.{tail}.json"
    if parts[0] == "users" and "presence" in parts:
        return f"actions/presence.{tail}.json"
    if tail == "getPresencesByUserId":
        return "actions/cloudCommunications.getPresencesByUserId.json"
    if tail == "createOrGet":
        return "actions/onlineMeetings.createOrGet.json"
    if parts[-1] == "onlineMeetings":
        return "microsoft.graph.onlineMeeting.json"
    if parts[0] == "subscriptions":
        return "microsoft.graph.subscription.json"
    return None


@pytest.fixture(autouse=True)
def _bodies_follow_the_contract(recording: RecordingTransport, validator_for: Any) -> Any:
    yield
    checked = 0
    for method, path, body in recording.bodies():
        name = schema_for(method, path)
        if name is None or "/beta/" in path:
            continue
        errors = [e.message for e in validator_for(name).iter_errors(body)]
        assert not errors, f"{method} {path} body breaks {name}: {errors}"
        checked += 1
    assert checked or not recording.bodies()


async def established_call(graph: GraphClient) -> Call:
    call = await graph.call_user(str(uuid.uuid4()), callback_uri=CALLBACK, media_config=SERVICE_MEDIA)
    return await graph.get_call(call.id or "")


# -- calls ----------------------------------------------------------------------------------------------------


async def test_a_peer_to_peer_call_is_created_then_established_then_hung_up(graph: GraphClient) -> None:
    user = str(uuid.uuid4())
    call = await graph.call_user(user, callback_uri=CALLBACK, media_config=SERVICE_MEDIA, display_name="Bot")
    assert call.id and call.state == CallState.ESTABLISHING
    assert call.targets and call.targets[0].identity and call.targets[0].identity.user
    assert call.targets[0].identity.user.id == user
    fetched = await graph.get_call(call.id)
    assert fetched.state == CallState.ESTABLISHED
    await graph.hang_up(call.id)
    with pytest.raises(GraphNotFoundError):
        await graph.get_call(call.id)


async def test_app_hosted_media_config_comes_back_typed(graph: GraphClient) -> None:
    media = {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "eyJ2IjoxfQ"}
    call = await graph.call_user(str(uuid.uuid4()), callback_uri=CALLBACK, media_config=media)
    assert isinstance(call.media_config, AppHostedMediaConfig)
    assert call.media_config.blob == "eyJ2IjoxfQ"


async def test_a_group_call_reaches_every_target(graph: GraphClient) -> None:
    targets = [user_target(str(uuid.uuid4())), user_target(str(uuid.uuid4())), phone_target("+14255550100")]
    call = await graph.call_group(targets, callback_uri=CALLBACK, media_config=SERVICE_MEDIA, subject="standup")
    assert call.targets is not None and len(call.targets) == 3


async def test_joining_a_meeting_by_its_link_sends_chat_and_organizer(
    graph: GraphClient, recording: RecordingTransport, sandbox: SandboxServer
) -> None:
    organizer = str(uuid.uuid4())
    meeting = await graph.create_online_meeting(organizer, {"subject": "All hands"})
    assert meeting.join_web_url
    call = await graph.join_meeting_by_url(meeting.join_web_url, callback_uri=CALLBACK, media_config=SERVICE_MEDIA)
    assert isinstance(call.meeting_info, OrganizerMeetingInfo)
    assert call.chat_info is not None and call.chat_info.thread_id == meeting.chat_info.thread_id  # type: ignore[union-attr]
    _, _, body = recording.bodies()[-1]
    assert body["meetingInfo"]["organizer"]["user"]["id"] == organizer
    assert body["tenantId"] == sandbox.tenant_id


async def test_joining_a_meeting_that_does_not_exist_is_not_found(graph: GraphClient) -> None:
    link = JOIN_URL.format(tid=str(uuid.uuid4()), oid=str(uuid.uuid4()))
    with pytest.raises(GraphNotFoundError):
        await graph.join_meeting_by_url(link, callback_uri=CALLBACK, media_config=SERVICE_MEDIA)


async def test_joining_a_meeting_by_id_and_passcode(graph: GraphClient) -> None:
    meeting = await graph.create_online_meeting(str(uuid.uuid4()), {"subject": "Dial-in"})
    settings = meeting.join_meeting_id_settings
    assert settings is not None and settings.join_meeting_id
    short_link = f"https://teams.microsoft.com/meet/{settings.join_meeting_id}?p={settings.passcode}"
    call = await graph.join_meeting_by_url(short_link, callback_uri=CALLBACK, media_config=SERVICE_MEDIA)
    assert isinstance(call.meeting_info, JoinMeetingIdMeetingInfo)
    assert call.meeting_info.join_meeting_id == settings.join_meeting_id
    with pytest.raises(GraphAPIError):
        await graph.join_meeting_by_id(
            settings.join_meeting_id, passcode="wrong", callback_uri=CALLBACK, media_config=SERVICE_MEDIA
        )


async def test_an_incoming_call_is_answered(graph: GraphClient, sandbox: SandboxServer) -> None:
    incoming = sandbox.incoming_call(callback_uri=CALLBACK)
    assert incoming["state"] == "incoming"
    await graph.answer(incoming["id"], callback_uri=CALLBACK, media_config=SERVICE_MEDIA, participant_capacity=50)
    call = await graph.get_call(incoming["id"])
    assert call.state in (CallState.ESTABLISHING, CallState.ESTABLISHED)


async def test_answering_a_call_that_is_not_ringing_is_refused(graph: GraphClient) -> None:
    call = await established_call(graph)
    with pytest.raises(GraphAPIError) as info:
        await graph.answer(call.id or "", callback_uri=CALLBACK, media_config=SERVICE_MEDIA)
    assert 400 <= info.value.status_code < 500


async def test_an_incoming_call_is_rejected(graph: GraphClient, sandbox: SandboxServer) -> None:
    incoming = sandbox.incoming_call(callback_uri=CALLBACK)
    await graph.reject(incoming["id"], reason="busy")
    with pytest.raises(GraphNotFoundError):
        await graph.get_call(incoming["id"])


async def test_an_incoming_call_is_redirected(graph: GraphClient, sandbox: SandboxServer) -> None:
    incoming = sandbox.incoming_call(callback_uri=CALLBACK)
    await graph.redirect(incoming["id"], [user_target(str(uuid.uuid4()))], ring_timeout_s=60)
    assert any(r["path"].endswith("/redirect") and r["status"] == 202 for r in sandbox.requests())


async def test_transfer_keepalive_mute_unmute_recording_status_and_screen_sharing(
    graph: GraphClient, sandbox: SandboxServer
) -> None:
    call = await established_call(graph)
    call_id = call.id or ""
    await graph.keep_alive(call_id)
    muted = await graph.mute(call_id, client_context="m1")
    assert muted.client_context == "m1"
    unmuted = await graph.unmute(call_id, client_context="u1")
    assert unmuted.client_context == "u1"
    recording = await graph.update_recording_status(call_id, "recording", client_context="r1")
    assert recording.status in (OperationStatus.RUNNING, OperationStatus.COMPLETED)
    await graph.change_screen_sharing_role(call_id, "viewer")
    await graph.transfer(call_id, user_target(str(uuid.uuid4())))
    paths = [(r["method"], r["path"].rsplit("/", 1)[-1], r["status"]) for r in sandbox.requests()]
    assert ("POST", "keepAlive", 200) in paths
    assert ("POST", "transfer", 202) in paths


async def test_keepalive_on_an_ended_call_is_not_found(graph: GraphClient) -> None:
    call = await established_call(graph)
    await graph.hang_up(call.id or "")
    with pytest.raises(GraphNotFoundError):
        await graph.keep_alive(call.id or "")


async def test_an_id_is_one_path_segment_and_cannot_reach_another_resource(graph: GraphClient) -> None:
    call = await established_call(graph)
    assert call.id
    for crafted in (f"x/../{call.id}", f"{call.id}/..", f"{call.id}?$select=id", f"{call.id}#x", "%2e%2e"):
        with pytest.raises(GraphAPIError):  # a literal id, which no call has (404, or 400 for an encoded '/')
            await graph.get_call(crafted)
    for dots in ("", ".", ".."):
        with pytest.raises(ValueError, match="not a Graph id"):
            await graph.hang_up(dots)
    assert (await graph.get_call(call.id)).state == CallState.ESTABLISHED  # and nothing happened to the real one


# -- IVR ------------------------------------------------------------------------------------------------------


async def test_prompts_tones_and_dtmf_are_operations_with_the_callers_context(graph: GraphClient) -> None:
    call_id = (await established_call(graph)).id or ""
    played = await graph.play_prompt(
        call_id, [media_prompt("https://bot.example.com/hello.wav")], client_context="play-1"
    )
    assert isinstance(played, PlayPromptOperation)
    assert played.id and played.client_context == "play-1"
    tones = await graph.subscribe_to_tone(call_id, client_context="tones-1")
    assert tones.client_context == "tones-1"
    sent = await graph.send_dtmf_tones(call_id, ["tone1", "tone2", "pound"], delay_between_tones_ms=200)
    assert sent.status in (OperationStatus.RUNNING, OperationStatus.COMPLETED)
    cancelled = await graph.cancel_media_processing(call_id, client_context="cancel-1")
    assert cancelled.client_context == "cancel-1"


async def test_a_recorded_response_can_be_downloaded_with_its_own_token(graph: GraphClient) -> None:
    call_id = (await established_call(graph)).id or ""
    operation = await graph.record_response(
        call_id,
        prompts=[media_prompt("https://bot.example.com/beep.wav")],
        max_record_duration_seconds=10,
        play_beep=True,
        stop_tones=["#"],
        client_context="rec-1",
    )
    assert isinstance(operation, RecordOperation)
    operation = await graph.get_operation(call_id, operation.id or "")
    assert isinstance(operation, RecordOperation)
    assert operation.status == OperationStatus.COMPLETED
    if operation.recording_location is None:
        pytest.fail("the sandbox's recordResponse operation carries no recordingLocation")
    audio = await graph.download_recording(operation.recording_location, operation.recording_access_token or "")
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE"
    with pytest.raises(GraphPermissionError):
        await graph.download_recording(operation.recording_location, "forged-token")


# -- participants ---------------------------------------------------------------------------------------------


async def test_participants_listed_invited_muted_held_and_removed(graph: GraphClient) -> None:
    call = await graph.call_group(
        [user_target(str(uuid.uuid4())), user_target(str(uuid.uuid4()))],
        callback_uri=CALLBACK,
        media_config=SERVICE_MEDIA,
    )
    call_id = call.id or ""
    roster = await graph.list_participants(call_id)
    assert roster and all(p.id for p in roster)
    invited = await graph.invite_participants(call_id, [user_target(str(uuid.uuid4()))], client_context="inv-1")
    assert isinstance(invited, InviteParticipantsOperation)
    other = next(p for p in await graph.list_participants(call_id) if p.id != call.my_participant_id)
    assert (await graph.get_participant(call_id, other.id or "")).id == other.id
    await graph.mute_participant(call_id, other.id or "", client_context="mute-1")
    assert (await graph.get_participant(call_id, other.id or "")).is_muted is True
    await graph.start_hold_music(call_id, other.id or "", client_context="hold-1")
    await graph.stop_hold_music(call_id, other.id or "", client_context="unhold-1")
    await graph.mute_all(call_id, client_context="all-1")
    await graph.remove_participant(call_id, other.id or "")
    with pytest.raises(GraphNotFoundError):
        await graph.get_participant(call_id, other.id or "")


# -- meetings and presence ------------------------------------------------------------------------------------


async def test_online_meetings_are_created_found_and_created_or_got(graph: GraphClient) -> None:
    organizer = str(uuid.uuid4())
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    meeting = await graph.create_online_meeting(
        organizer,
        {"subject": "Design review", "startDateTime": "2026-12-01T09:00:00Z", "endDateTime": "2026-12-01T10:00:00Z"},
    )
    assert meeting.id and meeting.join_web_url
    assert (await graph.get_online_meeting(organizer, meeting.id)).subject == "Design review"
    found = await graph.find_online_meeting_by_join_url(organizer, meeting.join_web_url)
    assert found is not None and found.id == meeting.id
    if meeting.join_meeting_id_settings and meeting.join_meeting_id_settings.join_meeting_id:
        by_id = await graph.find_online_meeting_by_join_meeting_id(
            organizer, meeting.join_meeting_id_settings.join_meeting_id
        )
        assert by_id is not None and by_id.id == meeting.id
    assert await graph.find_online_meeting_by_join_url(organizer, "https://teams.microsoft.com/l/none") is None
    external = f"ext-{uuid.uuid4()}"
    first = await graph.create_or_get_online_meeting(
        organizer, external, subject="Weekly", start=start, end=start + timedelta(hours=1)
    )
    again = await graph.create_or_get_online_meeting(organizer, external, subject="Weekly")
    assert first.id == again.id


async def test_presence_is_read_set_preferred_and_cleared(graph: GraphClient, sandbox: SandboxServer) -> None:
    user = str(uuid.uuid4())
    session = sandbox.default_app.client_id
    await graph.set_presence(
        user, session_id=session, availability="Busy", activity="InACall", expiration=timedelta(minutes=30)
    )
    presence = await graph.get_presence(user)
    assert presence.availability == "Busy" and presence.activity == "InACall"
    await graph.set_user_preferred_presence(user, availability="DoNotDisturb", activity="DoNotDisturb")
    assert (await graph.get_presence(user)).availability == "DoNotDisturb"
    await graph.clear_presence(user, session_id=session)
    many = await graph.get_presences([user, str(uuid.uuid4())])
    assert len(many) == 2 and {p.id for p in many} >= {user}


async def test_presence_of_me_is_refused_for_an_app_token(graph: GraphClient) -> None:
    with pytest.raises(GraphAPIError) as info:
        await graph.get_presence()
    assert info.value.status_code in (400, 403)


# -- call records and subscriptions ---------------------------------------------------------------------------


async def test_a_finished_call_has_a_record_with_sessions_and_segments(
    graph: GraphClient, sandbox: SandboxServer
) -> None:
    call = await established_call(graph)
    record_id = sandbox.end_call(call.id or "")
    record = await graph.get_call_record(record_id)
    assert record.id == record_id
    assert record.sessions, "the expanded record carries its sessions"
    sessions = await graph.list_call_record_sessions(record_id)
    assert len(sessions) == len(record.sessions)
    assert all(s.segments for s in sessions)


# -- resilience -----------------------------------------------------------------------------------------------


async def test_throttling_is_retried_with_one_client_request_id(graph: GraphClient, sandbox: SandboxServer) -> None:
    call = await established_call(graph)
    path = f"/v1.0/communications/calls/{call.id}"
    sandbox.clear_requests()
    sandbox.inject_fault("GET", path, 429, count=2, retry_after=0, match="exact")
    assert (await graph.get_call(call.id or "")).id == call.id
    attempts = [r for r in sandbox.requests() if r["path"] == path]
    assert [r["status"] for r in attempts] == [429, 429, 200]
    assert len({r["client_request_id"] for r in attempts}) == 1


async def test_requests_and_their_errors_are_measured(graph: GraphClient, sandbox: SandboxServer) -> None:
    call = await established_call(graph)

    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    gets, throttled = (
        sample("mediabot_graph_request_seconds_count", {"method": "GET"}),
        sample("mediabot_graph_errors_total", {"status": "429"}),
    )
    sandbox.inject_fault("GET", f"/v1.0/communications/calls/{call.id}", 429, count=2, retry_after=0, match="exact")
    await graph.get_call(call.id or "")
    assert sample("mediabot_graph_request_seconds_count", {"method": "GET"}) == gets + 3  # every attempt is timed
    assert sample("mediabot_graph_errors_total", {"status": "429"}) == throttled + 2


async def test_endless_unavailability_gives_a_throttled_error(graph: GraphClient, sandbox: SandboxServer) -> None:
    call = await established_call(graph)
    sandbox.inject_fault("GET", f"/v1.0/communications/calls/{call.id}", 503, count=50, retry_after=0, match="exact")
    with pytest.raises(GraphThrottledError):
        await graph.get_call(call.id or "")


async def test_an_app_without_the_permission_gets_a_permission_error(sandbox: SandboxServer) -> None:
    limited = sandbox.register_app(roles=["Calls.Initiate.All"])
    async with GraphClient(sandbox_settings(sandbox, limited)) as graph:
        call = await graph.call_user(str(uuid.uuid4()), callback_uri=CALLBACK, media_config=SERVICE_MEDIA)
        assert call.id
        with pytest.raises(GraphPermissionError) as info:
            await graph.call_group(
                [user_target(str(uuid.uuid4())), user_target(str(uuid.uuid4()))],
                callback_uri=CALLBACK,
                media_config=SERVICE_MEDIA,
            )
        assert info.value.status_code == 403
        assert "Calls.InitiateGroupCalls.All" in info.value.message


class FixedToken:
    """A token fetched once up front, so only the Graph requests under test run against a short timeout."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self) -> str:
        return self.token


#: The impatient client's ``graph_timeout``: a withheld response makes it give up and retry.
IMPATIENT_TIMEOUT = 0.5


@pytest.fixture
async def impatient(sandbox: SandboxServer) -> AsyncIterator[GraphClient]:
    """A GraphClient with a short ``graph_timeout`` and immediate retries (``graph_max_backoff`` 0.05 s)."""
    settings = sandbox_settings(sandbox, graph_timeout=IMPATIENT_TIMEOUT)
    async with GraphClient(settings, tokens=FixedToken(sandbox.access_token())) as client:
        yield client


@dataclasses.dataclass
class Operation:
    """An operation under test: the path faults strike, how the client does it, how to see it happened once."""

    path: str
    run: Callable[[GraphClient], Awaitable[Any]]
    happened_once: Callable[[Any], Awaitable[None]]


async def prepare(name: str, graph: GraphClient, sandbox: SandboxServer, request: pytest.FixtureRequest) -> Operation:
    """Set up ``name`` with the patient client; the Operation to run with the impatient one."""
    if name == "create call":
        user = str(uuid.uuid4())

        async def created_once(call: Call) -> None:
            assert call.id and (await graph.get_call(call.id)).state == CallState.ESTABLISHED

        return Operation(
            f"/v1.0{CALLS_PATH}",
            lambda c: c.call_user(user, callback_uri=CALLBACK, media_config=SERVICE_MEDIA),
            created_once,
        )
    if name == "answer":
        incoming = sandbox.incoming_call(callback_uri=CALLBACK)["id"]

        async def answered_once(_: None) -> None:
            # A second answer would have been refused: the call is no longer ringing.
            assert (await graph.get_call(incoming)).state == CallState.ESTABLISHED

        return Operation(
            f"/v1.0{CALLS_PATH}/{incoming}/answer",
            lambda c: c.answer(incoming, callback_uri=CALLBACK, media_config=SERVICE_MEDIA),
            answered_once,
        )
    if name == "create subscription":
        url, hook = request.getfixturevalue("webhook")
        expires = datetime.now(UTC) + timedelta(minutes=60)

        async def subscribed_once(subscription: Any) -> None:
            assert len(hook.seen) == 1, "the endpoint was validated once: one subscription was made"
            assert (await graph.get_subscription(subscription.id)).notification_url == url

        return Operation(
            "/v1.0/subscriptions",
            lambda c: c.create_subscription(
                resource="/communications/callRecords", change_type="created", notification_url=url, expiration=expires
            ),
            subscribed_once,
        )
    call = await established_call(graph)
    call_id = call.id or ""
    base = f"/v1.0{CALLS_PATH}/{call_id}"
    if name == "invite participants":
        before = len(await graph.list_participants(call_id))

        async def invited_once(operation: Any) -> None:
            assert isinstance(operation, InviteParticipantsOperation)
            assert len(await graph.list_participants(call_id)) == before + 1

        invitee = user_target(str(uuid.uuid4()))
        return Operation(
            f"{base}/participants/invite",
            lambda c: c.invite_participants(call_id, [invitee], client_context="inv"),
            invited_once,
        )

    async def one_operation(operation: Any) -> None:
        assert operation.id
        assert (await graph.get_operation(call_id, operation.id)).status == OperationStatus.COMPLETED

    if name == "playPrompt":
        prompt = media_prompt("https://bot.example.com/hello.wav")
        return Operation(
            f"{base}/playPrompt", lambda c: c.play_prompt(call_id, [prompt], client_context="p"), one_operation
        )
    if name == "subscribeToTone":

        async def subscribed(operation: Any) -> None:
            assert isinstance(operation, SubscribeToToneOperation)
            assert len(sandbox.send_tones(call_id, ["tone1"])["notified"]) == 1

        return Operation(f"{base}/subscribeToTone", lambda c: c.subscribe_to_tone(call_id), subscribed)
    if name == "sendDtmfTones":

        async def sent(operation: Any) -> None:
            assert isinstance(operation, SendDtmfTonesOperation)
            await one_operation(operation)

        return Operation(f"{base}/sendDtmfTones", lambda c: c.send_dtmf_tones(call_id, ["tone1", "pound"]), sent)
    assert name == "mute", name

    async def muted(operation: Any) -> None:
        assert isinstance(operation, MuteParticipantOperation)
        assert (await graph.get_participant(call_id, call.my_participant_id or "")).is_muted is True

    return Operation(f"{base}/mute", lambda c: c.mute(call_id), muted)


CALLS_PATH = "/communications/calls"
OPERATIONS = [
    "create call",
    "answer",
    "playPrompt",
    "invite participants",
    "subscribeToTone",
    "sendDtmfTones",
    "mute",
    "create subscription",
]
#: Faults that strike after the sandbox applied the request: what the client sees of that first attempt.
AFTER_FAULTS = {
    "503": {"status": 503, "retry_after": 0, "phase": "after"},
    "timeout": {"delay": 10.0, "phase": "after"},
}


@pytest.mark.parametrize("fault", list(AFTER_FAULTS))
@pytest.mark.parametrize("name", OPERATIONS)
async def test_an_operation_whose_answer_is_lost_is_retried_and_happens_once(
    name: str,
    fault: str,
    graph: GraphClient,
    impatient: GraphClient,
    sandbox: SandboxServer,
    request: pytest.FixtureRequest,
) -> None:
    operation = await prepare(name, graph, sandbox, request)
    arm_fault(sandbox, "POST", operation.path, **AFTER_FAULTS[fault])
    sandbox.clear_requests()
    result = await operation.run(impatient)
    await operation.happened_once(result)
    attempts = [r for r in sandbox.requests() if r["path"] == operation.path and r["method"] == "POST"]
    assert len({r["client_request_id"] for r in attempts}) == 1
    assert [(r["handled"], r["replayed"], r["fault"]) for r in attempts] == [
        (True, False, "after"),  # applied, but its answer was lost
        (False, True, None),  # the retry: not applied again, the first answer replayed
    ]


async def test_graph_timeout_is_the_timeout_httpx_uses(sandbox: SandboxServer) -> None:
    seen: list[dict[str, float | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"id": "c1"})

    settings = sandbox_settings(sandbox, graph_timeout=7.5)
    async with GraphClient(settings, tokens=FixedToken("t"), transport=httpx.MockTransport(handler)) as client:
        await client.get_call("c1")
    assert seen == [{"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}]


async def test_a_429s_retry_after_is_waited_before_the_retry(graph: GraphClient, sandbox: SandboxServer) -> None:
    call_id = (await established_call(graph)).id or ""
    before = len(await graph.list_participants(call_id))
    path = f"/v1.0{CALLS_PATH}/{call_id}/participants/invite"
    sandbox.inject_fault("POST", path, 429, count=1, retry_after=7, match="exact")
    sandbox.clear_requests()
    events: list[str] = []

    async def sleep(seconds: float) -> None:
        events.append(f"sleep {seconds:g}")

    async def trace(request: httpx.Request) -> None:
        events.append("request")

    async with httpx.AsyncClient(
        base_url=sandbox.graph_url, verify=sandbox.ssl_context(), trust_env=False, event_hooks={"request": [trace]}
    ) as http:
        requester = GraphRequester(
            http, FixedToken(sandbox.access_token()), max_retries=3, max_backoff=30.0, sleep=sleep
        )
        body = {"participants": [user_target(str(uuid.uuid4()))]}
        response = await requester.request("POST", path.removeprefix("/v1.0"), json_body=body)
    assert response.status_code == 200
    assert events == ["request", "sleep 7", "request"], "the retry waits out Retry-After first"
    attempts = [r for r in sandbox.requests() if r["path"] == path]
    assert [(r["status"], r["handled"]) for r in attempts] == [(429, False), (200, True)]
    assert len({r["client_request_id"] for r in attempts}) == 1
    assert len(await graph.list_participants(call_id)) == before + 1


async def test_a_retry_after_beyond_max_backoff_is_not_retried_early(
    graph: GraphClient, sandbox: SandboxServer
) -> None:
    call_id = (await established_call(graph)).id or ""
    path = f"/v1.0{CALLS_PATH}/{call_id}/playPrompt"
    sandbox.inject_fault("POST", path, 429, count=1, retry_after=30, match="exact")
    sandbox.clear_requests()
    with pytest.raises(GraphThrottledError) as info:
        await graph.play_prompt(call_id, [media_prompt("https://bot.example.com/a.wav")])
    assert info.value.retry_after == 30.0 and info.value.status_code == 429
    assert [r["status"] for r in sandbox.requests() if r["path"] == path] == [429]
