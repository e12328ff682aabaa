"""Tests of mediabot.graph.callback_auth against a real OpenID configuration + JWKS server on loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import logging
import re
import ssl
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import mediabot
from mediabot import CallbackAuthError, ConfigError, MediaBotError
from mediabot.graph.callback_auth import (
    DEFAULT_ISSUERS,
    DEFAULT_OPENID_CONFIG_URL,
    KEYS_MAX_AGE_S,
    CallbackAuthenticator,
    CallbackClaims,
)
from mediabot.sandbox._crypto import generate_tls_certificate

APP_ID = "0b1f3a1c-5d2e-4c6b-9a7e-2f8d4b6c1e01"
CALLER_APP_ID = "26a7ee05-5602-4d76-a7ba-eae8b7b67941"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GRAPH_ISSUER = "https://graph.microsoft.com"
T0 = 1_700_000_000.0
INTERVAL = 30.0
CONFIG_PATH = "/v1/.well-known/OpenIdConfiguration"
KEYS_PATH = "/v1/keys"


# --- keys and tokens -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public JWK as Microsoft publishes it (kty, use, kid, n, e; no alg)."""
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        jwk.pop("alg", None)
        return {**jwk, "kid": self.kid, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class Keys:
    current: SigningKey
    rotated: SigningKey
    forger: SigningKey  # another private key claiming the current key's kid


def _rsa(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(
        current=SigningKey("key-2024-a", _rsa()),
        rotated=SigningKey("key-2024-b", _rsa()),
        forger=SigningKey("key-2024-a", _rsa()),
    )


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


_DROP = object()


def claims_at(now: float, **overrides: Any) -> dict[str, Any]:
    """Valid callback claims at ``now``; an override of ``_DROP`` removes that claim."""
    claims: dict[str, Any] = {
        "iss": GRAPH_ISSUER,
        "aud": APP_ID,
        "appid": CALLER_APP_ID,
        "tid": TENANT_ID,
        "iat": int(now) - 5,
        "nbf": int(now) - 5,
        "exp": int(now) + 3600,
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not _DROP}


def sign(key: SigningKey, claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, **header})


def b64(data: bytes | dict[str, Any] | list[Any]) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --- the key server ---------------------------------------------------------------------------------------------


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # a client that went away mid-answer (a cancelled refresh) is expected in these tests


class KeyServer:
    """An OpenID configuration + JWKS server on 127.0.0.1 that counts requests per path.

    ``mode``: ``ok``, ``error`` (503), ``not-json``, ``no-jwks-uri``, ``no-keys``. ``gate``, when cleared, holds
    every answer until it is set again (``arrived`` tells that a request is waiting).
    """

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.jwks: list[dict[str, Any]] = []
        self.mode = "ok"
        self.hits: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if context is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self.config_url = self.base + CONFIG_PATH
        # A short poll interval only makes shutdown() quick; requests are answered as they come.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        self._stopped = False

    def publish(self, *keys: SigningKey | dict[str, Any]) -> None:
        self.jwks = [key.jwk() if isinstance(key, SigningKey) else key for key in keys]

    @property
    def refreshes(self) -> int:
        """How many times the JWKS was fetched."""
        return self.hits[KEYS_PATH]

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.gate.set()
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.hits[handler.path] += 1
        self.arrived.set()
        self.gate.wait(10)
        status, body = 200, b""
        if self.mode == "error":
            status, body = 503, b"busy"
        elif handler.path == CONFIG_PATH:
            config: dict[str, Any] = {"issuer": "https://api.botframework.com", "jwks_uri": self.base + KEYS_PATH}
            if self.mode == "no-jwks-uri":
                del config["jwks_uri"]
            body = b"<html>maintenance</html>" if self.mode == "not-json" else json.dumps(config).encode()
        elif handler.path == KEYS_PATH:
            body = json.dumps({"keys": [] if self.mode == "no-keys" else self.jwks}).encode()
        else:
            status, body = 404, b"{}"
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def server(keys: Keys) -> Iterator[KeyServer]:
    key_server = KeyServer()
    key_server.publish(keys.current)
    yield key_server
    key_server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_auth(server: KeyServer, clock: FakeClock, **overrides: Any) -> CallbackAuthenticator:
    options: dict[str, Any] = {
        "openid_config_url": server.config_url,
        "audience": APP_ID,
        "issuers": DEFAULT_ISSUERS,
        "min_refresh_interval_s": INTERVAL,
        "clock": clock,
    }
    options.update(overrides)
    return CallbackAuthenticator(**options)


@pytest.fixture
async def auth(server: KeyServer, clock: FakeClock) -> AsyncIterator[CallbackAuthenticator]:
    authenticator = make_auth(server, clock)
    yield authenticator
    await authenticator.aclose()


# --- accepted tokens --------------------------------------------------------------------------------------------


async def test_valid_token_is_accepted_with_its_claims(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    claims = claims_at(clock.now)
    result = await auth.authenticate(bearer(sign(keys.current, claims)))
    assert result == CallbackClaims(
        issuer=GRAPH_ISSUER,
        audience=APP_ID,
        app_id=CALLER_APP_ID,
        tenant_id=TENANT_ID,
        expires_at=float(claims["exp"]),
        claims=claims,
    )
    assert dict(result.claims) == claims
    assert server.hits == Counter({CONFIG_PATH: 1, KEYS_PATH: 1})
    # Cached: further tokens need no request.
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, tid="other"))))
    assert server.refreshes == 1


@pytest.mark.parametrize("issuer", DEFAULT_ISSUERS)
async def test_both_default_issuers_are_accepted(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, issuer: str
) -> None:
    result = await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, iss=issuer))))
    assert result.issuer == issuer


async def test_scheme_is_case_insensitive_and_audience_may_be_a_list(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock
) -> None:
    token = sign(keys.current, claims_at(clock.now, aud=["https://someone.else", APP_ID]))
    assert (await auth.authenticate(f"bearer  {token} ")).audience == APP_ID


async def test_app_id_comes_from_appid_or_azp(auth: CallbackAuthenticator, keys: Keys, clock: FakeClock) -> None:
    azp_only = await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, appid=_DROP, azp="azp-app"))))
    assert azp_only.app_id == "azp-app"
    neither = await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, appid=_DROP, tid=_DROP))))
    assert (neither.app_id, neither.tenant_id) == (None, None)


async def test_issuers_are_configurable(server: KeyServer, keys: Keys, clock: FakeClock) -> None:
    authenticator = make_auth(server, clock, issuers="https://sandbox.local")
    try:
        await authenticator.authenticate(bearer(sign(keys.current, claims_at(clock.now, iss="https://sandbox.local"))))
        with pytest.raises(CallbackAuthError, match="issuer"):
            await authenticator.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    finally:
        await authenticator.aclose()


async def test_default_clock_is_wall_time(server: KeyServer, keys: Keys) -> None:
    authenticator = CallbackAuthenticator(openid_config_url=server.config_url, audience=APP_ID, issuers=DEFAULT_ISSUERS)
    now = datetime.datetime.now(tz=datetime.UTC).timestamp()
    try:
        await authenticator.authenticate(bearer(sign(keys.current, claims_at(now))))
        with pytest.raises(CallbackAuthError, match="expired"):
            await authenticator.authenticate(bearer(sign(keys.current, claims_at(now, exp=int(now) - 3600))))
        with pytest.raises(CallbackAuthError, match="not yet valid"):
            await authenticator.authenticate(bearer(sign(keys.current, claims_at(now, nbf=int(now) + 3600))))
    finally:
        await authenticator.aclose()


# --- refused tokens ---------------------------------------------------------------------------------------------


async def test_forged_signature_with_a_known_kid_is_refused(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock
) -> None:
    assert keys.forger.kid == keys.current.kid
    with pytest.raises(CallbackAuthError, match="signature does not verify"):
        await auth.authenticate(bearer(sign(keys.forger, claims_at(clock.now))))


async def test_tampered_payload_is_refused(auth: CallbackAuthenticator, keys: Keys, clock: FakeClock) -> None:
    token = sign(keys.current, claims_at(clock.now))
    header, _, signature = token.split(".")
    tampered = ".".join(
        [header, b64(claims_at(clock.now, tid="attacker-tenant", exp=int(clock.now) + 10**6)), signature]
    )
    with pytest.raises(CallbackAuthError, match="signature does not verify"):
        await auth.authenticate(bearer(tampered))


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-3600, False), (-61, False), (-30, True), (3600, True)],
    ids=["an-hour-ago", "past-leeway", "within-leeway", "in-an-hour"],
)
async def test_expiry_with_leeway(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, offset: int, accepted: bool
) -> None:
    token = bearer(sign(keys.current, claims_at(clock.now, exp=int(clock.now) + offset)))
    if accepted:
        await auth.authenticate(token)
    else:
        with pytest.raises(CallbackAuthError, match="expired"):
            await auth.authenticate(token)


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(3600, False), (61, False), (30, True)],
    ids=["in-an-hour", "past-leeway", "within-leeway"],
)
async def test_not_before_with_leeway(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, offset: int, accepted: bool
) -> None:
    token = bearer(sign(keys.current, claims_at(clock.now, nbf=int(clock.now) + offset)))
    if accepted:
        await auth.authenticate(token)
    else:
        with pytest.raises(CallbackAuthError, match="not yet valid"):
            await auth.authenticate(token)


@pytest.mark.parametrize(
    "issuer", ["https://evil.example", "https://graph.microsoft.com/", "https://login.microsoftonline.com/x/v2.0"]
)
async def test_wrong_issuer_is_refused(auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, issuer: str) -> None:
    with pytest.raises(CallbackAuthError, match="issuer is not accepted"):
        await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, iss=issuer))))


@pytest.mark.parametrize(
    "audience", ["ffffffff-0000-0000-0000-000000000000", ["a", "b"], "https://graph.microsoft.com"]
)
async def test_wrong_audience_is_refused(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, audience: Any
) -> None:
    with pytest.raises(CallbackAuthError, match="not for this bot"):
        await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, aud=audience))))


@pytest.mark.parametrize("claim", ["exp", "iss", "aud"])
async def test_required_claims(auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, claim: str) -> None:
    with pytest.raises(CallbackAuthError, match=f"has no {claim} claim"):
        await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, **{claim: _DROP}))))


@pytest.mark.parametrize(("claim", "value"), [("exp", "2099-01-01"), ("exp", True), ("nbf", "soon")])
async def test_times_must_be_numbers(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, claim: str, value: Any
) -> None:
    with pytest.raises(CallbackAuthError, match=f"{claim} claim is not a time"):
        await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now, **{claim: value}))))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_unsigned_token_is_refused(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock, alg: str
) -> None:
    header = {"alg": alg, "typ": "JWT", "kid": keys.current.kid}
    token = f"{b64(header)}.{b64(claims_at(clock.now))}."
    with pytest.raises(CallbackAuthError, match=r"algorithm .* is not allowed"):
        await auth.authenticate(bearer(token))
    assert server.refreshes == 0


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_public_key_is_refused(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, alg: str
) -> None:
    # The classic confusion: HMAC keyed with the (public) PEM, hoping the verifier feeds that PEM to HMAC.
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))  # the key is cached
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    for secret in (keys.current.public_pem(), json.dumps(keys.current.jwk()).encode()):
        signing_input = f"{b64({'alg': alg, 'typ': 'JWT', 'kid': keys.current.kid})}.{b64(claims_at(clock.now))}"
        signature = hmac.new(secret, signing_input.encode(), digest).digest()
        with pytest.raises(CallbackAuthError, match=r"algorithm .* is not allowed"):
            await auth.authenticate(bearer(f"{signing_input}.{b64(signature)}"))


async def test_rs256_header_over_an_hmac_signature_is_refused(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock
) -> None:
    signing_input = f"{b64({'alg': 'RS256', 'kid': keys.current.kid})}.{b64(claims_at(clock.now))}"
    signature = hmac.new(keys.current.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(CallbackAuthError, match="signature does not verify"):
        await auth.authenticate(bearer(f"{signing_input}.{b64(signature)}"))


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Authorization header"),
        ("", "no Authorization header"),
        ("   ", "no Authorization header"),
        ("Basic dXNlcjpwYXNz", "not a Bearer token"),
        ("Basic x", "not a Bearer token"),
        ("garbage", "not a Bearer token"),
        ("Bearer", "no token after Bearer"),
        ("Bearer    ", "no token after Bearer"),
        ("Bearer garbage", "malformed"),
        ("Bearer a.b.c", "malformed"),
        ("Bearer ...", "malformed"),
        ("Bearer e30.e30.", "not allowed"),
        (f"Bearer {b64([1, 2])}.e30.", "malformed"),
        (f"Bearer {b64({'alg': 'RS256'})}.e30.sig", "names no signing key"),
        (f"Bearer {b64({'alg': 'RS256', 'kid': 7})}.e30.sig", "malformed"),
        (f"Bearer {b64({'alg': 'RS256', 'kid': ''})}.e30.sig", "names no signing key"),
        (f"Bearer {b64({'alg': 'RS512', 'kid': 'k'})}.e30.sig", "not allowed"),
        (f"Bearer {b64({'alg': 'ES256', 'kid': 'k'})}.e30.sig", "not allowed"),
        (f"Bearer {b64({'alg': ['RS256'], 'kid': 'k'})}.e30.sig", "not allowed"),
    ],
)
async def test_missing_or_malformed_header_is_refused_without_fetching_keys(
    auth: CallbackAuthenticator, server: KeyServer, header: str | None, reason: str
) -> None:
    with pytest.raises(CallbackAuthError, match=reason):
        await auth.authenticate(header)
    assert sum(server.hits.values()) == 0


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # signing with the short key
async def test_only_rsa_public_signing_keys_are_trusted(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    short = SigningKey("short", _rsa(1024))
    leaked = SigningKey("leaked", _rsa())
    leaked_private_jwk = {**json.loads(RSAAlgorithm.to_jwk(leaked.private)), "kid": "leaked"}
    encryption = SigningKey("enc", _rsa())
    ec_key = {**json.loads(ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())), "kid": "ec"}
    server.publish(
        {"kty": "oct", "k": b64(b"shared-secret"), "kid": "hmac"},
        ec_key,
        short,
        leaked_private_jwk,
        {**encryption.jwk(), "use": "enc"},
        {**keys.rotated.jwk(), "alg": "RS512"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not a key",
        keys.current,
    )
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    for key in (short, leaked, encryption, keys.rotated):
        with pytest.raises(CallbackAuthError, match="unknown key"):
            await auth.authenticate(bearer(sign(key, claims_at(clock.now))))
    assert server.refreshes == 1


# --- key refresh policy -----------------------------------------------------------------------------------------


async def test_unknown_kid_triggers_one_refresh_that_finds_a_rotated_key(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    assert server.refreshes == 1
    server.publish(keys.rotated)
    clock.advance(INTERVAL)
    result = await auth.authenticate(bearer(sign(keys.rotated, claims_at(clock.now))))
    assert result.app_id == CALLER_APP_ID
    assert server.hits == Counter({CONFIG_PATH: 2, KEYS_PATH: 2})
    # The withdrawn key is gone with the refresh, and asking again within the interval fetches nothing.
    with pytest.raises(CallbackAuthError, match="unknown key"):
        await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    assert server.refreshes == 2


async def test_flood_of_unknown_kids_refreshes_at_most_once_per_interval(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    clock.advance(INTERVAL)
    forged = [bearer(sign(SigningKey(f"forged-{i}", keys.forger.private), claims_at(clock.now))) for i in range(40)]

    results = await asyncio.gather(*(auth.authenticate(header) for header in forged), return_exceptions=True)
    assert all(isinstance(result, CallbackAuthError) for result in results)
    assert server.hits == Counter({CONFIG_PATH: 2, KEYS_PATH: 2})

    clock.advance(INTERVAL - 1)
    for header in forged:
        with pytest.raises(CallbackAuthError, match="unknown key"):
            await auth.authenticate(header)
    assert server.refreshes == 2

    clock.advance(1)
    for header in forged:
        with pytest.raises(CallbackAuthError, match="unknown key"):
            await auth.authenticate(header)
    assert server.refreshes == 3
    # Known keys were never held up by the flood.
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))


async def test_concurrent_refreshes_are_coalesced(server: KeyServer, keys: Keys, clock: FakeClock) -> None:
    # No rate limit at all: only the one-in-flight rule keeps this to a single fetch.
    authenticator = make_auth(server, clock, min_refresh_interval_s=0)
    server.gate.clear()
    try:
        token = bearer(sign(keys.current, claims_at(clock.now)))
        tasks = [asyncio.create_task(authenticator.authenticate(token)) for _ in range(25)]
        assert await asyncio.to_thread(server.arrived.wait, 10)
        server.gate.set()
        results = await asyncio.gather(*tasks)
        assert {result.tenant_id for result in results} == {TENANT_ID}
        assert server.hits == Counter({CONFIG_PATH: 1, KEYS_PATH: 1})
    finally:
        await authenticator.aclose()


async def test_a_cancelled_caller_does_not_abort_the_refresh_others_wait_for(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    server.gate.clear()
    token = bearer(sign(keys.current, claims_at(clock.now)))
    first = asyncio.create_task(auth.authenticate(token))
    assert await asyncio.to_thread(server.arrived.wait, 10)
    second = asyncio.create_task(auth.authenticate(token))
    first.cancel()
    server.gate.set()
    assert (await second).issuer == GRAPH_ISSUER
    with pytest.raises(asyncio.CancelledError):
        await first
    assert server.refreshes == 1


async def test_keys_are_reread_when_old(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    clock.advance(KEYS_MAX_AGE_S)
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    assert server.refreshes == 2
    # Old keys and the server down: the cached key keeps working, tried again at most once per interval.
    clock.advance(KEYS_MAX_AGE_S)
    server.mode = "error"
    for _ in range(3):
        await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    assert server.hits[CONFIG_PATH] == 3


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("error", "answered HTTP 503"),
        ("not-json", "did not answer JSON"),
        ("no-jwks-uri", "has no jwks_uri"),
        ("no-keys", "holds no usable RS256 signing key"),
        ("unreachable", "ConnectError"),
    ],
)
async def test_key_server_failure_is_a_clear_error_and_cached_keys_keep_working(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock, mode: str, reason: str
) -> None:
    await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    if mode == "unreachable":
        server.stop()
    else:
        server.mode = mode
    clock.advance(INTERVAL)
    expected = f"cannot fetch signing keys from {re.escape(server.config_url)}: .*{reason}"
    with pytest.raises(CallbackAuthError, match=expected):
        await auth.authenticate(bearer(sign(keys.rotated, claims_at(clock.now))))
    # Within the interval, the reason is still given, without another attempt.
    with pytest.raises(CallbackAuthError, match="cannot fetch signing keys"):
        await auth.authenticate(bearer(sign(keys.rotated, claims_at(clock.now))))
    assert (await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))).tenant_id == TENANT_ID


async def test_first_fetch_failing_then_recovering(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    server.mode = "error"
    token = bearer(sign(keys.current, claims_at(clock.now)))
    with pytest.raises(CallbackAuthError, match="cannot fetch signing keys"):
        await auth.authenticate(token)
    server.mode = "ok"
    clock.advance(INTERVAL)
    await auth.authenticate(token)
    assert server.hits[CONFIG_PATH] == 2


async def test_unreachable_config_url_is_a_clear_error(keys: Keys, clock: FakeClock) -> None:
    gone = KeyServer()
    gone.stop()
    authenticator = make_auth(gone, clock)
    try:
        with pytest.raises(CallbackAuthError, match=f"cannot fetch signing keys from {re.escape(gone.config_url)}"):
            await authenticator.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
    finally:
        await authenticator.aclose()


# --- transport, lifecycle, logging, configuration ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1: its PEM path (the CA bundle) and a server context using it."""
    cert_pem, key_pem = generate_tls_certificate("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


async def test_https_key_server_is_verified_with_the_given_ca_bundle(
    keys: Keys, clock: FakeClock, tls: tuple[Path, ssl.SSLContext]
) -> None:
    ca_path, context = tls
    key_server = KeyServer(context)
    key_server.publish(keys.current)
    trusting = make_auth(key_server, clock, verify=str(ca_path))
    untrusting = make_auth(key_server, clock, verify=True)
    token = bearer(sign(keys.current, claims_at(clock.now)))
    try:
        assert (await trusting.authenticate(token)).issuer == GRAPH_ISSUER
        with pytest.raises(CallbackAuthError, match=re.escape("cannot fetch signing keys from https://127.0.0.1")):
            await untrusting.authenticate(token)
    finally:
        await trusting.aclose()
        await untrusting.aclose()
        key_server.stop()


async def test_given_http_client_is_used_and_left_open(server: KeyServer, keys: Keys, clock: FakeClock) -> None:
    seen: list[str] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request.url.path)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        authenticator = make_auth(server, clock, http=client)
        await authenticator.authenticate(bearer(sign(keys.current, claims_at(clock.now))))
        await authenticator.aclose()
        assert not client.is_closed
    assert seen == [CONFIG_PATH, KEYS_PATH]


async def test_closed_authenticator_refuses(auth: CallbackAuthenticator, keys: Keys, clock: FakeClock) -> None:
    await auth.aclose()
    with pytest.raises(CallbackAuthError, match="closed"):
        await auth.authenticate(bearer(sign(keys.current, claims_at(clock.now))))


async def test_closing_during_a_refresh_gives_callers_an_auth_error(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    server.gate.clear()
    waiting = asyncio.create_task(auth.authenticate(bearer(sign(keys.current, claims_at(clock.now)))))
    assert await asyncio.to_thread(server.arrived.wait, 10)
    await auth.aclose()
    server.gate.set()
    with pytest.raises(CallbackAuthError, match="closed"):
        await waiting


async def test_the_token_is_never_logged(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mediabot")
    good = sign(keys.current, claims_at(clock.now))
    forged = sign(keys.forger, claims_at(clock.now))
    await auth.authenticate(bearer(good))
    with pytest.raises(CallbackAuthError) as refused:
        await auth.authenticate(bearer(forged))
    server.mode = "error"
    clock.advance(INTERVAL)
    rotated = sign(keys.rotated, claims_at(clock.now))
    with pytest.raises(CallbackAuthError) as failed:
        await auth.authenticate(bearer(rotated))
    assert caplog.records  # something was logged: the fetch, the acceptance, the failed refresh
    for token in (good, forged, rotated):
        for text in (caplog.text, str(refused.value), str(failed.value)):
            assert token not in text
            assert token.split(".")[2] not in text


@pytest.mark.parametrize(
    "overrides",
    [
        {"audience": ""},
        {"issuers": []},
        {"openid_config_url": ""},
        {"leeway_s": -1},
        {"leeway_s": 3600},
        {"min_refresh_interval_s": -1},
        {"verify": "/nonexistent/ca.pem"},
    ],
)
def test_invalid_configuration_is_a_config_error(overrides: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "openid_config_url": DEFAULT_OPENID_CONFIG_URL,
        "audience": APP_ID,
        "issuers": DEFAULT_ISSUERS,
        **overrides,
    }
    with pytest.raises(ConfigError):
        CallbackAuthenticator(**options)


def test_error_is_in_the_tree_and_exported() -> None:
    assert issubclass(CallbackAuthError, MediaBotError)
    assert "CallbackAuthError" in mediabot.__all__
    assert mediabot.CallbackAuthError is CallbackAuthError
    assert DEFAULT_OPENID_CONFIG_URL == "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration"
    assert set(DEFAULT_ISSUERS) == {"https://graph.microsoft.com", "https://api.botframework.com"}


# --- remembered tokens ------------------------------------------------------------------------------------------


async def test_a_token_seen_before_is_not_verified_again(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    real_decode = jwt.decode

    def counting_decode(token: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(token)
        return real_decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting_decode)
    token = sign(keys.current, claims_at(clock.now))
    first = await auth.authenticate(bearer(token))
    for _ in range(5):
        assert await auth.authenticate(bearer(token)) == first
    assert decoded == [token]
    other = sign(keys.current, claims_at(clock.now, tid="other-tenant"))
    assert (await auth.authenticate(bearer(other))).tenant_id == "other-tenant"
    assert decoded == [token, other]


async def test_a_remembered_token_still_expires(auth: CallbackAuthenticator, keys: Keys, clock: FakeClock) -> None:
    token = sign(keys.current, claims_at(clock.now))
    await auth.authenticate(bearer(token))
    clock.advance(3600 + 61)  # past exp and the leeway
    with pytest.raises(CallbackAuthError, match="expired"):
        await auth.authenticate(bearer(token))


async def test_a_remembered_token_of_a_withdrawn_key_is_refused(
    auth: CallbackAuthenticator, server: KeyServer, keys: Keys, clock: FakeClock
) -> None:
    token = sign(keys.current, claims_at(clock.now))
    await auth.authenticate(bearer(token))
    server.publish(keys.rotated)
    clock.advance(INTERVAL)
    await auth.authenticate(bearer(sign(keys.rotated, claims_at(clock.now))))  # the refresh drops the old key
    with pytest.raises(CallbackAuthError, match="unknown key"):
        await auth.authenticate(bearer(token))


async def test_a_tampered_copy_of_a_remembered_token_is_refused(
    auth: CallbackAuthenticator, keys: Keys, clock: FakeClock
) -> None:
    token = sign(keys.current, claims_at(clock.now))
    await auth.authenticate(bearer(token))
    header, _payload, signature = token.split(".")
    forged = ".".join([header, b64(claims_at(clock.now, tid="attacker")), signature])
    with pytest.raises(CallbackAuthError, match="signature"):
        await auth.authenticate(bearer(forged))
