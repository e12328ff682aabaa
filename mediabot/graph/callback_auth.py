"""Inbound callback authentication: is this commsNotifications POST really from the calling platform?

This module owns checking the ``Authorization: Bearer <JWT>`` header the platform sends to the bot's callbackUri,
and the cache of the platform's signing keys. A token is accepted only if it is RS256-signed by a key (named by
its ``kid``) from the JWKS that the configured OpenID configuration points at (``jwks_uri``), its ``iss`` is one
of the accepted issuers, its ``aud`` is the bot's app id and the clock is within ``nbf``/``exp`` (plus a small
leeway).

Key refresh policy: keys are fetched on first use and kept. A token with an unknown ``kid`` (key rotation), or a
key set older than :data:`KEYS_MAX_AGE_S`, starts a refresh of the OpenID configuration and the JWKS, at most one
per ``min_refresh_interval_s`` (so a flood of forged kids cannot make the bot hammer the key server) and at most
one in flight (concurrent callers wait for it). A failed refresh keeps the previously cached keys.

Every refusal raises :class:`~mediabot.CallbackAuthError`, never anything else; the token itself is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from mediabot._errors import CallbackAuthError, ConfigError

__all__ = [
    "DEFAULT_ISSUERS",
    "DEFAULT_OPENID_CONFIG_URL",
    "CallbackAuthenticator",
    "CallbackClaims",
]

logger = logging.getLogger(__name__)

DEFAULT_OPENID_CONFIG_URL = "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration"
DEFAULT_ISSUERS: tuple[str, ...] = ("https://graph.microsoft.com", "https://api.botframework.com")

# Clock skew tolerated on exp/nbf; more than a few minutes would make a stolen token live noticeably longer.
MAX_LEEWAY_S = 300.0
# Keys are re-read at least this often even when every kid is known, so a key the platform withdrew stops working.
KEYS_MAX_AGE_S = 24 * 3600.0
VERIFIED_TOKENS = 1024  # verified tokens remembered (a few hundred bytes each)
FETCH_TIMEOUT_S = 10.0
MIN_RSA_KEY_BITS = 2048
ALGORITHM = "RS256"


@dataclass(frozen=True)
class CallbackClaims:
    """What a verified callback token says: issuer, the bot's app id it was for, caller app, tenant, expiry."""

    issuer: str
    audience: str
    app_id: str | None
    tenant_id: str | None
    expires_at: float
    claims: Mapping[str, Any] = field(compare=False)


class CallbackAuthenticator:
    """Verifies callback bearer tokens against the platform's published signing keys (cached, refreshed on need).

    A token that verified once is remembered (the last :data:`VERIFIED_TOKENS`): the platform signs one token and
    sends it with many callbacks, and the signature check is most of a callback's cost. A remembered token is
    accepted again only while its signing key is still published and fresh, and only within its lifetime.

    ``verify`` (a CA bundle path or a bool) applies to the HTTP client this class creates; when ``http`` is given,
    that client is used as it is and is not closed by :meth:`aclose`. ``clock`` is the time used for ``exp``/``nbf``
    and for the refresh policy.
    """

    def __init__(
        self,
        *,
        openid_config_url: str,
        audience: str,
        issuers: Collection[str],
        http: httpx.AsyncClient | None = None,
        verify: str | bool = True,
        leeway_s: float = 60,
        min_refresh_interval_s: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not openid_config_url:
            raise ConfigError("the OpenID configuration URL for callback tokens is empty")
        if not audience:
            raise ConfigError("the audience for callback tokens (the bot's app id) is empty")
        accepted = frozenset([issuers] if isinstance(issuers, str) else issuers)
        if not accepted:
            raise ConfigError("no accepted issuer is configured for callback tokens")
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise ConfigError(f"the callback token leeway must be between 0 and {MAX_LEEWAY_S:g} s, not {leeway_s}")
        if min_refresh_interval_s < 0:
            raise ConfigError(f"the minimum key refresh interval cannot be negative ({min_refresh_interval_s})")
        self._openid_config_url = openid_config_url
        self._audience = audience
        self._issuers = accepted
        self._leeway_s = float(leeway_s)
        self._min_refresh_interval_s = float(min_refresh_interval_s)
        self._clock = clock
        self._owns_http = http is None
        self._http = (
            http if http is not None else httpx.AsyncClient(verify=_ssl_verify(verify), timeout=FETCH_TIMEOUT_S)
        )
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_fetched_at: float | None = None
        self._last_attempt_at: float | None = None
        self._last_failure: str | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._closed = False
        # Tokens already verified (the platform sends one token with many callbacks): token → (its key, claims).
        self._verified: OrderedDict[str, tuple[jwt.PyJWK, CallbackClaims]] = OrderedDict()

    async def authenticate(self, authorization_header: str | None) -> CallbackClaims:
        """Check an ``Authorization`` header value; return the token's claims or raise CallbackAuthError."""
        if self._closed:
            raise CallbackAuthError("the callback authenticator is closed")
        token = _bearer_token(authorization_header)
        known = self._known(token)
        if known is not None:
            return known
        kid = _signing_key_id(token)
        key = await self._signing_key(kid)
        claims = self._verified_claims(token, key)
        self._verified[token] = (key, claims)
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        logger.debug("callback token accepted (iss %s, kid %s)", claims.issuer, _shown(kid))
        return claims

    def _known(self, token: str) -> CallbackClaims | None:
        """The claims of a token verified before, if its key is still current and fresh; its lifetime is checked
        again now. The same string carries the same signature, so only time and the key can change the answer."""
        entry = self._verified.get(token)
        if entry is None:
            return None
        key, claims = entry
        kid = key.key_id
        fetched_at = self._keys_fetched_at
        if kid is None or self._keys.get(kid) is not key or fetched_at is None:
            del self._verified[token]
            return None
        if self._clock() - fetched_at >= KEYS_MAX_AGE_S:
            return None  # the keys are due to be re-read: take the full path, which does
        self._check_lifetime(claims.claims)
        self._verified.move_to_end(token)
        return claims

    async def aclose(self) -> None:
        """Stop any key refresh in flight and close the HTTP client if this authenticator created it."""
        self._closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refreshing
        if self._owns_http:
            await self._http.aclose()

    async def _signing_key(self, kid: str) -> jwt.PyJWK:
        fetched_at = self._keys_fetched_at
        stale = fetched_at is None or self._clock() - fetched_at >= KEYS_MAX_AGE_S
        key = self._keys.get(kid)
        if key is not None and not stale:
            return key
        await self._refresh()
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_failure is not None:
            raise CallbackAuthError(self._last_failure)
        raise CallbackAuthError(f"the token is signed with an unknown key (kid {_shown(kid)})")

    async def _refresh(self) -> None:
        """Refresh the keys unless one did within the interval; join the refresh already in flight if any."""
        task = self._refreshing
        if task is None:
            now = self._clock()
            last = self._last_attempt_at
            if last is not None and now - last < self._min_refresh_interval_s:
                return
            self._last_attempt_at = now
            task = self._refreshing = asyncio.create_task(self._run_refresh())
        try:
            # Shielded: a caller that goes away (client disconnect) must not abort the refresh others wait for.
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and self._closed:
                raise CallbackAuthError("the callback authenticator was closed") from None
            raise

    async def _run_refresh(self) -> None:
        try:
            keys = await self._fetch_keys()
        except CallbackAuthError as exc:
            self._last_failure = str(exc)
            logger.warning("%s; %d cached signing keys stay in use", exc, len(self._keys))
        else:
            self._keys = keys
            self._keys_fetched_at = self._clock()
            self._last_failure = None
            logger.info("fetched %d callback signing keys via %s", len(keys), self._openid_config_url)
        finally:
            self._refreshing = None

    async def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        config = await self._get_json(self._openid_config_url)
        jwks_uri = config.get("jwks_uri") if isinstance(config, dict) else None
        if not isinstance(jwks_uri, str) or not jwks_uri:
            raise self._fetch_error("the OpenID configuration has no jwks_uri")
        jwks_url = urljoin(self._openid_config_url, jwks_uri)
        jwks = await self._get_json(jwks_url)
        entries = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(entries, list):
            raise self._fetch_error(f"{jwks_url} is not a JWKS (no keys list)")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            parsed = _rs256_key(entry)
            if parsed is not None:
                keys[parsed[0]] = parsed[1]
        if not keys:
            raise self._fetch_error(f"{jwks_url} holds no usable {ALGORITHM} signing key")
        return keys

    async def _get_json(self, url: str) -> Any:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._fetch_error(f"GET {url} failed ({type(exc).__name__}: {exc})") from exc
        if response.status_code != 200:
            raise self._fetch_error(f"GET {url} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise self._fetch_error(f"{url} did not answer JSON") from exc

    def _fetch_error(self, reason: str) -> CallbackAuthError:
        return CallbackAuthError(f"cannot fetch signing keys from {self._openid_config_url}: {reason}")

    def _verified_claims(self, token: str, key: jwt.PyJWK) -> CallbackClaims:
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuers,
                # exp/nbf are checked below against the injected clock, so every time check uses one clock.
                options={
                    "require": ["exp", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise CallbackAuthError("the token's signature does not verify") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise CallbackAuthError(f"the token's algorithm is not allowed ({exc})") from exc
        except jwt.InvalidAudienceError as exc:
            raise CallbackAuthError(f"the token is not for this bot: its audience is not {self._audience}") from exc
        except jwt.InvalidIssuerError as exc:
            raise CallbackAuthError("the token's issuer is not accepted") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise CallbackAuthError(f"the token has no {exc.claim} claim") from exc
        except jwt.DecodeError as exc:
            raise CallbackAuthError(f"the token is malformed ({exc})") from exc
        except jwt.PyJWTError as exc:
            raise CallbackAuthError(f"the token is invalid ({exc})") from exc
        self._check_lifetime(claims)
        app_id = claims.get("appid") or claims.get("azp")
        tenant_id = claims.get("tid")
        return CallbackClaims(
            issuer=claims["iss"],
            audience=self._audience,
            app_id=app_id if isinstance(app_id, str) else None,
            tenant_id=tenant_id if isinstance(tenant_id, str) else None,
            expires_at=float(claims["exp"]),
            claims=claims,
        )

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp = claims["exp"]
        if not _is_time(exp):
            raise CallbackAuthError("the token's exp claim is not a time")
        if exp <= now - self._leeway_s:
            raise CallbackAuthError("the token has expired")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not _is_time(nbf):
                raise CallbackAuthError("the token's nbf claim is not a time")
            if nbf > now + self._leeway_s:
                raise CallbackAuthError("the token is not yet valid (nbf)")


def _bearer_token(authorization_header: str | None) -> str:
    if authorization_header is None or not authorization_header.strip():
        raise CallbackAuthError("the callback has no Authorization header")
    scheme, _, token = authorization_header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise CallbackAuthError("the Authorization header is not a Bearer token")
    token = token.strip()
    if not token:
        raise CallbackAuthError("the Authorization header has no token after Bearer")
    return token


def _signing_key_id(token: str) -> str:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise CallbackAuthError(f"the token is malformed ({exc})") from exc
    alg = header.get("alg")
    if alg != ALGORITHM:
        # Checked before any key lookup: alg=none and HS* (keyed with the public key) never reach a verifier.
        raise CallbackAuthError(f"the token's algorithm {_shown(alg)} is not allowed (only {ALGORITHM})")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CallbackAuthError("the token names no signing key (kid)")
    return kid


def _rs256_key(entry: object) -> tuple[str, jwt.PyJWK] | None:
    """The (kid, key) of a JWKS entry usable to verify RS256, or None (other key types are skipped)."""
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        return None
    if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
        return None
    try:
        key = jwt.PyJWK(entry, algorithm=ALGORITHM)
    except (jwt.PyJWTError, ValueError, TypeError):
        logger.debug("skipping unreadable JWKS key %s", _shown(kid))
        return None
    # A published private key or a short one is a broken key server, not something to trust.
    if not isinstance(key.key, RSAPublicKey) or key.key.key_size < MIN_RSA_KEY_BITS:
        logger.debug("skipping JWKS key %s: not an RSA public key of %d bits or more", _shown(kid), MIN_RSA_KEY_BITS)
        return None
    return kid, key


def _ssl_verify(verify: str | bool) -> ssl.SSLContext | bool:
    if isinstance(verify, str):
        try:
            return ssl.create_default_context(cafile=verify)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the CA bundle {verify} for the signing-key server: {exc}") from exc
    return verify


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: object) -> str:
    """A short repr of an attacker-controlled header value, safe to put in a message or a log line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
