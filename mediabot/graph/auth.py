"""App-only access tokens for Graph, from msal's ConfidentialClientApplication (client secret or certificate)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mediabot._errors import ConfigError, GraphAuthError
from mediabot.config import Settings

__all__ = ["CertificateCredential", "TokenProvider", "load_certificate_credential"]

logger = logging.getLogger(__name__)

# A cached token is used until this many seconds before it expires, so a request never leaves with a token
# that dies in flight.
REFRESH_MARGIN_S = 300.0


@dataclass(frozen=True)
class CertificateCredential:
    """An app certificate as msal wants it: PEM private key, SHA-1 thumbprint (hex), PEM certificate."""

    private_key_pem: str
    thumbprint: str
    certificate_pem: str

    def as_msal(self) -> dict[str, str]:
        """The ``client_credential`` mapping msal accepts for certificate auth."""
        return {
            "private_key": self.private_key_pem,
            "thumbprint": self.thumbprint,
            "public_certificate": self.certificate_pem,
        }


def load_certificate_credential(path: Path, thumbprint: str | None = None) -> CertificateCredential:
    """Read a PEM file holding the app's certificate and its private key; compute the thumbprint if not given."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the certificate file {path}: {exc.strerror}") from exc
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{path} holds no PEM certificate") from exc
    key: PrivateKeyTypes
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path} holds no unencrypted PEM private key") from exc
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    computed = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER), usedforsecurity=False).hexdigest()
    if thumbprint is not None and thumbprint.replace(":", "").lower() != computed:
        raise ConfigError(f"the certificate thumbprint setting does not match {path} (its SHA-1 is {computed})")
    return CertificateCredential(
        private_key_pem=key_pem,
        thumbprint=computed.upper(),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
    )


class TokenProvider:
    """Hands out Graph access tokens for the app; msal's token cache is reused and refreshes run off the loop."""

    def __init__(self, settings: Settings, *, http_session: requests.Session | None = None) -> None:
        if not settings.tenant_id or not settings.client_id:
            raise ConfigError("MEDIABOT_TENANT_ID and MEDIABOT_CLIENT_ID are required to get Graph tokens")
        credential: str | dict[str, str]
        if settings.certificate_path is not None:
            credential = load_certificate_credential(
                settings.certificate_path, settings.certificate_thumbprint
            ).as_msal()
        elif settings.client_secret is not None:
            credential = settings.client_secret.get_secret_value()
        else:
            raise ConfigError("set MEDIABOT_CLIENT_SECRET or MEDIABOT_CERTIFICATE_PATH to get Graph tokens")
        self._credential = credential
        self._client_id = settings.client_id
        self._authority = settings.effective_authority
        self._scopes = [settings.graph_scope]
        self._timeout = settings.graph_timeout
        self._session = http_session or _make_session(settings.ca_bundle, settings.proxy_url)
        self._app: msal.ConfidentialClientApplication | None = None
        self._app_lock = threading.Lock()
        self._refresh_lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.requests_to_authority = 0
        """How many times a token was fetched from the authority rather than a cache (for tests and metrics)."""

    async def get_token(self) -> str:
        """A valid access token: from memory when fresh, else from msal (its cache, then the authority)."""
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        async with self._refresh_lock:
            if self._token is not None and time.monotonic() < self._expires_at:
                return self._token
            result = await asyncio.to_thread(self._acquire)
            self._token = str(result["access_token"])
            lifetime = float(result.get("expires_in", 3600))
            self._expires_at = time.monotonic() + max(lifetime - REFRESH_MARGIN_S, lifetime / 2)
            return self._token

    def invalidate(self) -> None:
        """Forget the in-memory token so the next call asks msal again."""
        self._token = None
        self._expires_at = 0.0

    def close(self) -> None:
        """Close the HTTP session msal uses."""
        self._session.close()

    def _application(self) -> msal.ConfidentialClientApplication:
        # msal fetches the authority's OpenID configuration in its constructor, so this runs in a worker thread.
        with self._app_lock:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._credential,
                    authority=self._authority,
                    http_client=self._session,
                    timeout=self._timeout,
                    instance_discovery=False,
                    token_cache=msal.TokenCache(),
                )
            return self._app

    def _acquire(self) -> dict[str, Any]:
        try:
            result: dict[str, Any] | None = self._application().acquire_token_for_client(scopes=self._scopes)
        except (requests.RequestException, ValueError) as exc:
            # msal raises ValueError when the authority's discovery document is unusable.
            raise GraphAuthError(f"token authority {self._authority} unreachable or invalid: {exc}") from exc
        if not result or "access_token" not in result:
            result = result or {}
            error = str(result.get("error", "unknown_error"))
            description = str(result.get("error_description", "no description")).splitlines()[0]
            raise GraphAuthError(
                f"token request refused by {self._authority}: {error}: {description}",
                error=error,
                error_codes=list(result.get("error_codes", [])),
            )
        if result.get("token_source") == "identity_provider":
            self.requests_to_authority += 1
            logger.info("acquired a Graph token for app %s from %s", self._client_id, self._authority)
        return result


def _make_session(ca_bundle: Path | None, proxy_url: str | None) -> requests.Session:
    # trust_env=False: REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the environment would override ``verify``;
    # the price is that proxies come from settings, not from HTTPS_PROXY.
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_bundle) if ca_bundle is not None else True
    if proxy_url:
        session.proxies = {"http": proxy_url, "https": proxy_url}
    return session
