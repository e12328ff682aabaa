"""``mediabot demo``: start the sandbox as its own process and drive a call through it with the Graph client.

The sandbox and the bot share nothing but HTTPS, as with the real cloud. Every step is a real request; the
summary reports what each returned and how long it took, and the demo fails (non-zero exit) if any step did.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from mediabot._errors import MediaBotError
from mediabot.config import Settings
from mediabot.graph import GraphClient, TokenProvider, media_prompt, user_target

__all__ = ["run_demo"]

SANDBOX_START_TIMEOUT_S = 60.0
CALLBACK = "https://bot.invalid/api/calling"
SERVICE_MEDIA = {"@odata.type": "#microsoft.graph.serviceHostedMediaConfig"}


@dataclass
class Step:
    """One demo step: what was done, what came back, how long it took."""

    name: str
    ok: bool
    detail: str
    ms: float


class SandboxProcess:
    """``mediabot sandbox`` in a child process; its printed environment becomes the bot's settings."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.log_path = state_dir / "sandbox.log"
        self.env: dict[str, str] = {}
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the child and wait for its ``MEDIABOT_*`` lines."""
        log = self.log_path.open("wb")
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mediabot",
            "sandbox",
            "--port",
            "0",
            "--state-dir",
            str(self.state_dir / "sandbox"),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(SANDBOX_START_TIMEOUT_S):
                while "MEDIABOT_SANDBOX_URL" not in self.env:
                    line = await self._proc.stdout.readline()
                    if not line:
                        raise MediaBotError(f"the sandbox exited before it was ready; see {self.log_path}")
                    key, sep, value = line.decode().strip().partition("=")
                    if sep:
                        self.env[key] = value
        except TimeoutError as exc:
            raise MediaBotError(f"the sandbox did not start within {SANDBOX_START_TIMEOUT_S:.0f}s") from exc

    def settings(self) -> Settings:
        """Bot settings from the sandbox's printed environment, exactly as ``. ./sandbox.env`` would give."""
        return Settings(
            _env_file=None,
            tenant_id=self.env["MEDIABOT_TENANT_ID"],
            client_id=self.env["MEDIABOT_CLIENT_ID"],
            client_secret=self.env["MEDIABOT_CLIENT_SECRET"],
            authority=self.env["MEDIABOT_AUTHORITY"],
            graph_url=self.env["MEDIABOT_GRAPH_URL"],
            ca_bundle=Path(self.env["MEDIABOT_CA_BUNDLE"]),
            graph_max_backoff=2.0,
        )

    async def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call one of the sandbox's own ``/_sandbox`` routes (what a test harness would do)."""
        context = ssl.create_default_context(cafile=self.env["MEDIABOT_CA_BUNDLE"])
        async with httpx.AsyncClient(base_url=self.env["MEDIABOT_SANDBOX_URL"], verify=context) as http:
            response = await http.request(method, f"/_sandbox{path}", json=body)
            response.raise_for_status()
            return response.json() if response.content else None

    async def stop(self) -> None:
        """Terminate the child and wait for it."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()


def _short(identifier: str | None) -> str:
    return f"{identifier[:8]}…" if identifier else "-"


async def _step(steps: list[Step], name: str, action: Callable[[], Awaitable[str]]) -> None:
    started = time.perf_counter()
    try:
        detail = await action()
        ok = True
    except (MediaBotError, httpx.HTTPError, AssertionError) as exc:
        detail, ok = f"{type(exc).__name__}: {exc}", False
    steps.append(Step(name, ok, detail, (time.perf_counter() - started) * 1000))


async def _flow(sandbox: SandboxProcess, steps: list[Step]) -> None:
    settings = sandbox.settings()
    tokens = TokenProvider(settings)
    async with GraphClient(settings, tokens=tokens) as graph:
        ids: dict[str, str] = {}

        async def token() -> str:
            await tokens.get_token()
            return f"app {_short(settings.client_id)} via msal"

        async def place() -> str:
            call = await graph.call_user(str(uuid.uuid4()), callback_uri=CALLBACK, media_config=SERVICE_MEDIA)
            ids["call"], ids["chain"] = call.id or "", call.call_chain_id or ""
            return f"call {_short(call.id)} {call.state}"

        async def established() -> str:
            call = await graph.get_call(ids["call"])
            assert call.state == "established", f"state is {call.state}"
            return f"state {call.state}"

        async def tones() -> str:
            op = await graph.subscribe_to_tone(ids["call"], client_context="demo-tones")
            return f"operation {_short(op.id)} {op.status}"

        async def prompt() -> str:
            op = await graph.play_prompt(ids["call"], [media_prompt("https://bot.invalid/welcome.wav")])
            return f"operation {_short(op.id)} {op.status}"

        async def invite() -> str:
            op = await graph.invite_participants(ids["call"], [user_target(str(uuid.uuid4()), display_name="Guest")])
            return f"operation {_short(op.id)} {op.status}"

        async def roster() -> str:
            participants = await graph.list_participants(ids["call"])
            return f"{len(participants)} participants"

        async def throttled() -> str:
            path = f"/v1.0/communications/calls/{ids['call']}"
            fault = {"method": "GET", "path": path, "status": 429, "count": 2, "retry_after": 1, "match": "exact"}
            await sandbox.admin("POST", "/faults", fault)
            await graph.get_call(ids["call"])
            log = await sandbox.admin("GET", "/requests")
            statuses = [r["status"] for r in log["value"] if r["path"] == path][-3:]
            assert statuses == [429, 429, 200], f"attempts {statuses}"
            return "429, 429 (Retry-After: 1) then 200, one client-request-id"

        async def hang_up() -> str:
            await graph.hang_up(ids["call"])
            return "call deleted"

        async def record() -> str:
            # A call's record carries the id of its call chain.
            record = await graph.get_call_record(ids["chain"])
            sessions = await graph.list_call_record_sessions(record.id or "")
            return f"callRecord {_short(record.id)}: {len(sessions)} session(s)"

        for name, action in [
            ("token", token),
            ("place a call", place),
            ("call established", established),
            ("subscribe to tones", tones),
            ("play a prompt", prompt),
            ("invite a participant", invite),
            ("list the roster", roster),
            ("ride out throttling", throttled),
            ("hang up", hang_up),
            ("read the call record", record),
        ]:
            await _step(steps, name, action)
            if not steps[-1].ok and name in ("token", "place a call"):
                break
    tokens.close()


async def run_demo(*, json_output: bool = False) -> bool:
    """Run the sandbox smoke flow; print a summary table (and JSON if asked); True when every step worked."""
    console = Console(stderr=json_output)
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="mediabot-demo-") as tmp:
        os.chmod(tmp, 0o700)
        sandbox = SandboxProcess(Path(tmp))
        console.print("[bold]mediabot demo[/bold]: starting the sandbox (Entra + Graph emulator) in its own process")
        try:
            await sandbox.start()
            console.print(f"sandbox ready at {sandbox.env['MEDIABOT_SANDBOX_URL']}")
            await _flow(sandbox, steps)
        finally:
            await sandbox.stop()
    table = Table(title="sandbox smoke flow through mediabot's Graph client")
    for column in ("step", "result", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for step in steps:
        mark = "[green]ok[/green]" if step.ok else "[red]FAILED[/red]"
        table.add_row(f"{mark} {step.name}", step.detail, f"{step.ms:.0f}")
    console.print(table)
    ok = bool(steps) and all(s.ok for s in steps)
    console.print("[green]all steps passed[/green]" if ok else "[red]some steps failed[/red]")
    if json_output:
        summary = {"ok": ok, "steps": [s.__dict__ for s in steps]}
        sys.stdout.write(json.dumps(summary) + "\n")
    return ok
