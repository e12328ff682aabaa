"""The service over real HTTPS: API-key and callback authentication, webhook handshake, request limits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mediabot import ConfigError, Settings
from mediabot.sandbox import SandboxServer
from mediabot.service import call_config
from tests.service.conftest import ServiceServer


def test_settings_without_a_public_url_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="MEDIABOT_PUBLIC_URL"):
        call_config(Settings(_env_file=None))


def test_the_operator_api_needs_the_key(service: ServiceServer) -> None:
    assert service.client.get("/v1/calls").json() == {"value": []}
    bare = httpx.get(f"{service.base_url}/v1/calls", verify=service.ssl_context)
    assert bare.status_code == 401
    wrong = service.client.get("/v1/calls", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert service.client.get("/healthz").json()["status"] == "ok"
    assert "/v1/calls" in service.client.get("/openapi.json").json()["paths"]


def _forged(audience: str, **claims: object) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    payload = {"iss": "https://graph.microsoft.com", "aud": audience, "iat": now, "nbf": now, "exp": now + 300}
    payload.update(claims)
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "forged"})


INCOMING = {
    "value": [
        {
            "changeType": "created",
            "resourceUrl": "/communications/calls/forged-call",
            "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "incoming", "direction": "incoming"},
        }
    ]
}


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer not.a.jwt", "forged", "none"])
def test_unauthenticated_callbacks_get_401_and_change_nothing(
    service: ServiceServer, sandbox: SandboxServer, header: str | None
) -> None:
    if header == "forged":
        header = f"Bearer {_forged(service.settings.client_id)}"
    elif header == "none":
        header = "Bearer " + jwt.encode({"aud": service.settings.client_id}, None, algorithm="none")
    headers = {"Authorization": header} if header else {}
    response = httpx.post(
        f"{service.base_url}/api/calling", json=INCOMING, headers=headers, verify=sandbox.ssl_context()
    )
    assert response.status_code == 401
    assert service.manager.get("forged-call") is None


def test_the_webhook_echoes_the_validation_token_as_plain_text(service: ServiceServer) -> None:
    response = service.client.post("/api/notifications", params={"validationToken": "Validation: a<b & c"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Validation: a<b & c"


def test_webhook_notifications_of_unknown_subscriptions_are_ignored(service: ServiceServer) -> None:
    item = {"subscriptionId": "x", "clientState": "y", "changeType": "created", "resource": "callRecords/abc"}
    body = {"value": [item]}
    assert service.client.post("/api/notifications", json=body).status_code == 202
    assert service.client.get("/v1/callrecords").json() == {"value": []}
    assert service.client.post("/api/notifications", content=b"{not json").status_code == 400


def test_oversized_bodies_are_refused(sandbox: SandboxServer) -> None:
    server = ServiceServer(sandbox, max_callback_bytes=1024).start()
    try:
        big = json.dumps({"value": [{"pad": "x" * 4096}]})
        assert server.client.post("/api/notifications", content=big).status_code == 413
    finally:
        server.stop()


def test_the_cli_serve_help_names_the_settings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mediabot.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "MEDIABOT_PUBLIC_URL" in result.stdout and "/api/calling" in result.stdout


def test_operator_errors_are_http_errors_not_500s(service: ServiceServer) -> None:
    assert service.client.get("/v1/calls/nope").status_code == 404
    assert service.client.delete("/v1/calls/nope").status_code == 404
    assert service.client.post("/v1/calls/nope/transfer", json={"user_id": "u"}).status_code == 404
    assert service.client.post("/v1/calls", json={"user_ids": []}).status_code == 422
    joined = service.client.post("/v1/meetings/join", json={"join_web_url": "https://example.com/not-a-meeting"})
    assert joined.status_code == 422
    missing = "https://teams.microsoft.com/meet/999999999?p=x"
    assert service.client.post("/v1/meetings/join", json={"join_web_url": missing}).status_code == 404
