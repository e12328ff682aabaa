"""Online meetings with application permissions."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from mediabot.graph.join_url import parse_join_web_url


def test_create_get_and_find_by_join_url_and_meeting_id(graph: httpx.Client) -> None:
    created = graph.post("/users/organizer-1/onlineMeetings", json={"subject": "Standup"})
    assert created.status_code == 201
    meeting = created.json()
    assert meeting["participants"]["organizer"]["identity"]["user"]["id"] == "organizer-1"
    assert graph.get(f"/users/organizer-1/onlineMeetings/{meeting['id']}").json()["subject"] == "Standup"
    assert graph.get(f"/users/someone-else/onlineMeetings/{meeting['id']}").status_code == 404
    by_url = graph.get(
        "/users/organizer-1/onlineMeetings", params={"$filter": f"JoinWebUrl eq '{meeting['joinWebUrl']}'"}
    ).json()["value"]
    assert [m["id"] for m in by_url] == [meeting["id"]]
    join_id = meeting["joinMeetingIdSettings"]["joinMeetingId"]
    by_id = graph.get(
        "/users/organizer-1/onlineMeetings", params={"$filter": f"joinMeetingIdSettings/joinMeetingId eq '{join_id}'"}
    ).json()["value"]
    assert [m["id"] for m in by_id] == [meeting["id"]]
    none = graph.get("/users/organizer-1/onlineMeetings", params={"$filter": "JoinWebUrl eq 'https://nope'"})
    assert none.json()["value"] == []
    assert graph.get("/users/organizer-1/onlineMeetings").status_code == 400


def test_join_web_url_is_a_real_teams_link(graph: httpx.Client) -> None:
    meeting = graph.post("/users/organizer-2/onlineMeetings", json={}).json()
    info = parse_join_web_url(meeting["joinWebUrl"])
    assert info.thread_id == meeting["chatInfo"]["threadId"]
    assert info.organizer_id == "organizer-2"
    encoded = graph.get(
        f"/users/organizer-2/onlineMeetings?$filter=JoinWebUrl%20eq%20'{quote(meeting['joinWebUrl'], safe='')}'"
    )
    assert [m["id"] for m in encoded.json()["value"]] == [meeting["id"]]


def test_create_or_get_is_201_then_200(graph: httpx.Client) -> None:
    body = {"externalId": "ext-42", "subject": "Once"}
    first = graph.post("/users/organizer-3/onlineMeetings/createOrGet", json=body)
    second = graph.post("/users/organizer-3/onlineMeetings/createOrGet", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert graph.post("/users/organizer-3/onlineMeetings/createOrGet", json={"subject": "x"}).status_code == 400


def test_me_is_refused_for_app_tokens(graph: httpx.Client) -> None:
    response = graph.post("/me/onlineMeetings", json={"subject": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "/me request is only valid with delegated authentication flow."
