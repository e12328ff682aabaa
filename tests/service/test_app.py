"""The service over real HTTPS: API-key and callback authentication, webhook handshake, request limits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mediabot import CallbackAuthError, ConfigError, Settings
from mediabot.media.engine import MediaEngine
from mediabot.sandbox import SandboxServer
from mediabot.service import call_config, create_app
from mediabot.service.app import media_options
from tests.conftest import sandbox_settings
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


# -- found by fuzzing (tests/service/test_fuzz.py) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b'{"user_ids": NaN}', b'{"user_ids": ' + b"[" * 900 + b"]" * 900 + b"}"],
    ids=["nan", "deep"],
)
def test_a_422_renders_whatever_the_input_was(service: ServiceServer, body: bytes) -> None:
    # The 422 page echoed the input back, and rendering NaN (not JSON) or a 900-deep array failed: a 500.
    response = service.client.post("/v1/calls", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "user_ids"]
    assert "input" not in response.json()["detail"][0]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/calls", b'{"user_ids": ["\\ud800"]}'), ("/v1/meetings", b'{"organizer_id": "\\udc00"}')],
)
def test_text_that_is_not_unicode_never_reaches_graph(
    service: ServiceServer, sandbox: SandboxServer, path: str, body: bytes
) -> None:
    # An unpaired surrogate escape became a str httpx could not encode on the way to Graph: a 500.
    response = service.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert service.client.get("/v1/calls").json() == {"value": []}


@pytest.mark.parametrize("user_id", ["%2E%2E", "a%3Fb=c", "a%23b", "a%251", "a%1Fb", "a%5Cb"])
def test_a_presence_id_that_would_change_the_graph_url_is_refused(service: ServiceServer, user_id: str) -> None:
    # /users/../presence became /presence, "?" and "#" cut the path, and "\x1f" made httpx raise (a 500).
    assert service.client.get(f"/v1/presence/{user_id}").status_code == 422


def test_an_organizer_id_cannot_move_the_meeting_request(service: ServiceServer, sandbox: SandboxServer) -> None:
    # {"organizer_id": "../../x"} was POSTed, with the bot's token, to Graph's /x/onlineMeetings.
    response = service.client.post("/v1/meetings", json={"organizer_id": "../../x", "subject": "s"})
    assert response.status_code == 422
    assert service.client.post("/v1/meetings", json={"organizer_id": "adele@contoso.com"}).status_code == 201


def test_a_join_link_is_checked_before_media_is_prepared(service: ServiceServer) -> None:
    media = service.app.state.media
    before = len(media.sessions())
    response = service.client.post("/v1/meetings/join", json={"join_web_url": "https://example.com/nope"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "join_web_url"]
    assert len(media.sessions()) == before


def test_a_webhook_post_with_a_body_is_read_as_notifications_even_with_a_token(service: ServiceServer) -> None:
    # Graph's validation handshake has no body; a body is notifications, and is parsed (it was echoed unread).
    echo = service.client.post("/api/notifications", params={"validationToken": "<b>t</b>"})
    assert echo.text == "<b>t</b>" and echo.headers["x-content-type-options"] == "nosniff"
    refused = service.client.post("/api/notifications", params={"validationToken": "t"}, content=b"{not json")
    assert refused.status_code == 400


def test_the_recordings_offset_stays_within_what_sqlite_takes(service: ServiceServer) -> None:
    # offset=2**63 reached SQLite, which raised OverflowError: a 500.
    assert service.client.get("/v1/recordings", params={"offset": 2**63}).status_code == 422
    assert service.client.get("/v1/recordings", params={"offset": 2**63 - 1}).json()["recordings"] == []


async def test_a_failing_shutdown_step_does_not_skip_the_ones_after_it(sandbox: SandboxServer, tmp_path: Path) -> None:
    class Broken(MediaEngine):
        async def stop(self) -> None:
            await super().stop()
            raise RuntimeError("stopping broke")

    settings = sandbox_settings(
        sandbox,
        callback_openid_url=sandbox.callback_openid_url,
        public_url="https://127.0.0.1:9",
        transcriber="none",
        output_dir=tmp_path,
    )
    app = create_app(settings, media=Broken(media_options(settings)))
    with pytest.raises(RuntimeError, match="stopping broke"):
        async with app.router.lifespan_context(app):
            authenticator = app.state.authenticator
    # Stopped after the media: its HTTP client and key refresh are closed although the media's stop raised.
    with pytest.raises(CallbackAuthError, match="closed"):
        await authenticator.authenticate("Bearer x.y.z")
