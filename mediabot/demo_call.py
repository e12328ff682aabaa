"""``mediabot demo --scenario FILE``: the sandbox and the bot as two processes, one scripted call between them.

The sandbox (Entra, Graph, the calling platform and its media relay) and ``mediabot serve`` run as separate child
processes that talk only over HTTPS and WebRTC, as with the real cloud. The scenario is started in the sandbox; the
bot answers (incoming), joins the meeting (meeting) or dials the first participant (outgoing) through its own ``/v1``
API; the relay plays the participants into the bot's WHIP endpoint until the scenario's duration ends the call. While
it runs, a live display (from the bot's ``/v1/live``) shows the call's state, who is speaking and the segments so far.
The demo then reads what the bot wrote under ``--out`` and prints a summary: participants, speaking time, segments,
transcript, tones, files, the bot's join time and the packet → speech-start latency (p50/p99). It fails (non-zero
exit) if the call, the relay or the recording did not work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import socket
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mediabot._errors import MediaBotError
from mediabot.demo import SandboxProcess
from mediabot.sandbox._scenario import load_scenario
from mediabot.store.layout import read_jsonl

__all__ = ["CallSummary", "run_call_demo", "summarize_call"]

BOT_START_TIMEOUT_S = 60.0
CALL_GRACE_S = 60.0
PROGRESS_INTERVAL_S = 0.25


@dataclass
class CallSummary:
    """What a scenario call left behind, read from the bot's output folder."""

    call_id: str
    folder: Path
    participants: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    tones: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    join_s: float | None = None
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    timeline: str | None = None
    failures: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return {
            "ok": not self.failures,
            "call_id": self.call_id,
            "folder": str(self.folder),
            "duration_s": round(self.duration_s, 3),
            "join_s": self.join_s,
            "latency_ms": self.latency_ms,
            "timeline": self.timeline,
            "participants": self.participants,
            "files": self.files,
            "segments": self.segments,
            "tones": self.tones,
            "transcript": self.transcript,
            "failures": self.failures,
        }


def summarize_call(folder: Path) -> CallSummary:
    """Read a call folder (call.json, audio/, segments.jsonl, events.jsonl) into a :class:`CallSummary`."""
    summary = CallSummary(call_id=folder.name, folder=folder)
    call_json = folder / "call.json"
    if not call_json.is_file():
        summary.failures.append(f"{call_json} was not written")
        return summary
    meta = json.loads(call_json.read_text("utf-8"))
    if not meta.get("complete"):
        summary.failures.append("call.json says the recording did not complete")
    summary.failures.extend(f"recording error: {e}" for e in meta.get("errors", []))
    summary.segments = read_jsonl(folder / "segments.jsonl")
    events = read_jsonl(folder / "events.jsonl")
    summary.tones = [
        {k: e.get(k) for k in ("digit", "participant_id", "start", "end")} for e in events if e.get("type") == "tone"
    ]
    transcript = folder / "transcript.json"
    if transcript.is_file():
        summary.transcript = [
            {k: e.get(k) for k in ("participant_id", "display_name", "start", "end", "text")}
            for e in json.loads(transcript.read_text("utf-8")).get("entries", [])
        ]
    recording = meta.get("recording", {}).get("files", {})
    summary.duration_s = float(recording.get("seconds") or 0.0)
    summary.files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    summary.latency_ms = {
        name: percentiles([float(s[key]) for s in summary.segments if s.get(key) is not None])
        for name, key in (("speech_start", "latency_ms"), ("pipeline", "pipeline_ms"))
    }
    if (folder / "timeline.png").is_file():
        summary.timeline = "timeline.png"
    joined = {}
    for event in events:
        if event.get("type") == "participant_joined" and event.get("participant_id") not in joined:
            joined[event.get("participant_id")] = max(float(event.get("t") or 0.0), 0.0)
    for person in meta.get("participants", []):
        mine = [s for s in summary.segments if s.get("participant_id") == person["id"]]
        summary.participants.append(
            {
                "id": person["id"],
                "display_name": person.get("display_name"),
                "joined_at": joined.get(person["id"]),
                "file": person.get("file"),
                "segments": len(mine),
                "speaking_s": round(sum(float(s["duration"]) for s in mine), 2),
                "tones": "".join(str(t["digit"]) for t in summary.tones if t["participant_id"] == person["id"]),
            }
        )
        if person.get("file") and not (folder / str(person["file"])).is_file():
            summary.failures.append(f"the recording of {person.get('display_name') or person['id']} is missing")
    if not (folder / "audio" / "mixed.wav").is_file():
        summary.failures.append("no mixed recording")
    return summary


def percentiles(values: list[float]) -> dict[str, float]:
    """``{"n", "p50", "p99"}`` of ``values`` (empty when there are none)."""
    if not values:
        return {}
    p50, p99 = np.percentile(np.asarray(values), [50, 99])
    return {"n": len(values), "p50": round(float(p50), 1), "p99": round(float(p99), 1)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BotProcess:
    """``mediabot serve`` in a child process, over HTTPS, configured from the sandbox's printed environment."""

    def __init__(self, sandbox: SandboxProcess, out: Path, state_dir: Path, extra: dict[str, str]) -> None:
        self.port = _free_port()
        self.base_url = f"https://127.0.0.1:{self.port}"
        self.api_key = secrets.token_urlsafe(24)
        self.log_path = state_dir / "bot.log"
        self._sandbox = sandbox
        self._out = out
        self._extra = extra
        self._proc: asyncio.subprocess.Process | None = None
        self._context = ssl.create_default_context(cafile=sandbox.env["MEDIABOT_CA_BUNDLE"])

    async def start(self) -> None:
        """Start the child and wait until it answers ``/healthz``."""
        certs = Path(self._sandbox.env["MEDIABOT_CA_BUNDLE"]).parent
        env = {
            **os.environ,
            **self._sandbox.env,
            "MEDIABOT_PUBLIC_URL": self.base_url,
            "MEDIABOT_API_KEY": self.api_key,
            "MEDIABOT_OUTPUT_DIR": str(self._out),
            **self._extra,
        }
        log = self.log_path.open("wb")
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mediabot",
            "-v",
            "serve",
            "--port",
            str(self.port),
            "--ssl-certfile",
            str(certs / "cert.pem"),
            "--ssl-keyfile",
            str(certs / "key.pem"),
            env=env,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + BOT_START_TIMEOUT_S
        async with self.client() as http:
            while True:
                if self._proc.returncode is not None:
                    raise MediaBotError(f"the bot exited before it was ready; see {self.log_path}")
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise MediaBotError(f"the bot did not start within {BOT_START_TIMEOUT_S:.0f}s; see {self.log_path}")
                await asyncio.sleep(0.2)

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for the bot's API (with its key)."""
        return httpx.AsyncClient(
            base_url=self.base_url,
            verify=self._context,
            trust_env=False,
            timeout=30.0,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )

    @property
    def alive(self) -> bool:
        """Whether the child still runs."""
        return self._proc is not None and self._proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL the child, as a crash would (it finishes nothing), and wait for it."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()

    async def stop(self) -> None:
        """Stop the child (SIGTERM: it finishes its calls' files) and wait for it."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 30)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()


class LiveProgress:
    """What the call is doing, from the bot's ``/v1/live``: a live table on a terminal, change lines otherwise."""

    def __init__(self, console: Console, title: str) -> None:
        self._console = console
        self._title = title
        self._live: Live | None = None
        # What was last shown: the media of an ended call stays as it was; change lines are printed once.
        self._media: dict[str, Any] | None = None
        self._state: str | None = None
        self._speaking: set[str] = set()
        self._tones = ""
        self._lines = 0

    def __enter__(self) -> LiveProgress:
        if self._console.is_terminal:
            self._live = Live(Text(f"{self._title}: waiting for the call"), console=self._console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, call: dict[str, Any]) -> None:
        """Show the call's latest snapshot (an ended call's media is shown as it last was)."""
        if call.get("media") is None:
            call = {**call, "media": self._media}
        self._media = call.get("media")
        if self._live is not None:
            self._live.update(self._render(call))
        else:
            self._print_changes(call)

    @staticmethod
    def _people(call: dict[str, Any]) -> list[dict[str, Any]]:
        media = call.get("media") or {}
        return [s for s in media.get("sources", []) if s.get("source_id") != "main" or s.get("frames_received")]

    def _render(self, call: dict[str, Any]) -> Group:
        media = call.get("media") or {}
        table = Table(box=None, pad_edge=False)
        for column in ("participant", "", "level", "segments", "speaking"):
            table.add_column(column)
        for source in self._people(call):
            level = max(0, min(20, int((float(source.get("level_dbfs", -100)) + 70) / 3)))
            table.add_row(
                str(source.get("display_name") or f"source {source['source_id']}"),
                "[bold green]● speaking[/]" if source.get("speaking") else "[dim]○[/]",
                "[green]" + "█" * level + "[/]" + "·" * (20 - level),
                str(source.get("segments", 0)),
                f"{float(source.get('speaking_s', 0)):.1f} s",
            )
        head = Text.assemble(
            (f"{self._title} ", "bold"),
            (f"{call.get('state')}", "cyan"),
            f" · {float(media.get('position_s', 0)):.1f} s · {media.get('segments', 0)} segments",
            f" · tones {media.get('tones')}" if media.get("tones") else "",
        )
        parts: list[Any] = [head, table]
        transcript = call.get("transcript") or []
        if transcript:
            last = transcript[-1]
            parts.append(Text(f"{last.get('display_name') or '?'}: {last.get('text')}", style="italic"))
        return Group(*parts)

    def _print_changes(self, call: dict[str, Any]) -> None:
        out = self._console
        if call.get("state") != self._state:
            self._state = call.get("state")
            out.print(f"  call {self._state}", highlight=False)
        for source in self._people(call):
            name = source.get("display_name") or f"source {source['source_id']}"
            if source.get("speaking") and name not in self._speaking:
                out.print(f"  {name} speaking (segment {int(source.get('segments', 0)) + 1})", highlight=False)
                self._speaking.add(name)
            elif not source.get("speaking"):
                self._speaking.discard(name)
        tones = (call.get("media") or {}).get("tones") or ""
        if tones and tones != self._tones:
            out.print(f"  tones heard: {tones}", highlight=False)
            self._tones = tones
        transcript = call.get("transcript") or []
        for line in transcript[self._lines :]:
            out.print(f"  {line.get('display_name') or '?'}: {line.get('text')}", highlight=False)
        self._lines = max(self._lines, len(transcript))


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return round((dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds(), 3)


async def _drive(
    sandbox: SandboxProcess, bot: BotProcess, scenario: Path, console: Console
) -> tuple[str, float | None]:
    """Start the scenario and the bot's side of the call; show its progress until it ended. (call id, join time)."""
    run = await sandbox.admin(
        "POST", "/scenarios", {"path": str(scenario), "callback_uri": f"{bot.base_url}/api/calling"}
    )
    kind = run["kind"]
    async with bot.client() as http:
        if kind == "meeting":
            response = await http.post("/v1/meetings/join", json={"join_web_url": run["join_web_url"]})
            response.raise_for_status()
        elif kind == "outgoing":
            response = await http.post("/v1/calls", json={"user_ids": [run["target_user_id"]]})
            response.raise_for_status()
        console.print(f"scenario [bold]{run['name']}[/bold] ({kind}, {run['duration']:g} s) started")
        deadline = time.monotonic() + float(run["duration"]) + CALL_GRACE_S
        call_id: str | None = None
        with LiveProgress(console, run["name"]) as progress:
            while True:
                run = await sandbox.admin("GET", f"/scenarios/{run['id']}")
                call_id = run.get("call_id") or call_id
                if run["status"] == "failed":
                    raise MediaBotError(f"the scenario failed: {run['error']}")
                if call_id is not None:
                    response = await http.get("/v1/live")
                    response.raise_for_status()
                    call = next((c for c in response.json()["calls"] if c["id"] == call_id), None)
                    if call is not None:
                        progress.update(call)
                        if call["state"] == "terminated":
                            return call_id, _seconds_between(call.get("created"), call.get("established"))
                if not bot.alive:
                    raise MediaBotError(f"the bot exited during the call; see {bot.log_path}")
                if time.monotonic() > deadline:
                    raise MediaBotError(f"the call did not end within {run['duration']:g} s + {CALL_GRACE_S:.0f} s")
                await asyncio.sleep(PROGRESS_INTERVAL_S)


def _complete(folder: Path) -> bool:
    """The bot finished the call's files, its timeline picture, and its transcript if it has speech."""
    call_json = folder / "call.json"
    if not (call_json.is_file() and json.loads(call_json.read_text("utf-8")).get("complete")):
        return False
    if not (folder / "timeline.png").is_file():
        return False
    return not read_jsonl(folder / "segments.jsonl") or (folder / "transcript.vtt").is_file()


async def _wait_for_files(folder: Path, seconds: float = 120.0) -> None:
    """The bot finishes a call's files after the call ended: wait for ``call.json`` to say so."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while not await asyncio.to_thread(_complete, folder):  # noqa: ASYNC110 - another process writes them
                await asyncio.sleep(0.2)


async def run_call_demo(scenario: Path, out: Path, *, json_output: bool = False) -> bool:
    """Run one scenario call between a sandbox and a bot process; print the summary. True when all worked.

    ``scenario`` and ``out`` must be absolute (the children run elsewhere).
    """
    console = Console(stderr=json_output)
    summary: CallSummary | None = None
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="mediabot-demo-") as tmp:
        os.chmod(tmp, 0o700)
        state = Path(tmp)
        sandbox = SandboxProcess(state)
        bot: BotProcess | None = None
        try:
            console.print("[bold]mediabot demo[/bold]: starting the sandbox and the bot as two processes")
            script = await asyncio.to_thread(load_scenario, scenario)
            await sandbox.start()
            extra = {
                "MEDIABOT_MEDIA_RECEIVE": script.media,
                "MEDIABOT_COMPLIANCE_RECORDING": "true" if script.compliance_recording else "false",
            }
            bot = BotProcess(sandbox, out, state, extra)
            await bot.start()
            console.print(f"sandbox {sandbox.env['MEDIABOT_SANDBOX_URL']} · bot {bot.base_url} · output {out}")
            call_id, join_s = await _drive(sandbox, bot, scenario, console)
            await _wait_for_files(out / call_id)
            summary = await asyncio.to_thread(summarize_call, out / call_id)
            summary.join_s = join_s
        except (MediaBotError, httpx.HTTPError, OSError) as exc:
            failure = str(exc)
        finally:
            if bot is not None:
                await bot.stop()
                if failure is not None and bot.log_path.is_file():
                    console.print(bot.log_path.read_text("utf-8", "replace")[-1500:], markup=False, highlight=False)
            await sandbox.stop()
            if failure is not None and sandbox.log_path.is_file():
                console.print(sandbox.log_path.read_text("utf-8", "replace")[-3000:], markup=False, highlight=False)
    if summary is not None:
        _print(console, summary)
    ok = failure is None and summary is not None and not summary.failures
    if failure is not None:
        console.print(f"[red]demo failed:[/red] {failure}")
    if json_output:
        data: dict[str, Any] = summary.to_json() if summary is not None else {"failures": []}
        data["ok"] = ok
        if failure is not None:
            data["failures"].append(failure)
        sys.stdout.write(json.dumps(data) + "\n")
    return ok


def _print(console: Console, summary: CallSummary) -> None:
    table = Table(title=f"call {summary.call_id} ({summary.duration_s:.1f} s on the call timeline)")
    for column in ("participant", "joined", "speaking", "segments", "tones", "recording"):
        table.add_column(column)
    for person in summary.participants:
        joined = person.get("joined_at")
        table.add_row(
            str(person["display_name"] or person["id"]),
            f"{joined:.1f} s" if joined is not None else "-",
            f"{person['speaking_s']:.1f} s",
            str(person["segments"]),
            person["tones"] or "-",
            str(person["file"]),
        )
    console.print(table)
    timing = []
    if summary.join_s is not None:
        timing.append(f"the bot joined in {summary.join_s * 1000:.0f} ms")
    start = summary.latency_ms.get("speech_start")
    if start:
        pipeline = summary.latency_ms.get("pipeline") or {}
        timing.append(
            f"packet → speech start: p50 {start['p50']:.0f} ms, p99 {start['p99']:.0f} ms ({start['n']} starts); "
            f"after the VAD's start window: p50 {pipeline.get('p50', 0):.0f} ms, p99 {pipeline.get('p99', 0):.0f} ms"
        )
    for note in timing:
        console.print(note, highlight=False)
    for line in [line for line in summary.transcript if line.get("text")][:8]:
        minutes, seconds = divmod(float(line["start"]), 60)
        who = line["display_name"] or line["participant_id"] or "?"
        console.print(f"  {int(minutes):02d}:{seconds:04.1f}  [bold]{who}[/bold]: {line['text']}", highlight=False)
    console.print(f"files under {summary.folder}: " + ", ".join(summary.files))
    if summary.timeline:
        console.print(f"speech timeline: {summary.folder / summary.timeline}")
    console.print(f"search what was said: mediabot recordings search WORDS --out {summary.folder.parent}")
    for failure in summary.failures:
        console.print(f"[red]problem:[/red] {failure}")
