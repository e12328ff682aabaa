"""The sandbox's configuration and its persistent identity in the state directory.

State directory layout (directory 0700, files 0600)::

    cert.pem, key.pem     self-signed TLS certificate (its own CA) and key
    signing-key.pem       RSA key that signs access tokens (published in the JWKS)
    callback-signing-key.pem  RSA key that signs call notifications (published at ``/callback/keys``)
    tenant.json           {"tenant_id": ...}
    apps.json             the app registrations, default app first (client secrets included: it is a local emulator)

A restart on the same directory keeps the tenant, the credentials and the certificates.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import uuid
from pathlib import Path
from typing import Any

from ._crypto import generate_rsa_key_pem, generate_tls_certificate, key_id, thumbprints
from ._permissions import ALL_PERMISSIONS

__all__ = ["AppRegistration", "SandboxConfig", "new_client_secret"]

_CERT = "cert.pem"
_KEY = "key.pem"
_SIGNING_KEY = "signing-key.pem"
_CALLBACK_SIGNING_KEY = "callback-signing-key.pem"
_TENANT = "tenant.json"
_APPS = "apps.json"


def new_client_secret() -> str:
    """A random client secret in Entra's style (40 URL-safe characters)."""
    return secrets.token_urlsafe(30)


@dataclasses.dataclass(frozen=True)
class AppRegistration:
    """One Entra app registration: its client id, credentials and granted application permissions (roles)."""

    client_id: str
    client_secret: str | None = None
    roles: tuple[str, ...] = ()
    certificate_pem: str | None = None
    display_name: str = "mediabot sandbox app"

    @property
    def object_id(self) -> str:
        """The service principal's object id (stable, derived from the client id)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mediabot-sandbox:sp:{self.client_id}"))

    @property
    def certificate_thumbprints(self) -> tuple[str, str] | None:
        """``(x5t, x5t#S256)`` of the registered certificate, if any."""
        return thumbprints(self.certificate_pem) if self.certificate_pem else None

    def to_json(self, *, include_secret: bool = True) -> dict[str, Any]:
        """The registration as JSON (the secret only when asked for)."""
        data = dataclasses.asdict(self)
        data["roles"] = list(self.roles)
        if not include_secret:
            data.pop("client_secret")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppRegistration:
        """Inverse of :meth:`to_json`."""
        return cls(
            client_id=str(data["client_id"]),
            client_secret=data.get("client_secret"),
            roles=tuple(data.get("roles", ())),
            certificate_pem=data.get("certificate_pem"),
            display_name=str(data.get("display_name", "mediabot sandbox app")),
        )


@dataclasses.dataclass
class SandboxConfig:
    """Everything ``create_sandbox_app`` needs; build it with :meth:`load`."""

    state_dir: Path
    tenant_id: str
    signing_key_pem: bytes
    apps: list[AppRegistration]
    #: RSA key (PEM) signing the bearer tokens of call notifications POSTed to callbackUris
    callback_signing_key_pem: bytes
    #: extra CA bundle trusted for subscription validation requests (besides the sandbox's own certificate)
    notification_ca_path: Path | None = None
    #: accept ``http://`` notification URLs (Graph requires HTTPS; for local bots without TLS only)
    allow_http_notification_urls: bool = False
    #: default page size of ``callRecords/{id}/sessions`` (small so clients exercise ``@odata.nextLink``)
    sessions_page_size: int = 2
    #: seconds a notification endpoint has to answer Graph's validation request
    validation_timeout: float = 10.0
    #: seconds an incoming call rings before the platform gives up on it (Graph: 15 s)
    answer_deadline: float = 15.0
    #: seconds a call lives without a keepAlive request (Graph: 45 minutes)
    keepalive_timeout: float = 45 * 60.0
    #: the media relay also offers ICE host candidates on 127.0.0.1 (hosts with only loopback)
    media_ice_loopback: bool = False

    @property
    def cert_path(self) -> Path:
        """The TLS certificate (PEM); also the CA bundle clients trust."""
        return self.state_dir / _CERT

    @property
    def key_path(self) -> Path:
        """The TLS private key (PEM)."""
        return self.state_dir / _KEY

    @property
    def signing_kid(self) -> str:
        """The ``kid`` of the token-signing key."""
        return key_id(self.signing_key_pem)

    @property
    def callback_signing_kid(self) -> str:
        """The ``kid`` of the call-notification signing key."""
        return key_id(self.callback_signing_key_pem)

    @property
    def default_app(self) -> AppRegistration:
        """The app created on first start, granted every permission."""
        return self.apps[0]

    @classmethod
    def load(cls, state_dir: Path, **options: Any) -> SandboxConfig:
        """Read the state directory, creating whatever is missing (keys, tenant, default app)."""
        state_dir = Path(state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        state_dir.chmod(0o700)
        if not (state_dir / _CERT).is_file() or not (state_dir / _KEY).is_file():
            cert_pem, key_pem = generate_tls_certificate()
            _write_private(state_dir / _KEY, key_pem)
            _write_private(state_dir / _CERT, cert_pem)
        if not (state_dir / _SIGNING_KEY).is_file():
            _write_private(state_dir / _SIGNING_KEY, generate_rsa_key_pem())
        if not (state_dir / _CALLBACK_SIGNING_KEY).is_file():
            _write_private(state_dir / _CALLBACK_SIGNING_KEY, generate_rsa_key_pem())
        if not (state_dir / _TENANT).is_file():
            _write_private(state_dir / _TENANT, json.dumps({"tenant_id": str(uuid.uuid4())}).encode())
        if not (state_dir / _APPS).is_file():
            default = AppRegistration(
                client_id=str(uuid.uuid4()),
                client_secret=new_client_secret(),
                roles=ALL_PERMISSIONS,
                display_name="mediabot sandbox default app",
            )
            _write_private(state_dir / _APPS, json.dumps([default.to_json()], indent=2).encode())
        tenant = json.loads((state_dir / _TENANT).read_text("utf-8"))
        apps = [AppRegistration.from_json(item) for item in json.loads((state_dir / _APPS).read_text("utf-8"))]
        return cls(
            state_dir=state_dir,
            tenant_id=str(tenant["tenant_id"]),
            signing_key_pem=(state_dir / _SIGNING_KEY).read_bytes(),
            apps=apps,
            callback_signing_key_pem=(state_dir / _CALLBACK_SIGNING_KEY).read_bytes(),
            **options,
        )

    def save_apps(self, apps: list[AppRegistration]) -> None:
        """Persist the app registrations (called when one is added at runtime)."""
        self.apps = list(apps)
        payload = json.dumps([app.to_json() for app in self.apps], indent=2).encode()
        _write_private(self.state_dir / _APPS, payload)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
