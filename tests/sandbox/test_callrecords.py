"""Call records filed when calls end, with expansion and paging."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from mediabot.sandbox import SandboxServer

NewCall = Callable[..., dict[str, Any]]


def test_sessions_are_paged_by_next_link(graph: httpx.Client, new_call: NewCall, sandbox: SandboxServer) -> None:
    call = new_call(targets=3)
    record_id = sandbox.end_call(call["id"])
    assert record_id == call["callChainId"]
    page = graph.get(f"/communications/callRecords/{record_id}/sessions").json()
    seen = [s["id"] for s in page["value"]]
    assert len(seen) == 2
    assert "segments" not in page["value"][0]
    next_link = page["@odata.nextLink"]
    assert next_link.startswith(sandbox.graph_url)
    page = graph.get(next_link.removeprefix(sandbox.graph_url)).json()
    seen += [s["id"] for s in page["value"]]
    assert "@odata.nextLink" not in page
    assert len(set(seen)) == 3
    one_page = graph.get(
        f"/communications/callRecords/{record_id}/sessions", params={"$top": "10", "$expand": "segments"}
    )
    assert len(one_page.json()["value"]) == 3
    assert one_page.json()["value"][0]["segments"]


def test_record_with_and_without_expand(graph: httpx.Client, new_call: NewCall) -> None:
    call = new_call()
    assert graph.delete(f"/communications/calls/{call['id']}").status_code == 204
    plain = graph.get(f"/communications/callRecords/{call['callChainId']}").json()
    assert plain["type"] == "peerToPeer"
    assert "sessions" not in plain
    expanded = graph.get(
        f"/communications/callRecords/{call['callChainId']}", params={"$expand": "sessions($expand=segments)"}
    ).json()
    assert expanded["sessions"][0]["segments"][0]["media"]
    assert graph.get("/communications/callRecords/nope").status_code == 404
