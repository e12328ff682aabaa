"""Helpers for the sandbox tests: an authenticated Graph client, limited apps, call factories."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mediabot.sandbox import AppRegistration, SandboxServer
from mediabot.sandbox._crypto import generate_tls_certificate

SERVICE_MEDIA = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}
APP_MEDIA = {"@odata.type": "#microsoft.graph.appHostedMediaConfig", "blob": "eyJ2IjoxfQ"}


def user_target(user_id: str | None = None) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.invitationParticipantInfo",
        "identity": {
            "@odata.type": "#microsoft.graph.identitySet",
            "user": {"@odata.type": "#microsoft.graph.identity", "id": user_id or str(uuid.uuid4())},
        },
    }


def call_body(targets: int = 1, media: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": "https://bot.example.com/api/calling",
        "targets": [user_target() for _ in range(targets)],
        "requestedModalities": ["audio"],
        "mediaConfig": media or SERVICE_MEDIA,
    }


def graph_client(sandbox: SandboxServer, app: AppRegistration | None = None, version: str = "v1.0") -> httpx.Client:
    token = sandbox.access_token(app)
    return httpx.Client(
        base_url=f"{sandbox.base_url}/{version}",
        verify=sandbox.ssl_context(),
        trust_env=False,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30.0,
    )


def make_certificate(common_name: str = "mediabot test app") -> tuple[str, str]:
    """A self-signed certificate and its key (PEM strings), to register as an app's client credential."""
    cert_pem, key_pem = generate_tls_certificate(common_name)
    return cert_pem.decode(), key_pem.decode()


def admin_client(sandbox: SandboxServer) -> httpx.Client:
    """A client of the sandbox's ``/_sandbox`` control plane."""
    return httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context(), trust_env=False, timeout=30.0)


def arm_fault(sandbox: SandboxServer, method: str, path: str, **fault: Any) -> dict[str, Any]:
    """Arm a fault with any ``POST /_sandbox/faults`` option (``phase`` included); exact path match by default."""
    with admin_client(sandbox) as admin:
        response = admin.post("/_sandbox/faults", json={"method": method, "path": path, "match": "exact", **fault})
    assert response.status_code == 201, response.text
    armed: dict[str, Any] = response.json()
    return armed


@pytest.fixture(scope="session")
def graph(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """A Graph v1.0 client authenticated as the default (all-permissions) app."""
    with graph_client(sandbox) as client:
        yield client


@pytest.fixture(scope="session")
def beta(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """A Graph beta client authenticated as the default app."""
    with graph_client(sandbox, version="beta") as client:
        yield client


@pytest.fixture
def new_call(graph: httpx.Client) -> Callable[..., dict[str, Any]]:
    """Create an outgoing call (default: P2P, service-hosted media) and return it."""

    def create(targets: int = 1, media: dict[str, Any] | None = None) -> dict[str, Any]:
        response = graph.post("/communications/calls", json=call_body(targets, media))
        assert response.status_code == 201, response.text
        call: dict[str, Any] = response.json()
        return call

    return create
