"""The edge of the app: request ids, faults, the request log, unknown routes."""

from __future__ import annotations

import httpx

from mediabot.sandbox import SandboxServer

from .conftest import call_body


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
