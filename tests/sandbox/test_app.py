"""The edge of the app: request ids, faults (before and after handling), replays, the request log, reset."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mediabot.sandbox import SandboxServer
from mediabot.sandbox._app import REPLAYED_HEADER, ReplayCache, StoredResponse

from .conftest import admin_client, arm_fault, call_body, graph_client, user_target

NewCall = Callable[..., dict[str, Any]]
_PROMPT = {
    "@odata.type": "#microsoft.graph.mediaPrompt",
    "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": "https://bot.example.com/a.wav"},
}


def test_throttling_fault_hits_the_next_n_requests_then_clears(sandbox: SandboxServer, graph: httpx.Client) -> None:
    sandbox.clear_requests()
    sandbox.inject_fault("POST", "/v1.0/communications/calls", 429, count=2, retry_after=1, match="exact")
    statuses = []
    for attempt in range(3):
        response = graph.post(
            "/communications/calls", json=call_body(), headers={"client-request-id": f"try-{attempt}"}
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"
            assert response.json()["error"]["code"] == "TooManyRequests"
    assert statuses == [429, 429, 201]
    log = [r for r in sandbox.requests() if r["path"] == "/v1.0/communications/calls"]
    assert [(r["client_request_id"], r["status"]) for r in log] == [("try-0", 429), ("try-1", 429), ("try-2", 201)]


def test_prefix_faults_and_5xx(sandbox: SandboxServer, graph: httpx.Client) -> None:
    sandbox.inject_fault("*", "/v1.0/users/", 503, count=1)
    unavailable = graph.get("/users/u1/presence")
    assert unavailable.status_code == 503
    assert unavailable.json()["error"]["code"] == "ServiceUnavailable"
    assert graph.get("/users/u1/presence").status_code == 200
    sandbox.inject_fault("GET", "/v1.0/users/*/presence", 504, count=1, match="glob")
    assert graph.get("/users/u2/presence").status_code == 504


def test_delay_fault_makes_a_client_time_out(sandbox: SandboxServer) -> None:
    sandbox.inject_fault("GET", "/v1.0/users/slow/presence", None, count=1, delay=2.0, match="exact")
    token = sandbox.access_token()
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False, timeout=0.3) as client:
        try:
            client.get(f"{sandbox.graph_url}/users/slow/presence", headers={"Authorization": f"Bearer {token}"})
        except httpx.ReadTimeout:
            timed_out = True
        else:
            timed_out = False
    assert timed_out


def test_token_endpoint_faults_use_entras_shape(sandbox: SandboxServer) -> None:
    sandbox.inject_fault("POST", f"/{sandbox.tenant_id}/oauth2/v2.0/token", 503, count=1)
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False) as client:
        response = client.post(f"{sandbox.authority}/oauth2/v2.0/token", data={})
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"


def test_every_response_has_a_request_id_and_unknown_segments_are_400(graph: httpx.Client) -> None:
    response = graph.get("/communications/nonsense")
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "Resource not found for the segment 'nonsense'."
    assert response.headers["request-id"] == response.json()["error"]["innerError"]["request-id"]
    assert "client-request-id" not in response.headers


# -- replays by client-request-id -----------------------------------------------------------------------------


def _roster(graph: httpx.Client, call_id: str) -> list[dict[str, Any]]:
    roster: list[dict[str, Any]] = graph.get(f"/communications/calls/{call_id}/participants").json()["value"]
    return roster


def _attempts(sandbox: SandboxServer, path: str) -> list[tuple[str | None, int, bool, bool, str | None]]:
    return [
        (r["client_request_id"], r["status"], r["handled"], r["replayed"], r["fault"])
        for r in sandbox.requests()
        if r["path"] == path and r["method"] == "POST"
    ]


def test_a_retried_post_is_replayed_not_applied_again(
    sandbox: SandboxServer, graph: httpx.Client, new_call: NewCall
) -> None:
    call = new_call()
    path = f"/communications/calls/{call['id']}/participants/invite"
    body = {"participants": [user_target()], "clientContext": "once"}
    sandbox.clear_requests()
    first = graph.post(path, json=body, headers={"client-request-id": "invite-1"})
    again = graph.post(path, json=body, headers={"client-request-id": "invite-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["Location"] == first.headers["Location"]
    assert again.headers[REPLAYED_HEADER] == "true" and REPLAYED_HEADER not in first.headers
    assert again.headers["request-id"] != first.headers["request-id"]
    assert again.headers["client-request-id"] == "invite-1"
    assert len(_roster(graph, call["id"])) == 3, "the bot, the target and one invitee"
    assert _attempts(sandbox, f"/v1.0{path}") == [
        ("invite-1", 200, True, False, None),
        ("invite-1", 200, False, True, None),
    ]
    # A new logical request (new id) is a new invitation.
    assert graph.post(path, json=body, headers={"client-request-id": "invite-2"}).status_code == 200
    assert len(_roster(graph, call["id"])) == 4


def test_replays_are_per_caller_method_and_path_and_only_of_applied_requests(
    sandbox: SandboxServer, graph: httpx.Client, new_call: NewCall
) -> None:
    call = new_call()
    base = f"/communications/calls/{call['id']}"
    ids = {"client-request-id": "shared-id"}
    refused = graph.post(f"{base}/participants/invite", json={"clientContext": "no participants"}, headers=ids)
    assert refused.status_code == 400
    invited = graph.post(f"{base}/participants/invite", json={"participants": [user_target()]}, headers=ids)
    assert invited.status_code == 200 and REPLAYED_HEADER not in invited.headers, "a 400 applied nothing"
    played = graph.post(f"{base}/playPrompt", json={"prompts": [_PROMPT]}, headers=ids)
    assert played.status_code == 200 and REPLAYED_HEADER not in played.headers, "another path is another request"
    assert graph.get(base, headers=ids).headers.get(REPLAYED_HEADER) is None, "reads are never replayed"
    other_app = sandbox.register_app(roles=["Calls.Initiate.All", "Calls.InitiateGroupCalls.All"])
    with graph_client(sandbox, other_app) as other:
        theirs = other.post("/communications/calls", json=call_body(), headers={"client-request-id": "mine"})
        assert (
            graph.post("/communications/calls", json=call_body(), headers={"client-request-id": "mine"}).json()["id"]
            != theirs.json()["id"]
        ), "one app's client-request-id never replays another app's response"


async def test_a_twin_arriving_while_the_first_is_handled_waits_for_its_response(
    sandbox: SandboxServer, graph: httpx.Client, new_call: NewCall
) -> None:
    call = new_call()
    path = f"/v1.0/communications/calls/{call['id']}/participants/invite"
    # Whichever twin arrives first is slow to apply; the other arrives meanwhile.
    arm_fault(sandbox, "POST", path, delay=0.5)
    sandbox.clear_requests()
    headers = {"Authorization": graph.headers["Authorization"], "client-request-id": "twins"}
    body = {"participants": [user_target()]}
    async with httpx.AsyncClient(verify=sandbox.ssl_context(), trust_env=False, timeout=30.0) as client:
        one, two = await asyncio.gather(
            client.post(f"{sandbox.base_url}{path}", json=body, headers=headers),
            client.post(f"{sandbox.base_url}{path}", json=body, headers=headers),
        )
    assert one.status_code == two.status_code == 200
    assert one.json()["id"] == two.json()["id"]
    assert sorted(r.headers.get(REPLAYED_HEADER, "no") for r in (one, two)) == ["no", "true"]
    assert len(_roster(graph, call["id"])) == 3
    assert sorted((handled, replayed) for _, _, handled, replayed, _ in _attempts(sandbox, path)) == [
        (False, True),
        (True, False),
    ]


def test_an_after_fault_applies_the_request_then_fails_it(sandbox: SandboxServer, graph: httpx.Client) -> None:
    path = "/v1.0/communications/calls"
    armed = arm_fault(sandbox, "POST", path, status=503, retry_after=2, phase="after")
    assert armed["phase"] == "after"
    sandbox.clear_requests()
    headers = {"client-request-id": "did-it-happen"}
    failed = graph.post("/communications/calls", json=call_body(), headers=headers)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "2"
    assert failed.json()["error"]["code"] == "ServiceUnavailable"
    retried = graph.post("/communications/calls", json=call_body(), headers=headers)
    assert retried.status_code == 201 and retried.headers[REPLAYED_HEADER] == "true"
    assert graph.get(f"/communications/calls/{retried.json()['id']}").status_code == 200
    assert _attempts(sandbox, path) == [
        ("did-it-happen", 503, True, False, "after"),
        ("did-it-happen", 201, False, True, None),
    ]


def test_an_after_delay_withholds_the_applied_response_past_the_clients_timeout(
    sandbox: SandboxServer, graph: httpx.Client, new_call: NewCall
) -> None:
    call = new_call()
    path = f"/v1.0/communications/calls/{call['id']}/participants/invite"
    arm_fault(sandbox, "POST", path, delay=5.0, phase="after")
    sandbox.clear_requests()
    body = {"participants": [user_target()]}
    headers = {"Authorization": graph.headers["Authorization"], "client-request-id": "withheld"}
    with httpx.Client(verify=sandbox.ssl_context(), trust_env=False, timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post(f"{sandbox.base_url}{path}", json=body, headers=headers)
        retried = impatient.post(f"{sandbox.base_url}{path}", json=body, headers=headers)
    assert retried.status_code == 200 and retried.headers[REPLAYED_HEADER] == "true"
    assert len(_roster(graph, call["id"])) == 3
    assert _attempts(sandbox, path) == [
        ("withheld", 200, True, False, "after"),
        ("withheld", 200, False, True, None),
    ]


def test_a_fault_phase_is_before_or_after(sandbox: SandboxServer) -> None:
    with admin_client(sandbox) as admin:
        bad = admin.post("/_sandbox/faults", json={"path": "/v1.0/x", "status": 503, "phase": "during"})
        assert bad.status_code == 400
        listed = admin.post("/_sandbox/faults", json={"path": "/v1.0/x", "status": 503})
        assert listed.json()["phase"] == "before"


# -- the replay cache -----------------------------------------------------------------------------------------


def _stored(body: bytes = b"{}") -> StoredResponse:
    return StoredResponse(201, (("content-type", "application/json"),), body)


async def test_the_cache_replays_what_the_handler_kept() -> None:
    cache = ReplayCache()
    key = ("app", "POST", "/v1.0/communications/calls", "id-1")
    assert await cache.begin(key) is None, "the first comes through to be handled"
    cache.end(key, _stored(b'{"id": "c1"}'))
    replay = await cache.begin(key)
    assert replay is not None and replay.body == b'{"id": "c1"}'
    response = replay.response()
    assert response.status_code == 201 and response.headers[REPLAYED_HEADER] == "true"
    assert REPLAYED_HEADER not in replay.response(replayed=False).headers


async def test_a_twin_waits_and_gets_the_response_or_handles_it_when_nothing_was_kept() -> None:
    cache = ReplayCache()
    key = ("app", "POST", "/v1.0/subscriptions", "id-2")
    assert await cache.begin(key) is None
    twin = asyncio.create_task(cache.begin(key))
    await asyncio.sleep(0)
    assert not twin.done(), "the twin waits while the first is handled"
    cache.end(key, None)
    assert await twin is None, "nothing applied: the twin is handled itself"
    third = asyncio.create_task(cache.begin(key))
    await asyncio.sleep(0)
    cache.end(key, _stored())
    assert await third == _stored()


async def test_the_cache_is_bounded_by_age_and_count() -> None:
    now = [0.0]
    cache = ReplayCache(window=60.0, limit=2, clock=lambda: now[0])
    keys = [("app", "POST", "/v1.0/x", f"id-{n}") for n in range(3)]
    for key in keys:
        assert await cache.begin(key) is None
        cache.end(key, _stored())
    assert len(cache) == 2
    assert await cache.begin(keys[0]) is None, "the oldest was dropped for the limit"
    cache.end(keys[0], None)
    assert await cache.begin(keys[2]) is not None
    now[0] = 61.0
    assert await cache.begin(keys[2]) is None, "past the window a retry is a new request"
    cache.end(keys[2], None)
    assert len(cache) == 0


# -- reset ----------------------------------------------------------------------------------------------------


def test_reset_disarms_faults_ends_calls_and_stops_pending_deliveries(
    sandbox: SandboxServer, graph: httpx.Client, new_call: NewCall
) -> None:
    sandbox.clear_notifications()
    call = new_call()  # its notifications go to bot.example.com, which does not resolve: retried in the background
    sandbox.inject_fault("GET", "/v1.0/users/", 503, count=5)
    counts = sandbox.reset()
    assert counts["faults_cleared"] == 1 and counts["calls_ended"] >= 1
    assert graph.get(f"/communications/calls/{call['id']}").status_code == 404
    assert graph.get("/users/u1/presence").status_code == 200
    outcomes = {e["outcome"] for e in sandbox.notifications() if e["call_id"] == call["id"]}
    assert outcomes <= {"cancelled", "failed"} and "cancelled" in outcomes
    assert sandbox.reset() == {"faults_cleared": 0, "calls_ended": 0, "deliveries_cancelled": 0}
