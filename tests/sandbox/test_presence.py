"""Presence sessions, preferred presence and reads."""

from __future__ import annotations

import httpx

from mediabot.sandbox import SandboxServer


def test_set_and_clear_presence_show_on_the_next_get(graph: httpx.Client, sandbox: SandboxServer) -> None:
    user = "c4c1f54e-0000-4000-8000-000000000001"
    assert graph.get(f"/users/{user}/presence").json()["availability"] == "Offline"
    body = {"sessionId": sandbox.default_app.client_id, "availability": "Busy", "activity": "InACall"}
    assert (
        graph.post(f"/users/{user}/presence/setPresence", json={**body, "expirationDuration": "PT1H"}).status_code
        == 200
    )
    presence = graph.get(f"/users/{user}/presence").json()
    assert (presence["availability"], presence["activity"]) == ("Busy", "InACall")
    assert graph.get(f"/communications/presences/{user}").json()["activity"] == "InACall"
    many = graph.post("/communications/getPresencesByUserId", json={"ids": [user, "other"]}).json()["value"]
    assert [p["availability"] for p in many] == ["Busy", "Offline"]
    clear = {"sessionId": sandbox.default_app.client_id}
    assert graph.post(f"/users/{user}/presence/clearPresence", json=clear).status_code == 200
    assert graph.get(f"/users/{user}/presence").json()["availability"] == "Offline"


def test_preferred_presence_wins_over_sessions(graph: httpx.Client, sandbox: SandboxServer) -> None:
    user = "c4c1f54e-0000-4000-8000-000000000002"
    session = {"sessionId": sandbox.default_app.client_id, "availability": "Available", "activity": "Available"}
    graph.post(f"/users/{user}/presence/setPresence", json=session)
    preferred = {"availability": "DoNotDisturb", "activity": "DoNotDisturb", "expirationDuration": "PT8H"}
    assert graph.post(f"/users/{user}/presence/setUserPreferredPresence", json=preferred).status_code == 200
    assert graph.get(f"/users/{user}/presence").json()["availability"] == "DoNotDisturb"
    assert graph.post(f"/users/{user}/presence/clearUserPreferredPresence", json={}).status_code == 200
    assert graph.get(f"/users/{user}/presence").json()["availability"] == "Available"


def test_invalid_presence_requests(graph: httpx.Client, sandbox: SandboxServer) -> None:
    user = "c4c1f54e-0000-4000-8000-000000000003"
    wrong_combo = {"sessionId": sandbox.default_app.client_id, "availability": "Available", "activity": "Presenting"}
    assert graph.post(f"/users/{user}/presence/setPresence", json=wrong_combo).status_code == 400
    wrong_session = {"sessionId": "someone-else", "availability": "Away", "activity": "Away"}
    assert graph.post(f"/users/{user}/presence/setPresence", json=wrong_session).status_code == 400
    too_long = {**wrong_session, "sessionId": sandbox.default_app.client_id, "expirationDuration": "PT5H"}
    assert graph.post(f"/users/{user}/presence/setPresence", json=too_long).status_code == 400
    missing = graph.post(f"/users/{user}/presence/setPresence", json={"sessionId": sandbox.default_app.client_id})
    assert missing.status_code == 400
    assert "availability" in missing.json()["error"]["message"]
    assert graph.get("/me/presence").status_code == 400
