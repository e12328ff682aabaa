"""The service on a real port (uvicorn in a thread, HTTPS with the sandbox's certificate), set up from the sandbox."""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mediabot import Settings
from mediabot.calls import Bot
from mediabot.sandbox import SandboxServer
from mediabot.service import create_app

API_KEY = "test-api-key-0123456789"


class ServiceServer:
    """A running service: its base URL, settings, and an httpx client with the API key."""

    def __init__(self, sandbox: SandboxServer, bot: Bot | None = None, **overrides: Any) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        port = self._sock.getsockname()[1]
        self.base_url = f"https://127.0.0.1:{port}"
        env = sandbox.env
        values: dict[str, Any] = {
            "tenant_id": env["MEDIABOT_TENANT_ID"],
            "client_id": env["MEDIABOT_CLIENT_ID"],
            "client_secret": env["MEDIABOT_CLIENT_SECRET"],
            "authority": env["MEDIABOT_AUTHORITY"],
            "graph_url": env["MEDIABOT_GRAPH_URL"],
            "ca_bundle": env["MEDIABOT_CA_BUNDLE"],
            "callback_openid_url": env.get("MEDIABOT_CALLBACK_OPENID_URL", f"{sandbox.base_url}/callback/none"),
            "public_url": self.base_url,
            "api_key": API_KEY,
            "graph_max_backoff": 0.05,
            "output_dir": Path(tempfile.mkdtemp(prefix="mediabot-service-")),
        }
        values.update(overrides)
        self.settings = Settings(_env_file=None, **values)
        self.bot = bot or Bot()
        self.app = create_app(self.settings, bot=self.bot)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=str(sandbox.config.cert_path),
            ssl_keyfile=str(sandbox.config.key_path),
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self.ssl_context = sandbox.ssl_context()
        self.client = httpx.Client(
            base_url=self.base_url,
            verify=self.ssl_context,
            trust_env=False,
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        )

    def start(self) -> ServiceServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the service did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.client.close()
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    @property
    def manager(self) -> Any:
        return self.app.state.manager


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    """Poll until ``predicate()`` holds; fail naming ``what`` (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def service(sandbox: SandboxServer) -> Iterator[ServiceServer]:
    server = ServiceServer(sandbox).start()
    try:
        yield server
    finally:
        server.stop()


def incoming_call(call_id: str) -> dict[str, Any]:
    """A commsNotifications body announcing an incoming call, as Graph POSTs it to the callback."""
    return {
        "value": [
            {
                "changeType": "created",
                "resourceUrl": f"/communications/calls/{call_id}",
                "resourceData": {"@odata.type": "#microsoft.graph.call", "state": "incoming", "direction": "incoming"},
            }
        ]
    }
