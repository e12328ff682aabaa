"""Roster operations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from .conftest import user_target

NewCall = Callable[..., dict[str, Any]]


def test_list_get_invite_mute_delete(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call(targets=2)
    base = f"/communications/calls/{call['id']}/participants"
    roster = graph.get(base).json()["value"]
    assert len(roster) == 3
    assert len({p["mediaStreams"][0]["sourceId"] for p in roster}) == 3
    invited = graph.post(f"{base}/invite", json={"participants": [user_target("new-user")], "clientContext": "i"})
    assert invited.status_code == 200
    assert invited.json()["@odata.type"] == "#microsoft.graph.inviteParticipantsOperation"
    assert "Location" in invited.headers
    roster = graph.get(base).json()["value"]
    newcomer = next(p for p in roster if p["info"]["identity"].get("user", {}).get("id") == "new-user")
    assert graph.get(f"{base}/{newcomer['id']}").json()["id"] == newcomer["id"]
    muted = graph.post(f"{base}/{newcomer['id']}/mute", json={"clientContext": "m"})
    assert muted.status_code == 200
    assert graph.get(f"{base}/{newcomer['id']}").json()["isMuted"] is True
    assert graph.delete(f"{base}/{newcomer['id']}").status_code == 204
    assert graph.get(f"{base}/{newcomer['id']}").status_code == 404
    assert graph.delete(f"{base}/{newcomer['id']}").status_code == 404


def test_hold_music_is_202_with_an_operation(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call()
    base = f"/communications/calls/{call['id']}/participants"
    other = next(p for p in graph.get(base).json()["value"] if p["id"] != call["myParticipantId"])
    start = graph.post(f"{base}/{other['id']}/startHoldMusic", json={"clientContext": "h"})
    assert start.status_code == 202
    assert start.json()["@odata.type"] == "#microsoft.graph.startHoldMusicOperation"
    stop = graph.post(f"{base}/{other['id']}/stopHoldMusic", json={})
    assert stop.status_code == 202
    assert stop.json()["@odata.type"] == "#microsoft.graph.stopHoldMusicOperation"


def test_invite_needs_participants(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call()
    response = graph.post(f"/communications/calls/{call['id']}/participants/invite", json={"clientContext": "x"})
    assert response.status_code == 400
    assert "participants" in response.json()["error"]["message"]


def test_mute_all_is_beta_only(graph: httpx.Client, beta: httpx.Client, new_call: NewCall) -> None:
    call = new_call(targets=2)
    assert graph.post(f"/communications/calls/{call['id']}/participants/muteAll", json={}).status_code == 400
    response = beta.post(f"/communications/calls/{call['id']}/participants/muteAll", json={"participants": []})
    assert response.status_code == 200
    roster = beta.get(f"/communications/calls/{call['id']}/participants").json()["value"]
    assert all(p["isMuted"] for p in roster if p["id"] != call["myParticipantId"])
    legacy = beta.post(f"/app/calls/{call['id']}/participants/muteAll", json={"participants": [""]})
    assert legacy.status_code == 200
