"""No secret reaches a log: a whole ``mediabot demo`` call with every logger at DEBUG, then every line searched.

``run_call_demo`` runs in this process (the sandbox and the bot are its two child processes, as with ``mediabot
demo``), with its state folder kept so that both children's logs can be read afterwards. Every logger is at DEBUG: the
bot runs with ``-v`` and the sandbox with ``MEDIABOT_LOG_LEVEL=DEBUG`` (so httpx, httpcore, msal, uvicorn, aiortc and
aioice log everything they log; ``MEDIABOT_LOG_PACKETS`` stays off), the children in JSON lines, this process in text.
The bot subscribes to callRecords so that webhooks with a clientState flow too.

While the call runs, the test reads the secrets the way an attacker who got the logs would want them (the media
blob's WHIP bearer from Graph's call resource, the subscription's clientState, an access token from the token
endpoint) and pokes the refusal paths that log (a platform-signed callback token for another app, a WHIP offer with
the right bearer and a broken body, a webhook with a wrong clientState, a console login). Afterwards the children's
logs, this process's log and console output, and the call's output files are searched for: the client secret, the API
key, the console cookie, every JWT-shaped string (access tokens, callback tokens, client assertions), the WHIP bearer,
the clientState, the forged callback token, the private keys' PEM bodies and SDP ICE passwords (aiortc logs whole
SDPs at DEBUG).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import ssl
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from mediabot import demo_call
from mediabot.demo import SandboxProcess
from mediabot.logs import configure_logging, redact
from mediabot.media.blob import MediaConfigBlob

CLIPS = Path(__file__).parent.parent / "mediabot" / "sandbox" / "scenarios"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.?[A-Za-z0-9_-]*")
ICE_PWD = re.compile(r"a=ice-pwd:(?!\*\*\*)\S")
SPY_TIMEOUT_S = 60.0


class Spy:
    """Learns the run's secrets while the call is live, and exercises the refusal paths that write log lines."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.refusals: dict[str, int] = {}

    def keep(self, name: str, value: str | None) -> None:
        assert value, f"the test could not learn the {name}"
        self.secrets[name] = value

    async def run(self, sandbox: SandboxProcess, bot: demo_call.BotProcess) -> None:
        env = sandbox.env
        self.keep("client secret", env["MEDIABOT_CLIENT_SECRET"])
        self.keep("API key", bot.api_key)
        verify = ssl.create_default_context(cafile=env["MEDIABOT_CA_BUNDLE"])
        async with httpx.AsyncClient(verify=verify, trust_env=False, timeout=30) as http:
            issued = await http.post(
                f"{env['MEDIABOT_AUTHORITY']}/oauth2/v2.0/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": env["MEDIABOT_CLIENT_ID"],
                    "client_secret": env["MEDIABOT_CLIENT_SECRET"],
                    "scope": "https://graph.microsoft.com/.default",
                },
            )
            self.keep("Graph access token", issued.json().get("access_token"))
            graph = {"Authorization": f"Bearer {self.secrets['Graph access token']}"}
            blob, subscription = await self._live_secrets(http, sandbox, graph)
            self.keep("WHIP bearer", blob.token)
            self.keep("clientState", subscription["clientState"])
            await self._refusals(http, sandbox, bot, blob, subscription)

    async def _live_secrets(
        self, http: httpx.AsyncClient, sandbox: SandboxProcess, graph: dict[str, str]
    ) -> tuple[MediaConfigBlob, dict[str, Any]]:
        graph_url = sandbox.env["MEDIABOT_GRAPH_URL"]
        async with asyncio.timeout(SPY_TIMEOUT_S):
            while True:
                runs = (await sandbox.admin("GET", "/scenarios"))["value"]
                call_id = next((run["call_id"] for run in runs if run.get("call_id")), None)
                call = (
                    (await http.get(f"{graph_url}/communications/calls/{call_id}", headers=graph)) if call_id else None
                )
                listed = (await http.get(f"{graph_url}/subscriptions", headers=graph)).json().get("value", [])
                if call is not None and call.status_code == 200 and listed:
                    blob = MediaConfigBlob.from_media_config(call.json().get("mediaConfig"))
                    if blob is not None:
                        return blob, listed[0]
                await asyncio.sleep(0.1)

    async def _refusals(
        self,
        http: httpx.AsyncClient,
        sandbox: SandboxProcess,
        bot: demo_call.BotProcess,
        blob: MediaConfigBlob,
        subscription: dict[str, Any],
    ) -> None:
        # A callback token really signed by the platform, for another app: refused, and the refusal is logged.
        key = (sandbox.state_dir / "sandbox" / "callback-signing-key.pem").read_bytes()
        now = int(time.time())
        claims = {"iss": "https://graph.microsoft.com", "aud": "another-app", "iat": now, "nbf": now, "exp": now + 300}
        keys = (await http.get(f"{sandbox.env['MEDIABOT_SANDBOX_URL']}/callback/keys")).json()["keys"]
        kid = keys[0]["kid"]
        stolen = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
        self.keep("callback token for another app", stolen)
        response = await http.post(
            f"{bot.base_url}/api/calling", json={"value": []}, headers={"Authorization": f"Bearer {stolen}"}
        )
        self.refusals["callback"] = response.status_code
        # The right WHIP bearer with a broken offer: refused (400) and logged.
        response = await http.post(
            blob.endpoint,
            params={"source": "spy"},
            content=b"v=0\r\nnot an offer\r\n",
            headers={"Authorization": f"Bearer {blob.token}", "Content-Type": "application/sdp"},
        )
        self.refusals["whip"] = response.status_code
        # A webhook for our subscription with someone else's clientState: accepted, ignored, logged.
        forged = {
            "value": [
                {
                    "subscriptionId": subscription["id"],
                    "clientState": "guess-" + subscription["clientState"][:8],
                    "changeType": "created",
                    "resource": "communications/callRecords/spy",
                }
            ]
        }
        response = await http.post(f"{bot.base_url}/api/notifications", json=forged)
        self.refusals["webhook"] = response.status_code
        # A console login: its cookie is a secret too.
        response = await http.post(f"{bot.base_url}/console/login", json={"api_key": bot.api_key})
        self.keep("console cookie", response.cookies.get("mediabot_console"))


def _pem_bodies(folder: Path) -> dict[str, str]:
    """Lines of every private key's PEM body in ``folder`` (any one of them in a log is a leak)."""
    bodies = {}
    for path in sorted(folder.glob("*.pem")):
        text = path.read_text()
        if "PRIVATE KEY" in text:
            lines = [line for line in text.splitlines() if line and not line.startswith("-----")]
            for index, line in enumerate(lines):
                bodies[f"{path.name} line {index + 1}"] = line
    return bodies


def test_a_whole_call_at_debug_logs_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    monkeypatch.setenv("MEDIABOT_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("MEDIABOT_LOG_FORMAT", "json")
    monkeypatch.setenv("MEDIABOT_SUBSCRIBE_CALL_RECORDS", "true")
    monkeypatch.delenv("MEDIABOT_LOG_PACKETS", raising=False)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    out = tmp_path / "out"
    scenario = tmp_path / "call.json"
    scenario.write_text(
        json.dumps(
            {
                "name": "secrets",
                "kind": "meeting",
                "duration": 4,
                "participants": [
                    {"name": "Ann", "audio": str(CLIPS / "adele-vance.wav"), "dtmf": [{"at": 2.5, "digits": "1"}]}
                ],
            }
        )
    )

    @contextlib.contextmanager
    def kept_state(prefix: str = "") -> Iterator[str]:
        yield str(state)

    monkeypatch.setattr(demo_call, "tempfile", types.SimpleNamespace(TemporaryDirectory=kept_state))
    spy = Spy()
    drive = demo_call._drive

    async def drive_and_spy(sandbox: SandboxProcess, bot: demo_call.BotProcess, *args: Any) -> Any:
        spying = asyncio.create_task(spy.run(sandbox, bot))
        try:
            result = await drive(sandbox, bot, *args)
        finally:
            if not spying.done():
                spying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await spying
        return result

    monkeypatch.setattr(demo_call, "_drive", drive_and_spy)
    parent_log = io.StringIO()
    configure_logging("DEBUG", "text", stream=parent_log)

    ok = asyncio.run(demo_call.run_call_demo(scenario, out, json_output=True))

    printed = capsys.readouterr()
    assert ok, printed.out[-3000:] + printed.err[-3000:]
    assert spy.refusals == {"callback": 401, "whip": 400, "webhook": 202}
    assert {"WHIP bearer", "clientState", "console cookie", "Graph access token"} <= spy.secrets.keys()

    corpus = {
        "bot.log": (state / "bot.log").read_text("utf-8", "replace"),
        "sandbox.log": (state / "sandbox.log").read_text("utf-8", "replace"),
        "this process's log": parent_log.getvalue(),
        "console output": printed.out + printed.err,
    }
    for path in sorted(out.rglob("*")):
        if path.suffix in (".json", ".jsonl", ".vtt", ".srt", ".txt", ".log"):
            corpus[f"output {path.relative_to(out)}"] = path.read_text("utf-8", "replace")
    # The logs are the DEBUG logs of every library the brief names, not a quiet subset.
    bot_loggers = {json.loads(line)["logger"] for line in corpus["bot.log"].splitlines() if line.startswith("{")}
    for prefix in ("httpx", "httpcore.", "msal.", "uvicorn.", "aiortc.", "aioice.", "mediabot.graph.callback_auth"):
        assert any(name.startswith(prefix) for name in bot_loggers), f"no {prefix} lines in the bot's log"
    assert '"level": "DEBUG"' in corpus["bot.log"] and '"level": "DEBUG"' in corpus["sandbox.log"]
    assert "RtpPacket(" not in corpus["bot.log"]  # per-packet logging stays off

    secrets = {**spy.secrets, **_pem_bodies(state / "sandbox")}
    assert len(secrets) >= 12
    leaks = [f"{name} in {where}" for where, text in corpus.items() for name, value in secrets.items() if value in text]
    leaks += [f"a JWT in {where}: {match[:24]}…" for where, text in corpus.items() for match in JWT.findall(text)]
    leaks += [f"a PEM private key in {where}" for where, text in corpus.items() if "PRIVATE KEY-----" in text]
    leaks += [f"an ICE password in {where}" for where, text in corpus.items() if ICE_PWD.search(text)]
    assert leaks == []
    # The refusals were logged (so their lines were searched too).
    assert "refused a call notification" in corpus["bot.log"]
    assert "ignored a change notification" in corpus["bot.log"]
    assert os.stat(state / "bot.log").st_size > 50_000


# -- the redaction net (what mediabot.logs masks even when a library logs it) ----------------------------------------

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (  # httpcore's DEBUG line of a response's headers
            "receive_response_headers.complete return_value=(b'HTTP/1.1', 200, b'OK', [(b'date', b'Sun'), "
            "(b'set-cookie', b'mediabot_console=1.sig; HttpOnly; Path=/'), (b'content-length', b'17')])",
            "receive_response_headers.complete return_value=(b'HTTP/1.1', 200, b'OK', [(b'date', b'Sun'), "
            "(b'set-cookie', b'***'), (b'content-length', b'17')])",
        ),
        (
            "[(b'authorization', b'Bearer abc'), (b'x-api-key', b'k-1')]",
            "[(b'authorization', b'***'), (b'x-api-key', b'***')]",
        ),
        ("Cookie: mediabot_console=1.sig; other=2", "Cookie: ***"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "Authorization: Basic ***"),
        ('{"clientState": "s3cret", "subscriptionId": "x"}', '{"clientState": "***", "subscriptionId": "x"}'),
        ('{"session_id": "x", "token": "abcDEF123"}', '{"session_id": "x", "token": "***"}'),
        ('{"blob": "eyJ2IjoxLCJ0b2tlbiI6InRvayJ9"}', '{"blob": "***"}'),
        ("MEDIABOT_API_KEY=abc123 next", "MEDIABOT_API_KEY=*** next"),
        ("recordingAccessToken: tok-1", "recordingAccessToken: ***"),
        (
            "setLocalDescription(answer)\nv=0\r\na=ice-ufrag:Ab12\r\na=ice-pwd:X8nQYPUGkH336gRyQVAKFr\r\n",
            "setLocalDescription(answer)\nv=0\r\na=ice-ufrag:Ab12\r\na=ice-pwd:***\r\n",
        ),
        ("GET /x?sig=eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4eHgifQ.c2ln-_x done", "GET /x?sig=*** done"),
        (f"loaded {PEM}\nafter", "loaded [private key redacted]\nafter"),
        # Ordinary messages stay as they are.
        ("the media config blob has no 'token'", "the media config blob has no 'token'"),
        ("not a Basic scheme", "not a Basic scheme"),
        ("token_type: Bearer", "token_type: Bearer"),
        ("ignored a change notification with an unknown subscription or clientState", None),
    ],
)
def test_the_redaction_net(text: str, expected: str | None) -> None:
    assert redact(text) == (text if expected is None else expected)
