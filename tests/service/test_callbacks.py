"""Callbacks signed with the sandbox platform's real key: every documented notification accepted, bad claims refused."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from mediabot.sandbox import SandboxServer
from tests.service.conftest import ServiceServer, incoming_call


def _token(sandbox: SandboxServer, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": "https://graph.microsoft.com",
        "aud": sandbox.default_app.client_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    key = sandbox.config.callback_signing_key_pem
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": sandbox.config.callback_signing_kid})


def _post(service: ServiceServer, body: Any, token: str) -> httpx.Response:
    return httpx.post(
        f"{service.base_url}/api/calling",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        verify=service.ssl_context,
    )


@pytest.mark.parametrize(
    ("name", "claims"),
    [
        ("expired", {"iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200, "exp": int(time.time()) - 3600}),
        ("not yet valid", {"nbf": int(time.time()) + 3600, "exp": int(time.time()) + 7200}),
        ("wrong audience", {"aud": "00000000-0000-0000-0000-000000000000"}),
        ("wrong issuer", {"iss": "https://evil.example.com"}),
        ("no expiry", {"exp": None}),
    ],
)
def test_tokens_signed_by_the_right_key_with_wrong_claims_are_refused(
    service: ServiceServer, sandbox: SandboxServer, name: str, claims: dict[str, Any]
) -> None:
    call_id = f"refused-{name.replace(' ', '-')}"
    response = _post(service, incoming_call(call_id), _token(sandbox, **claims))
    assert response.status_code == 401, name
    assert service.manager.get(call_id) is None


def test_a_tampered_payload_is_refused(service: ServiceServer, sandbox: SandboxServer) -> None:
    header, payload, signature = _token(sandbox).split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["aud"] = "someone-else"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    assert _post(service, incoming_call("tampered"), f"{header}.{forged}.{signature}").status_code == 401
    assert service.manager.get("tampered") is None


def test_every_documented_comms_notification_is_accepted_when_signed(
    service: ServiceServer, sandbox: SandboxServer, graph_contract: Path
) -> None:
    accepted = 0
    for path in sorted((graph_contract / "notifications").glob("*.json")):
        document = json.loads(path.read_text())
        if not document["kind"].startswith("commsNotifications"):
            continue
        response = _post(service, document["body"], _token(sandbox))
        assert response.status_code == 202, f"{path.name}: {response.status_code} {response.text}"
        accepted += 1
    assert accepted >= 90


def test_a_signed_body_that_is_not_a_notification_is_a_400(service: ServiceServer, sandbox: SandboxServer) -> None:
    assert _post(service, {"value": "nope"}, _token(sandbox)).status_code == 400
    assert _post(service, [1, 2, 3], _token(sandbox)).status_code == 400
