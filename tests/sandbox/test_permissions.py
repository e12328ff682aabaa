"""The permission table, enforced with limited apps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mediabot.sandbox import SandboxServer
from mediabot.sandbox._permissions import ALL_PERMISSIONS, OPERATION_PERMISSIONS, missing_permission

from .conftest import APP_MEDIA, call_body, graph_client

ROUTES = Path(__file__).resolve().parents[2] / "mediabot" / "sandbox" / "routes"


def test_every_permission_in_the_table_is_a_known_role() -> None:
    for needed in OPERATION_PERMISSIONS.values():
        assert set(needed) <= set(ALL_PERMISSIONS)
    assert missing_permission("calls.create.p2p", {"Calls.Initiate.All"}) is None
    assert missing_permission("calls.create.group", {"Calls.Initiate.All"}) == ("Calls.InitiateGroupCalls.All",)


def test_every_operation_named_by_a_route_is_in_the_table() -> None:
    named: set[str] = set()
    for source in ROUTES.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "require_permission":
                argument = node.args[1]
                if isinstance(argument, ast.Constant):
                    named.add(argument.value)
    assert named
    assert named <= set(OPERATION_PERMISSIONS)


@pytest.mark.parametrize(
    ("roles", "targets", "media", "status", "needed"),
    [
        ([], 1, None, 403, "Calls.Initiate.All"),
        (["Calls.Initiate.All"], 1, None, 201, None),
        (["Calls.Initiate.All"], 2, None, 403, "Calls.InitiateGroupCalls.All"),
        (["Calls.InitiateGroupCalls.All"], 2, None, 201, None),
        (["Calls.Initiate.All"], 1, APP_MEDIA, 403, "Calls.AccessMedia.All"),
        (["Calls.Initiate.All", "Calls.AccessMedia.All"], 1, APP_MEDIA, 201, None),
    ],
)
def test_create_call_permissions(
    sandbox: SandboxServer,
    roles: list[str],
    targets: int,
    media: dict[str, str] | None,
    status: int,
    needed: str | None,
) -> None:
    app = sandbox.register_app(roles=roles)
    with graph_client(sandbox, app) as client:
        response = client.post("/communications/calls", json=call_body(targets, media))
    assert response.status_code == status, response.text
    if needed:
        error = response.json()["error"]
        assert error["code"] == "Forbidden"
        assert needed in error["message"]


def test_presence_meetings_and_records_need_their_permissions(sandbox: SandboxServer) -> None:
    reader = sandbox.register_app(roles=["Presence.Read.All", "OnlineMeetings.Read.All"])
    with graph_client(sandbox, reader) as client:
        assert client.get("/users/u1/presence").status_code == 200
        body = {"sessionId": reader.client_id, "availability": "Away", "activity": "Away"}
        denied = client.post("/users/u1/presence/setPresence", json=body)
        assert denied.status_code == 403
        assert "Presence.ReadWrite.All" in denied.json()["error"]["message"]
        assert client.post("/users/u1/onlineMeetings", json={}).status_code == 403
        assert client.get("/communications/callRecords/x").status_code == 403
        assert client.get("/users/u1/onlineMeetings", params={"$filter": "JoinWebUrl eq 'x'"}).status_code == 200
