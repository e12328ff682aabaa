"""Fixtures shared by the whole suite."""

from __future__ import annotations

import http.server
import logging
import os
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mediabot import Settings
from mediabot.logs import CHATTY_LOGGERS, PACKET_LOGGERS
from mediabot.sandbox import AppRegistration, SandboxServer

REPO_ROOT = Path(__file__).resolve().parents[1]


def _graph_contract_dir() -> Path:
    override = os.environ.get("MEDIABOT_GRAPH_CONTRACT")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "graph"


@pytest.fixture(scope="session")
def graph_contract() -> Path:
    """The folder of Microsoft's documented examples, notifications and schemas (../shared/graph)."""
    path = _graph_contract_dir()
    if not (path / "index.json").is_file():
        pytest.fail(f"the Graph contract data is missing at {path} (set MEDIABOT_GRAPH_CONTRACT)")
    return path


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """A running mediabot sandbox (Entra + Graph emulator over HTTPS) with a fresh state dir, shared by the session."""
    with SandboxServer(tmp_path_factory.mktemp("sandbox-state")) as server:
        yield server


@pytest.fixture(autouse=True)
def _nothing_outlives_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session's sandbox forgets a finished test: no fault stays armed, no call stays live, no callback delivery
    keeps being retried into the next test's logs."""
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").reset()


class Webhook(http.server.BaseHTTPRequestHandler):
    mode = "echo"
    seen: list[str] = []

    def do_POST(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        token = query.get("validationToken", [""])[0]
        self.seen.append(token)
        body = (token if self.mode == "echo" else "something else").encode()
        self.send_response(200 if self.mode != "fail" else 500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def webhook(sandbox: SandboxServer) -> Iterator[tuple[str, type[Webhook]]]:
    """An HTTPS webhook echoing Graph's validationToken (with the sandbox's own certificate, which it trusts)."""
    handler = type("Hook", (Webhook,), {"mode": "echo", "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sandbox.config.cert_path, sandbox.config.key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/api/notifications", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Umask 000: anything not explicitly private would be world-readable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def sandbox_settings(sandbox: SandboxServer, app: AppRegistration | None = None, **overrides: Any) -> Settings:
    """Settings for a bot using the sandbox, as its printed environment would give them."""
    app = app or sandbox.default_app
    values: dict[str, Any] = {
        "tenant_id": sandbox.tenant_id,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "authority": sandbox.authority,
        "graph_url": sandbox.graph_url,
        "ca_bundle": sandbox.ca_path,
        "graph_max_backoff": 0.05,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """A test may reconfigure the root logger and the chatty libraries' levels; put them back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in (*CHATTY_LOGGERS, *PACKET_LOGGERS)}
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
