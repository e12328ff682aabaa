"""Access tokens and client assertions: what the emulated Entra signs and what the emulated Graph accepts.

Access tokens are RS256 JWTs in the shape of Entra v1 app-only tokens for Microsoft Graph (``aud``
``https://graph.microsoft.com``, ``iss`` ``https://sts.windows.net/<tenant>/``, ``roles`` = granted permissions).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from ._config import AppRegistration, SandboxConfig
from ._crypto import b64url, rsa_signing_jwk

__all__ = [
    "ACCESS_TOKEN_LIFETIME",
    "GRAPH_APP_ID",
    "GRAPH_RESOURCE",
    "ClientAssertionError",
    "Principal",
    "TokenError",
    "TokenService",
    "verify_client_assertion",
]

GRAPH_RESOURCE: Final = "https://graph.microsoft.com"
GRAPH_APP_ID: Final = "00000003-0000-0000-c000-000000000000"
ACCESS_TOKEN_LIFETIME: Final = 3599
_CLOCK_SKEW = 300


class TokenError(Exception):
    """A bearer token Graph would refuse; the message is Graph's wording."""


class ClientAssertionError(Exception):
    """A client assertion Entra would refuse (AADSTS700027 family); the message says why."""


@dataclasses.dataclass(frozen=True)
class Principal:
    """The caller a valid access token identifies."""

    app_id: str
    tenant_id: str
    object_id: str
    roles: frozenset[str]
    display_name: str


class TokenService:
    """Signs access tokens, publishes the JWKS and verifies bearer tokens and client assertions."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        key = serialization.load_pem_private_key(config.signing_key_pem, password=None)
        if not isinstance(key, RSAPrivateKey):
            raise TypeError("the sandbox signing key must be RSA")
        self._key = key
        self._kid = config.signing_kid

    @property
    def issuer(self) -> str:
        """The ``iss`` of access tokens (Entra v1 form, as Graph tokens carry it)."""
        return f"https://sts.windows.net/{self._config.tenant_id}/"

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set with the signing key's public half."""
        return {
            "keys": [
                rsa_signing_jwk(
                    self._key.public_key(),
                    self._kid,
                    f"https://login.microsoftonline.com/{self._config.tenant_id}/v2.0",
                )
            ]
        }

    def issue(self, app: AppRegistration, *, certificate_auth: bool) -> str:
        """An app-only access token for Microsoft Graph carrying the app's roles."""
        now = int(time.time())
        claims = {
            "aud": GRAPH_RESOURCE,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_TOKEN_LIFETIME,
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "azp": app.client_id,
            "appidacr": "2" if certificate_auth else "1",
            "idp": self.issuer,
            "idtyp": "app",
            "oid": app.object_id,
            "sub": app.object_id,
            "roles": list(app.roles),
            "tid": self._config.tenant_id,
            "uti": b64url(uuid.uuid4().bytes),
            "ver": "1.0",
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid, "typ": "JWT"})

    def verify(self, token: str) -> Principal:
        """Check signature, lifetime, audience, issuer and tenant; the caller, or :class:`TokenError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("CompactToken parsing failed with error code: 80049217") from exc
        if header.get("kid") != self._kid:
            raise TokenError("Access token validation failure. Invalid signing key.")
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=[GRAPH_RESOURCE, f"{GRAPH_RESOURCE}/", GRAPH_APP_ID],
                issuer=self.issuer,
                options={"require": ["exp", "iat", "aud", "iss", "tid"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("Lifetime validation failed, the token is expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("Access token validation failure. Invalid audience.") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("Access token validation failure. Invalid issuer.") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("Access token validation failure.") from exc
        if claims.get("tid") != self._config.tenant_id:
            raise TokenError("Access token validation failure. Invalid tenant.")
        return Principal(
            app_id=str(claims.get("appid", "")),
            tenant_id=str(claims["tid"]),
            object_id=str(claims.get("oid", "")),
            roles=frozenset(claims.get("roles", ())),
            display_name=str(claims.get("app_displayname", "")),
        )


def verify_client_assertion(assertion: str, app: AppRegistration, token_endpoint: str) -> None:
    """Check a ``private_key_jwt`` client assertion against the app's registered certificate.

    Raises :class:`ClientAssertionError` naming what is wrong.
    """
    if not app.certificate_pem:
        raise ClientAssertionError("The client has no certificate credential registered.")
    try:
        header = jwt.get_unverified_header(assertion)
    except jwt.PyJWTError as exc:
        raise ClientAssertionError("The client assertion is not a well-formed JWT.") from exc
    sha1, sha256 = app.certificate_thumbprints or ("", "")
    # msal pads its base64url thumbprints with "="; Entra accepts either form.
    x5t, x5t_s256 = (_unpadded(header.get(name)) for name in ("x5t", "x5t#S256"))
    if x5t_s256 not in (None, sha256) or x5t not in (None, sha1):
        used = header.get("x5t") or header.get("x5t#S256")
        raise ClientAssertionError(
            "Client assertion contains an invalid signature. "
            f"[Reason - The key was not found., Thumbprint of key used by client: '{used}']"
        )
    if x5t is None and x5t_s256 is None:
        raise ClientAssertionError("The client assertion has neither an x5t nor an x5t#S256 header.")
    public_key = x509.load_pem_x509_certificate(app.certificate_pem.encode("ascii")).public_key()
    if not isinstance(public_key, RSAPublicKey):
        raise ClientAssertionError("Only RSA certificates are supported.")
    try:
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=["RS256", "PS256"],
            audience=[token_endpoint, token_endpoint.rstrip("/")],
            leeway=_CLOCK_SKEW,
            options={"require": ["exp", "aud", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise ClientAssertionError("The client assertion has expired.") from exc
    except jwt.InvalidAudienceError as exc:
        raise ClientAssertionError(f"The audience of the client assertion must be '{token_endpoint}'.") from exc
    except jwt.InvalidSignatureError as exc:
        raise ClientAssertionError("Client assertion contains an invalid signature.") from exc
    except jwt.PyJWTError as exc:
        raise ClientAssertionError(f"The client assertion is invalid: {exc}.") from exc
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise ClientAssertionError("The issuer and subject of the client assertion must be the client id.")


def _unpadded(value: object) -> str | None:
    return value.rstrip("=") if isinstance(value, str) else None
