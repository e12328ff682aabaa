"""``/v1/live`` (snapshot and event stream) and standalone sessions over the real service."""

from __future__ import annotations

import json

from tests.service.conftest import API_KEY, ServiceServer


def test_a_standalone_session_is_opened_listed_and_closed(service: ServiceServer) -> None:
    opened = service.client.post("/v1/sessions")
    assert opened.status_code == 201
    body = opened.json()
    assert body["whip_url"] == f"{service.base_url}/media/whip/{body['session_id']}"
    assert body["token"] and body["folder"] == body["session_id"]
    [listed] = [s for s in service.client.get("/v1/live").json()["sessions"] if s["session_id"] == body["session_id"]]
    assert listed["standalone"] is True and listed["call_id"] is None and listed["sources"] == []
    assert service.client.get(f"/v1/sessions/{body['session_id']}").json()["recording"] == "on"
    closed = service.client.delete(f"/v1/sessions/{body['session_id']}")
    assert closed.status_code == 200 and closed.json()["summary"]["segments"] == 0
    assert service.client.get(f"/v1/sessions/{body['session_id']}").status_code == 404
    assert service.client.delete(f"/v1/sessions/{body['session_id']}").status_code == 404
    # Nobody published: nothing was written.
    assert not (service.settings.output_dir / body["session_id"]).exists()


def test_sessions_need_the_key(service: ServiceServer) -> None:
    assert service.client.post("/v1/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_event_stream_carries_snapshots(service: ServiceServer) -> None:
    opened = service.client.post("/v1/sessions").json()
    with service.client.stream("GET", "/v1/live/events", params={"interval": 0.1}) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        snapshots = []
        for line in events.iter_lines():
            if line.startswith("data: "):
                snapshots.append(json.loads(line.removeprefix("data: ")))
            if len(snapshots) == 2:
                break
    assert all(opened["session_id"] in [s["session_id"] for s in snap["sessions"]] for snap in snapshots)
    service.client.delete(f"/v1/sessions/{opened['session_id']}")


def test_the_console_cookie_opens_the_api_and_guards_state_changes(service: ServiceServer) -> None:
    login = service.client.post("/console/login", json={"api_key": API_KEY}, headers={"Authorization": ""})
    assert login.status_code == 200
    cookie = login.cookies["mediabot_console"]
    plain = {"Authorization": "", "Cookie": f"mediabot_console={cookie}"}
    assert service.client.get("/v1/live", headers=plain).status_code == 200
    # A state change with the cookie must come from the console's own origin.
    assert service.client.post("/v1/sessions", headers=plain).status_code == 403
    foreign = {**plain, "Origin": "https://evil.example"}
    assert service.client.post("/v1/sessions", headers=foreign).status_code == 403
    own = {**plain, "Origin": service.base_url}
    opened = service.client.post("/v1/sessions", headers=own)
    assert opened.status_code == 201
    assert service.client.delete(f"/v1/sessions/{opened.json()['session_id']}", headers=own).status_code == 200
    forged = {"Authorization": "", "Cookie": f"mediabot_console={cookie[:-2]}xx"}
    assert service.client.get("/v1/live", headers=forged).status_code == 401


def test_the_event_stream_ends_when_the_server_is_stopping(service: ServiceServer) -> None:
    stopping = False
    service.app.state.stopping = lambda: stopping
    with service.client.stream("GET", "/v1/live/events", params={"interval": 0.1}) as events:
        received = 0
        for line in events.iter_lines():
            if line.startswith("data: "):
                received += 1
                stopping = received >= 2  # uvicorn was told to stop: the stream must end by itself
            if received > 20:
                break  # it did not end
    assert received == 2
