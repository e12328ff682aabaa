"""The sandbox as calling platform: signed commsNotifications POSTed to a real loopback receiver."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from mediabot.sandbox import SandboxServer
from mediabot.sandbox import _notifier as notifier_module
from mediabot.sandbox._callback_signing import CallbackSigner
from mediabot.sandbox._notifier import CallNotifier

from .conftest import SERVICE_MEDIA, call_body, graph_client

_WAIT = 15.0


class Receiver:
    """A plain-HTTP bot callback on 127.0.0.1 that records every POST (path, Authorization, JSON body)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver._changed:
                    receiver.posts.append(
                        {"path": self.path, "authorization": self.headers.get("Authorization"), "body": body}
                    )
                    receiver._changed.notify_all()
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/api/calling") -> str:
        """The callbackUri this receiver answers at."""
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def notifications(self, call_id: str) -> list[dict[str, Any]]:
        """Every notification received about ``call_id``, in arrival order."""
        with self._changed:
            return [
                item
                for post in self.posts
                for item in post["body"]["value"]
                if item["resourceUrl"].startswith(f"/communications/calls/{call_id}")
            ]

    def wait_for(self, call_id: str, predicate: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """Block (bounded) until the notifications about ``call_id`` satisfy ``predicate``."""
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self.notifications(call_id)), timeout=_WAIT), (
                self.notifications(call_id)
            )
            return self.notifications(call_id)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _states(items: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [
        (item["changeType"], item["resourceData"].get("state"))
        for item in items
        if isinstance(item["resourceData"], dict) and item["resourceData"].get("@odata.type") == "#microsoft.graph.call"
    ]


def _terminated(items: list[dict[str, Any]]) -> bool:
    return any(item["changeType"] == "deleted" and "/operations/" not in item["resourceUrl"] for item in items)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    with SandboxServer(tmp_path_factory.mktemp("platform"), answer_deadline=1.0) as server:
        yield server


@pytest.fixture(scope="module")
def bot(platform: SandboxServer) -> Iterator[httpx.Client]:
    with graph_client(platform) as client:
        yield client


def _ring(platform: SandboxServer, receiver: Receiver) -> str:
    return str(platform.incoming_call(callback_uri=receiver.url())["id"])


def _answer(bot: httpx.Client, call_id: str, receiver: Receiver) -> None:
    response = bot.post(
        f"/communications/calls/{call_id}/answer",
        json={"callbackUri": receiver.url(), "mediaConfig": SERVICE_MEDIA, "acceptedModalities": ["audio"]},
    )
    assert response.status_code == 202, response.text


def test_callback_tokens_verify_against_the_published_keys(platform: SandboxServer, receiver: Receiver) -> None:
    call_id = _ring(platform, receiver)
    receiver.wait_for(call_id, lambda items: len(items) >= 1)
    with httpx.Client(verify=platform.ssl_context(), trust_env=False) as client:
        openid = client.get(platform.callback_openid_url).json()
        jwks = client.get(openid["jwks_uri"]).json()
    assert openid["issuer"] == "https://graph.microsoft.com"
    assert platform.env["MEDIABOT_CALLBACK_OPENID_URL"] == platform.callback_openid_url
    post = next(p for p in receiver.posts if p["body"]["value"][0]["resourceUrl"] == f"/communications/calls/{call_id}")
    scheme, _, token = post["authorization"].partition(" ")
    assert scheme == "Bearer"
    header = jwt.get_unverified_header(token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(
        token,
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=platform.default_app.client_id,
        issuer="https://graph.microsoft.com",
        options={"require": ["exp", "iat", "nbf", "aud", "iss"]},
    )
    assert claims["tid"] == platform.tenant_id
    assert claims["appid"] == platform.default_app.client_id
    assert claims["exp"] - claims["iat"] <= 300


def test_incoming_then_answer_then_hang_up(platform: SandboxServer, bot: httpx.Client, receiver: Receiver) -> None:
    call_id = _ring(platform, receiver)
    created = receiver.wait_for(call_id, lambda items: len(items) >= 1)[0]
    assert created["changeType"] == "created"
    assert created["resourceData"]["state"] == "incoming"
    assert created["resourceData"]["direction"] == "incoming"
    _answer(bot, call_id, receiver)
    items = receiver.wait_for(call_id, lambda items: len(items) >= 4)
    assert _states(items) == [("created", "incoming"), ("updated", "establishing"), ("updated", "established")]
    roster = items[3]
    assert roster["resourceUrl"] == f"/communications/calls/{call_id}/participants"
    assert len(roster["resourceData"]) == 2
    assert all(p["mediaStreams"][0]["sourceId"] for p in roster["resourceData"])
    assert bot.delete(f"/communications/calls/{call_id}").status_code == 204
    items = receiver.wait_for(call_id, _terminated)
    ended = items[-1]["resourceData"]
    assert ended["state"] == "terminated"
    assert (ended["resultInfo"]["code"], ended["resultInfo"]["subcode"]) == (200, 5001)


def test_created_call_is_established_with_roster(bot: httpx.Client, receiver: Receiver) -> None:
    body = {**call_body(), "callbackUri": receiver.url()}
    call_id = bot.post("/communications/calls", json=body).json()["id"]
    items = receiver.wait_for(call_id, lambda items: len(items) >= 3)
    assert _states(items) == [("updated", "establishing"), ("updated", "established")]
    assert items[2]["resourceUrl"].endswith("/participants")


def test_operation_completion_carries_client_context(
    platform: SandboxServer, bot: httpx.Client, receiver: Receiver
) -> None:
    call_id = _ring(platform, receiver)
    _answer(bot, call_id, receiver)
    prompt = {
        "clientContext": "ctx-42",
        "prompts": [
            {
                "@odata.type": "#microsoft.graph.mediaPrompt",
                "mediaInfo": {"@odata.type": "#microsoft.graph.mediaInfo", "uri": "https://x.example/a.wav"},
            }
        ],
    }
    response = bot.post(f"/communications/calls/{call_id}/playPrompt", json=prompt)
    assert response.status_code == 200, response.text
    operation_id = response.json()["id"]
    url = f"/communications/calls/{call_id}/operations/{operation_id}"
    items = receiver.wait_for(call_id, lambda items: any(i["resourceUrl"] == url for i in items))
    done = next(i for i in items if i["resourceUrl"] == url)["resourceData"]
    assert done["@odata.type"] == "#microsoft.graph.playPromptOperation"
    assert (done["status"], done["clientContext"], done["resultInfo"]["code"]) == ("completed", "ctx-42", 200)


def test_tones_reach_a_subscribed_call_only(platform: SandboxServer, bot: httpx.Client, receiver: Receiver) -> None:
    call_id = _ring(platform, receiver)
    _answer(bot, call_id, receiver)
    assert platform.send_tones(call_id, ["tone1"])["notified"] == []
    response = bot.post(f"/communications/calls/{call_id}/subscribeToTone", json={"clientContext": "tones"})
    assert response.status_code == 200, response.text
    assert len(platform.send_tones(call_id, ["tone1", "pound"])["notified"]) == 2

    def tones(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            i["resourceData"]["toneInfo"]
            for i in items
            if isinstance(i["resourceData"], dict) and i["resourceData"].get("toneInfo")
        ]

    items = receiver.wait_for(call_id, lambda items: len(tones(items)) >= 2)
    assert [(t["sequenceId"], t["tone"]) for t in tones(items)] == [(1, "tone1"), (2, "pound")]


def test_unanswered_call_ends_at_the_answer_deadline(
    platform: SandboxServer, bot: httpx.Client, receiver: Receiver
) -> None:
    call_id = _ring(platform, receiver)
    items = receiver.wait_for(call_id, _terminated)
    assert items[-1]["resourceData"]["resultInfo"]["code"] == 408
    assert bot.get(f"/communications/calls/{call_id}").status_code == 404


def test_rejected_call_is_deleted(platform: SandboxServer, bot: httpx.Client, receiver: Receiver) -> None:
    call_id = _ring(platform, receiver)
    response = bot.post(f"/communications/calls/{call_id}/reject", json={"reason": "busy"})
    assert response.status_code == 202, response.text
    items = receiver.wait_for(call_id, _terminated)
    assert items[-1]["resourceData"]["state"] == "terminated"


def test_default_callback_and_issue_path(platform: SandboxServer, receiver: Receiver) -> None:
    platform.set_callback(platform.default_app.client_id, receiver.url("/default"))
    with httpx.Client(base_url=platform.base_url, verify=platform.ssl_context(), trust_env=False) as client:
        call = client.post("/sandbox/calls/incoming", json={}).json()
    assert call["callbackUri"] == receiver.url("/default")
    receiver.wait_for(call["id"], lambda items: len(items) >= 1)
    log = [entry for entry in platform.notifications() if entry["call_id"] == call["id"]]
    assert log[0]["outcome"] == "delivered"
    assert log[0]["notifications"][0]["changeType"] == "created"


def test_keepalive_expiry_ends_the_call(tmp_path: Path, receiver: Receiver) -> None:
    with SandboxServer(tmp_path, keepalive_timeout=0.5) as sandbox, graph_client(sandbox) as client:
        body = {**call_body(), "callbackUri": receiver.url()}
        call_id = client.post("/communications/calls", json=body).json()["id"]
        items = receiver.wait_for(call_id, _terminated)
        assert items[-1]["resourceData"]["resultInfo"]["code"] == 408


def test_unresolvable_callbacks_fail_quietly(sandbox: SandboxServer, graph: httpx.Client) -> None:
    call_id = graph.post("/communications/calls", json=call_body()).json()["id"]
    assert graph.get(f"/communications/calls/{call_id}").status_code == 200
    skipped = sandbox.incoming_call(callback_uri="ftp://nowhere")["id"]
    entries = [e for e in sandbox.notifications() if e["call_id"] == skipped]
    assert entries and entries[0]["outcome"] == "skipped"


# -- retries and cancellation, over httpx.MockTransport ------------------------------------------------------


class Callbacks:
    """A MockTransport handler: ``good`` callback URIs answer 202, ``bad`` ones refuse, ``stuck`` ones never answer."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.arrived: dict[str, asyncio.Event] = {}
        self._never = asyncio.Event()

    def event(self, uri: str) -> asyncio.Event:
        return self.arrived.setdefault(uri, asyncio.Event())

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        uri = str(request.url)
        self.attempts.append(uri)
        self.event(uri).set()
        if "stuck" in uri:
            await self._never.wait()
        if "bad" in uri:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(202)


@pytest.fixture
async def callbacks() -> Callbacks:
    return Callbacks()


@pytest.fixture
async def notifier(sandbox: SandboxServer, callbacks: Callbacks) -> AsyncIterator[CallNotifier]:
    config = sandbox.config
    instance = CallNotifier(config, CallbackSigner(config), transport=httpx.MockTransport(callbacks))
    yield instance
    await instance.aclose()


def _outcomes(notifier: CallNotifier, call_id: str) -> list[tuple[str, int]]:
    return [(e["outcome"], e["attempts"]) for e in notifier.deliveries() if e["call_id"] == call_id]


async def test_a_failing_delivery_is_retried_a_bounded_number_of_times(
    notifier: CallNotifier, callbacks: Callbacks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notifier_module, "_FIRST_BACKOFF", 0.0)
    bad, good = "https://bad.example/cb", "https://good.example/cb"
    notifier.send("c1", bad, "app", [{"changeType": "updated"}])
    notifier.send("c1", good, "app", [{"changeType": "updated"}])
    await callbacks.event(good).wait()  # lanes deliver in order: the bad one has given up by now
    assert callbacks.attempts.count(bad) == notifier_module._ATTEMPTS
    assert _outcomes(notifier, "c1")[0] == ("failed", notifier_module._ATTEMPTS)


async def test_cancel_pending_stops_queued_retrying_and_stuck_deliveries(
    notifier: CallNotifier, callbacks: Callbacks
) -> None:
    bad, stuck, good = "https://bad.example/cb", "https://stuck.example/cb", "https://good.example/cb"
    for _ in range(3):
        notifier.send("retrying", bad, "app", [{"changeType": "updated"}])
    notifier.send("stuck", stuck, "app", [{"changeType": "updated"}])
    await callbacks.event(bad).wait()
    await callbacks.event(stuck).wait()
    notifier.send("queued", bad, "app", [{"changeType": "created"}])  # not even dispatched yet
    assert await notifier.cancel_pending() == 5
    assert _outcomes(notifier, "retrying") == [("cancelled", 0)] * 3
    assert _outcomes(notifier, "stuck") == [("cancelled", 0)]
    assert _outcomes(notifier, "queued") == [("cancelled", 0)]
    seen = len(callbacks.attempts)
    # Nothing of it runs on: a later delivery (same call id too) goes out alone.
    notifier.send("retrying", good, "app", [{"changeType": "deleted"}])
    await callbacks.event(good).wait()
    assert callbacks.attempts[seen:] == [good]
    assert await notifier.cancel_pending() == 0
