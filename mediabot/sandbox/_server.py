"""Running the sandbox: ``SandboxServer`` (background thread, for tests and the demo) and ``serve`` (foreground CLI).

Both bind the socket first (port 0 → a free port), then run uvicorn with the state directory's TLS certificate.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from ._app import create_sandbox_app
from ._config import AppRegistration, SandboxConfig
from ._platform import CallPlatform
from .routes.callback import CALLBACK_OPENID_PATH

__all__ = ["SandboxServer", "serve"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 30.0


class _NotifyingServer(uvicorn.Server):
    """A uvicorn server that reports when it is listening."""

    def __init__(self, config: uvicorn.Config, platform: CallPlatform) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._platform = platform

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        # Not a lifespan handler: uvicorn skips those on force_exit, which SandboxServer.stop uses.
        await self._platform.aclose()

    def install_signal_handlers(self) -> None:  # pragma: no cover - only relevant on the main thread
        """Leave signals to the host process."""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. Without it every keep-alive response waits ~40 ms on Nagle + delayed ACK,
    # because the response goes out as two writes (headers, then body).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _server(config: SandboxConfig, access_log: bool) -> _NotifyingServer:
    app = create_sandbox_app(config)
    uvicorn_config = uvicorn.Config(
        app,
        ssl_certfile=str(config.cert_path),
        ssl_keyfile=str(config.key_path),
        log_config=None,
        access_log=access_log,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    return _NotifyingServer(uvicorn_config, app.state.sandbox.platform)


def _env(config: SandboxConfig, base_url: str) -> dict[str, str]:
    app = config.default_app
    return {
        "MEDIABOT_TENANT_ID": config.tenant_id,
        "MEDIABOT_CLIENT_ID": app.client_id,
        "MEDIABOT_CLIENT_SECRET": app.client_secret or "",
        "MEDIABOT_AUTHORITY": f"{base_url}/{config.tenant_id}",
        "MEDIABOT_GRAPH_URL": f"{base_url}/v1.0",
        "MEDIABOT_CA_BUNDLE": str(config.cert_path),
        # Before MEDIABOT_SANDBOX_URL: readers of the printed environment (the demo) stop at that last line.
        "MEDIABOT_CALLBACK_OPENID_URL": f"{base_url}{CALLBACK_OPENID_PATH}",
        "MEDIABOT_SANDBOX_URL": base_url,
    }


class SandboxServer:
    """The sandbox on a background thread, plus helpers that call its ``/_sandbox`` admin routes.

    Use as a context manager or with :meth:`start` / :meth:`stop`. Extra keyword ``options`` are
    :class:`SandboxConfig` settings (``notification_ca_path``, ``allow_http_notification_urls``,
    ``sessions_page_size``, ``validation_timeout``, ``answer_deadline``, ``keepalive_timeout``).
    """

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 0, **options: Any) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.port = port
        self._options = options
        self._config: SandboxConfig | None = None
        self._server: _NotifyingServer | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> SandboxServer:
        """Start serving and wait until the sandbox answers."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._config = SandboxConfig.load(self.state_dir, **self._options)
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = _server(self._config, access_log=False)
        thread = threading.Thread(
            target=self._run, args=(server, sock), name=f"mediabot-sandbox:{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        if not server.ready.wait(_START_TIMEOUT) or not thread.is_alive():
            self.stop()
            raise RuntimeError("the sandbox did not start")
        self._client = httpx.Client(base_url=self.base_url, verify=self.ssl_context(), trust_env=False, timeout=30.0)
        self._client.get("/_sandbox/health").raise_for_status()
        logger.info("sandbox listening on %s (tenant %s)", self.base_url, self._config.tenant_id)
        return self

    @staticmethod
    def _run(server: _NotifyingServer, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        finally:
            server.ready.set()
            sock.close()

    def stop(self) -> None:
        """Stop serving and wait for the thread to finish."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None:
            # Tests and the demo stop abruptly; idle keep-alive connections must not hold the shutdown.
            self._server.force_exit = True
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=_START_TIMEOUT)
        self._server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- facts --------------------------------------------------------------------------------------------------
    @property
    def config(self) -> SandboxConfig:
        """The running configuration."""
        if self._config is None:
            raise RuntimeError("the sandbox is not running")
        return self._config

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return f"https://{self.host}:{self.port}"

    @property
    def ca_path(self) -> Path:
        """The certificate to trust (PEM)."""
        return self.config.cert_path

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the sandbox's certificate (for httpx and friends)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    @property
    def tenant_id(self) -> str:
        """The emulated tenant."""
        return self.config.tenant_id

    @property
    def authority(self) -> str:
        """The msal authority: ``https://127.0.0.1:PORT/<tenant>``."""
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        """The Graph v1.0 root."""
        return f"{self.base_url}/v1.0"

    @property
    def callback_openid_url(self) -> str:
        """The OpenID configuration whose keys sign call notifications (``MEDIABOT_CALLBACK_OPENID_URL``)."""
        return f"{self.base_url}{CALLBACK_OPENID_PATH}"

    @property
    def default_app(self) -> AppRegistration:
        """The app with every permission (its secret included)."""
        return self.config.default_app

    @property
    def env(self) -> dict[str, str]:
        """The ``MEDIABOT_*`` settings a bot needs to use this sandbox."""
        return _env(self.config, self.base_url)

    # -- admin helpers ------------------------------------------------------------------------------------------
    def _admin(self) -> httpx.Client:
        if self._client is None:
            raise RuntimeError("the sandbox is not running")
        return self._client

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._admin().post(path, json=body)
        response.raise_for_status()
        return response.json()

    def register_app(
        self,
        roles: list[str] | tuple[str, ...] = (),
        certificate_pem: str | None = None,
        client_secret: str | None = None,
        display_name: str = "mediabot sandbox app",
    ) -> AppRegistration:
        """Register an app with these application permissions (secret generated unless a certificate is given)."""
        data = self._post(
            "/_sandbox/apps",
            {
                "roles": list(roles),
                "certificate_pem": certificate_pem,
                "client_secret": client_secret,
                "display_name": display_name,
            },
        )
        return AppRegistration.from_json(data)

    def inject_fault(
        self,
        method: str,
        path: str,
        status: int | None,
        count: int = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
        match: str = "prefix",
        phase: str = "before",
    ) -> dict[str, Any]:
        """Make the next ``count`` requests matching ``method`` + ``path`` answer ``status`` (after ``delay`` s);
        with ``phase="after"`` the request is applied first, then answered with the fault (or held ``delay`` s)."""
        body = {
            "method": method,
            "path": path,
            "status": status,
            "count": count,
            "retry_after": retry_after,
            "delay": delay,
            "match": match,
            "phase": phase,
        }
        result: dict[str, Any] = self._post("/_sandbox/faults", body)
        return result

    def reset(self) -> dict[str, int]:
        """Forget what earlier work left: faults disarmed, live calls ended, pending callback deliveries stopped."""
        counts: dict[str, int] = self._post("/_sandbox/reset", {})
        return counts

    def clear_faults(self) -> None:
        """Disarm every fault."""
        self._admin().delete("/_sandbox/faults").raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """The request log (method, path, query, client_request_id, request_id, status, app_id)."""
        response = self._admin().get("/_sandbox/requests")
        response.raise_for_status()
        value: list[dict[str, Any]] = response.json()["value"]
        return value

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._admin().delete("/_sandbox/requests").raise_for_status()

    def incoming_call(
        self,
        client_id: str | None = None,
        callback_uri: str | None = None,
        caller_id: str | None = None,
        caller_display_name: str = "Sandbox Caller",
        caller_kind: str = "user",
    ) -> dict[str, Any]:
        """Ring an app (default: the default app) with an incoming call; the call resource."""
        body: dict[str, Any] = {
            "client_id": client_id,
            "callback_uri": callback_uri,
            "caller_display_name": caller_display_name,
            "caller_kind": caller_kind,
        }
        if caller_id is not None:
            body["caller_id"] = caller_id
        result: dict[str, Any] = self._post("/_sandbox/calls/incoming", body)
        return result

    def end_call(self, call_id: str) -> str:
        """End a call as the remote side would; the id of its callRecord."""
        return str(self._post(f"/_sandbox/calls/{call_id}/end", {})["callRecordId"])

    def set_callback(self, client_id: str, callback_uri: str) -> None:
        """Set the callbackUri incoming calls of ``client_id`` use when none is given."""
        self._post(f"/_sandbox/apps/{client_id}/callback", {"callback_uri": callback_uri})

    def send_tones(self, call_id: str, tones: list[str]) -> dict[str, Any]:
        """Press DTMF tones on a call's remote side (notified only if the call subscribed to tones)."""
        result: dict[str, Any] = self._post(f"/_sandbox/calls/{call_id}/tones", {"tones": tones})
        return result

    def notifications(self) -> list[dict[str, Any]]:
        """The notification delivery log (call_id, callback_uri, app_id, outcome, status, notifications, body)."""
        response = self._admin().get("/_sandbox/notifications")
        response.raise_for_status()
        value: list[dict[str, Any]] = response.json()["value"]
        return value

    def clear_notifications(self) -> None:
        """Empty the notification delivery log."""
        self._admin().delete("/_sandbox/notifications").raise_for_status()

    def access_token(self, app: AppRegistration | None = None) -> str:
        """A Graph access token for ``app`` (default app) by client secret, straight from the token endpoint."""
        app = app or self.default_app
        response = self._admin().post(
            f"/{self.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app.client_id,
                "client_secret": app.client_secret or "",
                "scope": "https://graph.microsoft.com/.default",
            },
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def serve(host: str, port: int, state_dir: Path, *, media_ice_loopback: bool = False) -> None:
    """Run the sandbox in the foreground; print the ``MEDIABOT_*`` environment to stdout once it listens."""
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = SandboxConfig.load(Path(state_dir), media_ice_loopback=media_ice_loopback)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    server = _server(config, access_log=False)

    def announce() -> None:
        server.ready.wait()
        if server.should_exit:
            return
        for key, value in _env(config, f"https://{shown_host}:{bound_port}").items():
            sys.stdout.write(f"{key}={value}\n")
        sys.stdout.flush()
        logger.info("sandbox ready on https://%s:%d (tenant %s)", shown_host, bound_port, config.tenant_id)

    threading.Thread(target=announce, name="mediabot-sandbox-announce", daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
