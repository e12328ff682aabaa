"""Every way in, refused end to end: the service on a real port, tokens signed (or forged) against the sandbox.

One table per door, each row a request that must be refused and must change nothing:

* ``/api/calling``: Graph's signed callbacks. Bad signatures, lifetimes, issuers, audiences, algorithms, keys and
  headers → 401, no call created, nothing sent to Graph, and the token never in the logs.
* ``/api/notifications`` (and ``/lifecycle``): a wrong or missing clientState is accepted (202, Graph's contract) but
  ignored: nothing fetched or recorded, a warning that shows neither clientState.
* ``/media/whip/{session}``: a missing or wrong bearer → 401 and no source connected, on the in-process engine and
  on the media-worker path (whose worker checks the bearer again).
* ``/v1/...``: every route of the app, found by walking its routes (so a new one cannot escape), without the key or
  with a wrong one → 401; every other route is on an explicit list of public or self-authenticating routes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Route

from mediabot.media.engine import MediaEngine
from mediabot.media.whip import WhipUnauthorized
from mediabot.media.workers import MediaWorkers
from mediabot.sandbox import SandboxServer
from mediabot.service.auth import CONSOLE_COOKIE, CONSOLE_SESSION_S, console_cookie
from mediabot.service.deps import require_api_key
from tests.media.conftest import RATE, offer_for, serving_whip, whip_options
from tests.service.conftest import API_KEY, ServiceServer, incoming_call, wait_for

ISSUER = "https://graph.microsoft.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64json(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


@pytest.fixture(scope="module")
def matrix(sandbox: SandboxServer) -> Iterator[ServiceServer]:
    """One service for the module's tables (each row uses its own call id, so rows cannot see each other)."""
    server = ServiceServer(sandbox).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# -- /api/calling ------------------------------------------------------------------------------------------------------


class Signer:
    """Makes callback tokens: the platform's own (from the sandbox's signing key) and every kind of forgery."""

    def __init__(self, sandbox: SandboxServer, audience: str, attacker: rsa.RSAPrivateKey) -> None:
        self.key_pem = sandbox.config.callback_signing_key_pem
        private = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(private, rsa.RSAPrivateKey)
        self.public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = sandbox.config.callback_signing_kid
        self.audience = audience
        self.attacker = attacker

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "appid": self.audience,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def platform(self, *, kid: str | None = None, algorithm: str = "RS256", **claims: Any) -> str:
        """Signed with the platform's real key."""
        headers = {"kid": kid or self.kid}
        return jwt.encode(self.claims(**claims), self.key_pem, algorithm=algorithm, headers=headers)

    def forged(self, *, kid: str | None = None, extra_headers: dict[str, Any] | None = None) -> str:
        """Signed with the attacker's key (valid claims)."""
        headers = {"kid": kid or self.kid, **(extra_headers or {})}
        return jwt.encode(self.claims(), self.attacker, algorithm="RS256", headers=headers)

    def unsigned(self) -> str:
        header = b64json({"alg": "none", "typ": "JWT", "kid": self.kid})
        return f"{header}.{b64json(self.claims())}."

    def hmac_with_public_key(self, alg: str = "HS256") -> str:
        """The classic algorithm confusion: HMAC keyed with the platform's *public* key (which anyone can fetch)."""
        digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[alg]
        signing_input = f"{b64json({'alg': alg, 'typ': 'JWT', 'kid': self.kid})}.{b64json(self.claims())}"
        signature = hmac.new(self.public_pem, signing_input.encode(), digest).digest()
        return f"{signing_input}.{b64url(signature)}"

    def tampered(self) -> str:
        """A real token whose payload was edited afterwards (its lifetime stretched to a day)."""
        header, _, signature = self.platform().split(".")
        return f"{header}.{b64json(self.claims(exp=int(time.time()) + 86400))}.{signature}"

    def embedded_jwk(self) -> str:
        """CVE-2018-0114's shape: the attacker's key published inside the token's own header."""
        numbers = self.attacker.public_key().public_numbers()
        jwk = {
            "kty": "RSA",
            "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": b64url(numbers.e.to_bytes(3, "big")),
        }
        return self.forged(kid="attacker", extra_headers={"jwk": jwk, "jku": "https://evil.invalid/keys"})


HOUR = 3600
# Each row: what the Authorization header is (None: absent), made from the signer.
CALLBACK_CASES: dict[str, Callable[[Signer], str | bytes | None]] = {
    "forged signature (known kid)": lambda s: f"Bearer {s.forged()}",
    "forged signature (unknown kid)": lambda s: f"Bearer {s.forged(kid='not-a-published-kid')}",
    "platform key, unknown kid": lambda s: f"Bearer {s.platform(kid='rotated-away')}",
    "expired": lambda s: f"Bearer {s.platform(iat=int(time.time()) - 2 * HOUR, nbf=None, exp=int(time.time()) - HOUR)}",
    "not yet valid": lambda s: f"Bearer {s.platform(nbf=int(time.time()) + HOUR, exp=int(time.time()) + 2 * HOUR)}",
    "no expiry": lambda s: f"Bearer {s.platform(exp=None)}",
    "wrong issuer": lambda s: f"Bearer {s.platform(iss='https://sts.windows.net/evil/')}",
    "wrong audience": lambda s: f"Bearer {s.platform(aud=str(uuid.uuid4()))}",
    "no audience": lambda s: f"Bearer {s.platform(aud=None)}",
    "alg none": lambda s: f"Bearer {s.unsigned()}",
    "HS256 keyed with the public key": lambda s: f"Bearer {s.hmac_with_public_key('HS256')}",
    "HS512 keyed with the public key": lambda s: f"Bearer {s.hmac_with_public_key('HS512')}",
    "RS384 with the platform key": lambda s: f"Bearer {s.platform(algorithm='RS384')}",
    "tampered payload": lambda s: f"Bearer {s.tampered()}",
    "signature stripped": lambda s: f"Bearer {s.platform().rpartition('.')[0]}.",
    "attacker key in the header (jwk/jku)": lambda s: f"Bearer {s.embedded_jwk()}",
    "token with trailing garbage": lambda s: f"Bearer {s.platform()} x",
    "missing": lambda s: None,
    "empty": lambda s: "",
    "scheme only": lambda s: "Bearer",
    "Basic scheme": lambda s: "Basic " + b64url(f"{s.audience}:secret".encode()),
    "token without a scheme": lambda s: s.platform(),
    "not a JWT": lambda s: "Bearer not.a.jwt",
    "two segments": lambda s: "Bearer eyJhbGciOiJSUzI1NiJ9.eyJ9",
    "non-ASCII bytes": lambda s: b"Bearer \xff\xfe\xe9t\xe9",
}


def _post_callback(service: ServiceServer, call_id: str, authorization: str | bytes | None) -> httpx.Response:
    headers: dict[str, str | bytes] = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    # A bare client: the fixture's client would add the API key as the bearer.
    with httpx.Client(verify=service.ssl_context, trust_env=False, timeout=30) as client:
        return client.post(
            f"{service.base_url}/api/calling", content=json.dumps(incoming_call(call_id)), headers=headers
        )


def _graph_requests_about(sandbox: SandboxServer, needle: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests() if needle in r["path"]]


@pytest.fixture(scope="module")
def signer(matrix: ServiceServer, sandbox: SandboxServer, attacker_key: rsa.RSAPrivateKey) -> Signer:
    return Signer(sandbox, matrix.settings.client_id, attacker_key)


def test_a_platform_signed_callback_is_acted_on(matrix: ServiceServer, sandbox: SandboxServer, signer: Signer) -> None:
    """The control row: the same request with a good token creates the call and the bot answers it."""
    call_id = f"control-{uuid.uuid4()}"
    response = _post_callback(matrix, call_id, f"Bearer {signer.platform()}")
    assert response.status_code == 202, response.text
    assert matrix.manager.get(call_id) is not None
    wait_for(lambda: _graph_requests_about(sandbox, call_id), "the bot's answer to reach Graph")


@pytest.mark.parametrize("case", list(CALLBACK_CASES))
def test_every_bad_callback_token_is_refused_and_changes_nothing(
    matrix: ServiceServer, sandbox: SandboxServer, signer: Signer, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.DEBUG)
    call_id = f"refused-{uuid.uuid4()}"
    authorization = CALLBACK_CASES[case](signer)
    calls_before = len(matrix.manager.calls())

    response = _post_callback(matrix, call_id, authorization)

    assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
    assert response.headers["www-authenticate"] == "Bearer"
    assert matrix.manager.get(call_id) is None
    assert len(matrix.manager.calls()) == calls_before
    # The refusal happens before anything is queued: nothing can reach Graph later.
    assert _graph_requests_about(sandbox, call_id) == []
    refusals = [r for r in caplog.records if r.getMessage().startswith("refused a call notification")]
    assert len(refusals) == 1, case
    if isinstance(authorization, str) and "." in authorization:
        token = authorization.removeprefix("Bearer ").split(" ")[0]
        assert token not in caplog.text, f"{case}: the presented token was logged"
        # Nor any recognisable part of it (a signature or payload is enough to replay or read it).
        for part in token.split("."):
            if len(part) > 16:
                assert part not in caplog.text, f"{case}: part of the token was logged"


# -- /api/notifications ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subscribed(sandbox: SandboxServer) -> Iterator[tuple[ServiceServer, str, str]]:
    """A service holding a real callRecords subscription: (service, subscription id, its clientState from Graph)."""
    server = ServiceServer(sandbox, subscribe_call_records=True).start()
    try:
        keeper = server.app.state.keeper
        wait_for(lambda: keeper.subscriptions, "the callRecords subscription (after the validation handshake)")
        subscription_id = keeper.subscriptions[0].id
        graph = httpx.Client(
            verify=sandbox.ssl_context(),
            trust_env=False,
            headers={"Authorization": f"Bearer {sandbox.access_token()}"},
        )
        with graph:
            stored = graph.get(f"{sandbox.graph_url}/subscriptions/{subscription_id}").json()
        assert stored["clientState"], "Graph holds the subscription's clientState"
        yield server, subscription_id, stored["clientState"]
    finally:
        server.stop()


def _change(subscription_id: str | None, client_state: str | None, record_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscriptionId": subscription_id,
        "changeType": "created",
        "resource": f"communications/callRecords/{record_id}",
        "resourceData": {"@odata.type": "#microsoft.graph.callrecord", "id": record_id},
        "tenantId": str(uuid.uuid4()),
        "subscriptionExpirationDateTime": "2099-01-01T00:00:00Z",
    }
    if client_state is not None:
        item["clientState"] = client_state
    return {"value": [item]}


def _subscriptions_created(sandbox: SandboxServer) -> int:
    return sum(1 for r in sandbox.requests() if r["method"] == "POST" and r["path"].endswith("/subscriptions"))


def _post_webhook(service: ServiceServer, path: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(verify=service.ssl_context, trust_env=False, timeout=30) as client:
        return client.post(f"{service.base_url}{path}", json=body)


def test_a_notification_with_our_client_state_is_acted_on(
    subscribed: tuple[ServiceServer, str, str], sandbox: SandboxServer
) -> None:
    """The control row: with the right clientState the bot fetches the published record from Graph."""
    service, subscription_id, client_state = subscribed
    record_id = f"control-{uuid.uuid4()}"
    response = _post_webhook(service, "/api/notifications", _change(subscription_id, client_state, record_id))
    assert response.status_code == 202
    wait_for(lambda: _graph_requests_about(sandbox, record_id), "the bot to fetch the call record")


WEBHOOK_CASES: dict[str, Callable[[str, str], tuple[str | None, str | None]]] = {
    "wrong clientState": lambda sid, state: (sid, "not-" + state),
    "clientState with one character changed": lambda sid, state: (sid, state[:-1] + ("A" if state[-1] != "A" else "B")),
    "clientState prefix": lambda sid, state: (sid, state[: len(state) // 2]),
    "empty clientState": lambda sid, state: (sid, ""),
    "no clientState": lambda sid, state: (sid, None),
    "non-ASCII clientState": lambda sid, state: (sid, state + "é"),
    "unknown subscription, our clientState": lambda sid, state: (str(uuid.uuid4()), state),
}


@pytest.mark.parametrize("case", list(WEBHOOK_CASES))
def test_notifications_without_our_client_state_are_accepted_but_ignored(
    subscribed: tuple[ServiceServer, str, str],
    sandbox: SandboxServer,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    service, subscription_id, client_state = subscribed
    keeper = service.app.state.keeper
    held_before = [s.id for s in keeper.subscriptions]
    created_before = _subscriptions_created(sandbox)
    record_id = f"ignored-{uuid.uuid4()}"
    sent_id, sent_state = WEBHOOK_CASES[case](subscription_id, client_state)

    response = _post_webhook(service, "/api/notifications", _change(sent_id, sent_state, record_id))
    # Graph's contract: acknowledge within 3 s whatever the content, or Graph retries and eventually drops us.
    assert response.status_code == 202, case
    lifecycle = _change(sent_id, sent_state, record_id)
    lifecycle["value"][0]["lifecycleEvent"] = "subscriptionRemoved"
    assert _post_webhook(service, "/api/notifications/lifecycle", lifecycle).status_code == 202

    # Ignored: nothing fetched, nothing recorded, the subscription not recreated. A control notification sent after
    # it is handled in order, so once its fetch shows, an earlier fetch would have shown too.
    control = f"after-{uuid.uuid4()}"
    _post_webhook(service, "/api/notifications", _change(subscription_id, client_state, control))
    wait_for(lambda: _graph_requests_about(sandbox, control), "the control notification's fetch")
    assert _graph_requests_about(sandbox, record_id) == []
    assert all(record_id not in json.dumps(r) for r in service.client.get("/v1/callrecords").json()["value"])
    assert [s.id for s in keeper.subscriptions] == held_before
    assert _subscriptions_created(sandbox) == created_before
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "clientState" in r.getMessage()]
    assert len(warnings) == 2, [r.getMessage() for r in caplog.records]  # one per endpoint
    assert client_state not in caplog.text
    if sent_state:
        assert sent_state not in caplog.text


# -- /media/whip -------------------------------------------------------------------------------------------------------

PLANES = {
    "engine": lambda url, folder: MediaEngine(whip_options(url, folder)),
    "worker": lambda url, folder: MediaWorkers(whip_options(url, folder), 1, stop_timeout_s=20.0),
}


@pytest.fixture(params=list(PLANES))
async def plane(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    make = PLANES[request.param]
    async with serving_whip(lambda url: make(url, tmp_path)) as (media, _url, client):
        yield media, client


def _whip_cases(own: str, other: str) -> dict[str, str | bytes | None]:
    return {
        "missing": None,
        "empty": "",
        "scheme only": "Bearer",
        "wrong token": "Bearer wrong",
        "another session's token": f"Bearer {other}",
        "right token, Basic scheme": f"Basic {own}",
        "right token, no scheme": own,
        "token prefix": f"Bearer {own[:-1]}",
        "token plus one character": f"Bearer {own}x",
        "token in another case": f"Bearer {own.swapcase()}",
        "non-ASCII bytes": b"Bearer \xff" + own.encode(),
    }


async def test_whip_refuses_every_wrong_bearer_and_connects_nothing(
    plane: tuple[Any, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    media, client = plane
    session = media.open_standalone()
    other = media.open_standalone()
    pc, _ = await offer_for(np.zeros(960, np.int16))
    sdp = pc.localDescription.sdp
    await pc.close()
    endpoint = f"/media/whip/{session.id}"
    cases = _whip_cases(session.token, other.token)
    for index, (case, authorization) in enumerate(cases.items()):
        headers: dict[str, str | bytes] = {"Content-Type": "application/sdp"}
        if authorization is not None:
            headers["Authorization"] = authorization
        response = await client.post(endpoint, params={"source": f"refused-{index}"}, content=sdp, headers=headers)
        assert response.status_code == 401, f"{case}: {response.status_code} {response.text}"
        assert response.headers["www-authenticate"] == "Bearer"

    if isinstance(media, MediaWorkers):
        # The worker checks the bearer again: a request that got past the service's check would still be refused.
        owner = media._owner(session)
        with pytest.raises(WhipUnauthorized):
            await owner.call("whip_offer", session.id, "Bearer wrong", "sneaky", sdp.encode())
        with pytest.raises(WhipUnauthorized):
            await owner.call("whip_delete", session.id, "any-resource", f"Bearer {other.token}")
    # The right bearer connects; a source refused above would show up next to it, as the worker reports in order.
    good, _ = await offer_for(np.zeros(RATE * 10, np.int16))
    try:
        response = await client.post(
            endpoint,
            params={"source": "good"},
            content=good.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {session.token}"},
        )
        assert response.status_code == 201, response.text
        location = response.headers["location"]
        # Completed, so that the connection can be ended cleanly (see the report on never-connected publishers).
        await good.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
        async with asyncio.timeout(30):
            while not session.live()["sources"]:  # noqa: ASYNC110 - a worker pushes its snapshot on its own schedule
                await asyncio.sleep(0.05)
        assert [s["source_id"] for s in session.live()["sources"]] == ["good"]

        # DELETE needs the bearer too: refused ones leave the connection in place.
        for case, authorization in cases.items():
            headers = {"Authorization": authorization} if authorization is not None else {}
            refused = await client.delete(location, headers=headers)
            assert refused.status_code == 401, f"DELETE {case}: {refused.status_code}"
        assert [s["connected"] for s in session.live()["sources"]] == [True]
        assert (await client.delete(location, headers={"Authorization": f"Bearer {session.token}"})).status_code == 200
    finally:
        await good.close()

    await media.close_session(session.id)
    await media.close_session(other.id)
    assert session.token not in caplog.text and other.token not in caplog.text


# -- /v1 and the other routes ------------------------------------------------------------------------------------------

# Routes anyone may call, and why.
PUBLIC = {
    ("GET", "/healthz"): "liveness",
    ("GET", "/metrics"): "Prometheus scrape (counts only, no ids)",
    ("GET", "/openapi.json"): "API description",
    ("GET", "/docs"): "API description",
    ("GET", "/docs/oauth2-redirect"): "API description",
    ("GET", "/redoc"): "API description",
    ("GET", "/console"): "static page; its data comes from /v1",
    ("GET", "/join"): "static page; publishing needs a session bearer from /v1",
    ("GET", "/console/login"): "static page",
    ("GET", "/console/static/{name}"): "static scripts and styles",
    ("POST", "/console/logout"): "clears the cookie",
}
# Routes that authenticate with something other than the API key (each has its table above or in test_console).
SELF_AUTHENTICATED = {
    ("POST", "/api/calling"): "Graph-signed callback JWT",
    ("POST", "/api/notifications"): "subscription clientState",
    ("POST", "/api/notifications/lifecycle"): "subscription clientState",
    ("POST", "/media/whip/{session_id}"): "the session's WHIP bearer",
    ("DELETE", "/media/whip/{session_id}/{resource_id}"): "the session's WHIP bearer",
    ("POST", "/console/login"): "checks the API key itself",
}


def _leaf_routes(routes: list[BaseRoute]) -> Iterator[Route]:
    """Every route of an app, through included routers (nested ones too)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _leaf_routes(included.routes)
        elif isinstance(route, Route):
            yield route
        else:
            pytest.fail(f"a route of a kind this test cannot check: {route!r}")


def _methods_and_paths(app: FastAPI) -> list[tuple[str, str, Route]]:
    return [
        (method, route.path, route)
        for route in _leaf_routes(app.routes)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]


def _needs_api_key(route: Route) -> bool:
    if not isinstance(route, APIRoute):
        return False
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is require_api_key:
            return True
        pending.extend(dependency.dependencies)
    return False


def test_every_route_is_authenticated_or_public_on_purpose(matrix: ServiceServer) -> None:
    routes = _methods_and_paths(matrix.app)
    # The walk sees what the OpenAPI description lists (so it does not miss included routers).
    listed = {(method.upper(), path) for path, item in matrix.app.openapi()["paths"].items() for method in item}
    assert listed <= {(method, path) for method, path, _ in routes}
    unexplained = [
        f"{method} {path}"
        for method, path, route in routes
        if (method, path) not in PUBLIC and (method, path) not in SELF_AUTHENTICATED and not _needs_api_key(route)
    ]
    assert unexplained == [], "routes with no authentication and not listed as public"
    assert all(path.startswith("/v1/") for method, path, route in routes if _needs_api_key(route))
    assert all(_needs_api_key(route) for method, path, route in routes if path.startswith("/v1/"))


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _bad_credentials(service: ServiceServer) -> dict[str, dict[str, str | bytes]]:
    other_key_cookie = console_cookie("another-instances-key")
    expired = console_cookie(API_KEY, now=time.time() - 2 * CONSOLE_SESSION_S)
    expires, _, signature = console_cookie(API_KEY).partition(".")
    return {
        "none": {},
        "wrong key": {"Authorization": "Bearer wrong-key"},
        "key prefix": {"Authorization": f"Bearer {API_KEY[:-1]}"},
        "key plus a character": {"Authorization": f"Bearer {API_KEY}x"},
        "key, Basic scheme": {"Authorization": f"Basic {API_KEY}"},
        "key without a scheme": {"Authorization": API_KEY},
        "scheme only": {"Authorization": "Bearer"},
        "non-ASCII bytes": {"Authorization": b"Bearer \xff" + API_KEY.encode()},
        "key as the cookie": {"Cookie": f"{CONSOLE_COOKIE}={API_KEY}"},
        "cookie of another key": {"Cookie": f"{CONSOLE_COOKIE}={other_key_cookie}"},
        "expired cookie": {"Cookie": f"{CONSOLE_COOKIE}={expired}"},
        "cookie with a stretched expiry": {"Cookie": f"{CONSOLE_COOKIE}={int(expires) + 3600}.{signature}"},
        "key in another header": {"X-API-Key": API_KEY},
    }


def test_every_v1_route_refuses_a_missing_or_wrong_key(matrix: ServiceServer) -> None:
    routes = [(method, path) for method, path, route in _methods_and_paths(matrix.app) if _needs_api_key(route)]
    assert len(routes) >= 20  # 24 when this was written
    sessions_before = len(matrix.client.get("/v1/live").json()["sessions"])
    refused = 0
    with httpx.Client(base_url=matrix.base_url, verify=matrix.ssl_context, trust_env=False, timeout=30) as bare:
        for method, path in routes:
            url = _concrete(path)
            for case, headers in _bad_credentials(matrix).items():
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                with bare.stream(
                    method,
                    url,
                    params={"api_key": API_KEY},
                    content=body,
                    headers={**headers, "Origin": matrix.base_url},
                ) as response:
                    assert response.status_code == 401, f"{method} {path} with {case}: {response.status_code}"
                    assert response.headers["www-authenticate"] == "Bearer"
                refused += 1
            # The control: with the key the same request is not refused (it may be a 404 or a 422: no such call).
            with matrix.client.stream(method, url, content=b"{}" if method == "POST" else None) as response:
                assert response.status_code not in (401, 403), f"{method} {path} with the key"
    assert refused == len(routes) * len(_bad_credentials(matrix))
    # Nothing was opened by the refused requests (POST /v1/sessions opened one, with the key, in the control).
    sessions = matrix.client.get("/v1/live").json()["sessions"]
    assert len(sessions) <= sessions_before + 1
    for session in sessions:
        matrix.client.delete(f"/v1/sessions/{session['session_id']}")


@pytest.mark.parametrize(
    "given", ["", "wrong", API_KEY[:-1], API_KEY + "x", API_KEY.upper(), API_KEY + "é", " " + API_KEY]
)
def test_the_console_login_refuses_a_wrong_key_and_sets_no_cookie(matrix: ServiceServer, given: str) -> None:
    with httpx.Client(base_url=matrix.base_url, verify=matrix.ssl_context, trust_env=False) as bare:
        response = bare.post("/console/login", json={"api_key": given})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_an_unauthenticated_body_is_refused_before_it_is_parsed(matrix: ServiceServer) -> None:
    with httpx.Client(base_url=matrix.base_url, verify=matrix.ssl_context, trust_env=False) as bare:
        response = bare.post("/v1/calls", content=b'{"user_ids": [', headers={"Content-Type": "application/json"})
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        # A body larger than any /v1 request is refused from its declared length, key or not, before it is read.
        huge = bare.post(
            "/v1/calls",
            content=b"[" * (2 * 1024 * 1024),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
        )
        assert huge.status_code == 413
