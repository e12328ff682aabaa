"""``CallbackSigner``: the calling platform's identity towards bots, as Graph signs the notifications it POSTs.

Each notification carries ``Authorization: Bearer <JWT>`` (RS256, ``kid``), issued by ``https://graph.microsoft.com``
for the app that owns the call. The key is published as an OpenID configuration (``/callback/.well-known/...``) with
its JWKS at ``/callback/keys``, the way ``api.aps.skype.com`` publishes the real one.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from ._config import SandboxConfig
from ._crypto import b64url, rsa_signing_jwk

__all__ = ["CALLBACK_ISSUER", "CALLBACK_TOKEN_LIFETIME", "CallbackSigner"]

CALLBACK_ISSUER: Final = "https://graph.microsoft.com"
CALLBACK_TOKEN_LIFETIME: Final = 300


class CallbackSigner:
    """Signs call-notification tokens and publishes their key as OpenID configuration + JWKS."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        key = serialization.load_pem_private_key(config.callback_signing_key_pem, password=None)
        if not isinstance(key, RSAPrivateKey):
            raise TypeError("the sandbox callback signing key must be RSA")
        self._key = key
        self._kid = config.callback_signing_kid

    @property
    def kid(self) -> str:
        """The ``kid`` of the signing key."""
        return self._kid

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        """The OpenID configuration served at ``/callback/.well-known/OpenIdConfiguration``."""
        return {
            "issuer": CALLBACK_ISSUER,
            "jwks_uri": f"{base_url}/callback/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set with the public half of the callback signing key."""
        return {"keys": [rsa_signing_jwk(self._key.public_key(), self._kid, CALLBACK_ISSUER)]}

    def token(self, app_id: str) -> str:
        """A fresh bearer token for one notification POST to a callback of ``app_id``."""
        now = int(time.time())
        claims = {
            "iss": CALLBACK_ISSUER,
            "aud": app_id,
            "iat": now,
            "nbf": now,
            "exp": now + CALLBACK_TOKEN_LIFETIME,
            "appid": app_id,
            "tid": self._config.tenant_id,
            "jti": b64url(uuid.uuid4().bytes),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid, "typ": "JWT"})
