"""Subscriptions, including Graph's validation handshake against a real local HTTPS endpoint."""

from __future__ import annotations

import datetime as dt
import http.server
import ssl
import tempfile
import threading
from pathlib import Path

import httpx

from mediabot.sandbox import SandboxServer
from mediabot.sandbox._crypto import generate_tls_certificate
from tests.conftest import Webhook

from .conftest import graph_client


def _in(minutes: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _body(
    url: str, resource: str = "/communications/callRecords", minutes: int = 60, change: str = "created"
) -> dict[str, object]:
    return {
        "changeType": change,
        "notificationUrl": url,
        "resource": resource,
        "expirationDateTime": _in(minutes),
        "clientState": "secret-state",
    }


def test_create_validates_the_endpoint_then_get_patch_delete(
    graph: httpx.Client, webhook: tuple[str, type[Webhook]]
) -> None:
    url, handler = webhook
    created = graph.post("/subscriptions", json=_body(url))
    assert created.status_code == 201, created.text
    assert handler.seen and handler.seen[0].startswith("Validation:")
    subscription = created.json()
    assert subscription["resource"] == "/communications/callRecords"
    assert graph.get(f"/subscriptions/{subscription['id']}").json()["clientState"] == "secret-state"
    renewed = graph.patch(f"/subscriptions/{subscription['id']}", json={"expirationDateTime": _in(4000)})
    assert renewed.status_code == 200
    too_far = graph.patch(f"/subscriptions/{subscription['id']}", json={"expirationDateTime": _in(4300)})
    assert too_far.status_code == 400
    assert "4230 minutes" in too_far.json()["error"]["message"]
    assert graph.delete(f"/subscriptions/{subscription['id']}").status_code == 204
    assert graph.get(f"/subscriptions/{subscription['id']}").status_code == 404


def test_endpoint_that_does_not_echo_is_refused(graph: httpx.Client, webhook: tuple[str, type[Webhook]]) -> None:
    url, handler = webhook
    handler.mode = "wrong"
    response = graph.post("/subscriptions", json=_body(url))
    assert response.status_code == 400
    assert "validationToken" in response.json()["error"]["message"]
    handler.mode = "fail"
    assert graph.post("/subscriptions", json=_body(url)).status_code == 400


def test_presence_limits_and_url_rules(graph: httpx.Client, webhook: tuple[str, type[Webhook]]) -> None:
    url, _ = webhook
    presence = "/communications/presences/c4c1f54e-0000-4000-8000-000000000009"
    assert graph.post("/subscriptions", json=_body(url, presence, 50, "updated")).status_code == 201
    assert graph.post("/subscriptions", json=_body(url, presence, 61, "updated")).status_code == 400
    assert graph.post("/subscriptions", json=_body(url, presence, 30, "created")).status_code == 400
    http_url = url.replace("https://", "http://")
    assert graph.post("/subscriptions", json=_body(http_url)).status_code == 400
    assert graph.post("/subscriptions", json=_body(url, "me/mailFolders('Inbox')/messages")).status_code == 400
    past = {**_body(url), "expirationDateTime": "2020-01-01T00:00:00Z"}
    assert graph.post("/subscriptions", json=past).status_code == 400


def test_permission_for_the_resource_is_needed(sandbox: SandboxServer, webhook: tuple[str, type[Webhook]]) -> None:
    url, _ = webhook
    app = sandbox.register_app(roles=["Presence.Read.All"])
    with graph_client(sandbox, app) as client:
        denied = client.post("/subscriptions", json=_body(url))
        assert denied.status_code == 403
        assert "CallRecords.Read.All" in denied.json()["error"]["message"]


def test_extra_ca_is_trusted_for_validation(tmp_path: Path) -> None:
    # A webhook certificate (SAN 127.0.0.1) that only the extra CA file vouches for.

    server_cert, server_key = generate_tls_certificate("external webhook")
    ca_file = tmp_path / "extra-ca.pem"
    ca_file.write_bytes(server_cert)
    handler = type("Hook", (Webhook,), {"mode": "echo", "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "c.pem").write_bytes(server_cert)
        (Path(tmp) / "k.pem").write_bytes(server_key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(Path(tmp) / "c.pem", Path(tmp) / "k.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with SandboxServer(tmp_path / "plain") as plain, graph_client(plain) as client:
            assert client.post("/subscriptions", json=_body(url)).status_code == 400
        with (
            SandboxServer(tmp_path / "trusting", notification_ca_path=ca_file) as trusting,
            graph_client(trusting) as client,
        ):
            assert client.post("/subscriptions", json=_body(url)).status_code == 201
    finally:
        server.shutdown()
        server.server_close()
