"""The whole system under load: many sandbox calls at once, roster-notification storms, memory across many calls.

Every test runs the sandbox (Entra, Graph, the calling platform and its media relay) on a thread of the test process
and the bot (``mediabot serve``: app-hosted media, transcriber ``none``, log level WARNING) as a child process
(:class:`benchmarks._load.ReceiverProcess` with the sandbox's settings, not pinned); they talk only over HTTP(S) and
WebRTC on loopback, as with the real cloud. Calls are Graph-level: an ``incoming`` scenario rings the bot through the
calling platform, the bot answers with its media blob, and the relay plays the scenario's participants into the bot
over WHIP, each a pre-encoded Opus stream (:class:`~mediabot.sandbox._relay.PacedPacketTrack`: no encoding per
packet) of looped speech (:func:`benchmarks._load.loop_clips`), so the VAD, the segmenter and the recorder work
throughout.

- **Concurrent calls**: N calls of 4 participants, rung a few at a time and overlapping for most of their duration.
  Each call's folder must hold 4 track WAVs and ``mixed.wav`` of exactly the same length, which must be, to the
  sample, where its last stream's last frame ends (each stream's ``first_position`` and ``frames_out``): ``P``
  frames of 20 ms (``P`` = packets per stream; ``P + 1`` when Opus is decimated from 48 kHz, whose filter's tail
  makes one more) give or take where each
  stream was anchored. Every stream must have turned all its ``P`` packets into frames, with no RTP loss, no
  concealed and no late frame (the relay's counters, each source's ``source_disconnected`` event, the bot's
  ``/metrics``); what anchoring drops at a stream's start (:data:`MAX_REALIGN_SAMPLES`) is bounded and reported.
- **Roster storm**: signed roster notifications (the sandbox's own :class:`CallbackSigner` and payload builder) for
  one live call, full rosters in which one of :data:`STORM_EXTRAS` extra participants joins or leaves each time, each
  with ``rosterSequenceNumber`` = its index: first paced (open loop, ``rate`` per second), then as fast as
  :data:`STORM_CONCURRENCY` connections go. Between the HTTP handler and the call's state machine there is no queue
  (``/api/calling`` applies the events before it answers 202), so the backlog is what the bot has not answered yet:
  the requests in flight are counted at every send and must stay under a bound. After the storm the bot's roster
  must be the last one sent (its sequence number included), and the call's events must hold exactly one
  join or leave per notification (the media plane's queue, drained).
- **Memory**: calls started and ended a few at a time against one bot: RSS (``VmRSS``), threads and open files after
  a warm-up vs after all calls; no media session or stream may be left open, and every call's files must be whole
  and of one length (the audio these short, bursty calls lose at their streams' starts and ends is reported).

Soak scale (``make soak`` runs the tests marked ``soak``; the fast variants run in ``make test``), from the
environment:

========================== ======= ==================================================================
``MEDIABOT_LOAD_CALLS``     25      concurrent calls (4 participants each)
``MEDIABOT_LOAD_SECONDS``   60      their media duration (s)
``MEDIABOT_LOAD_WORKERS``   ``0,2`` the ``MEDIABOT_MEDIA_WORKERS`` values the soak runs with
``MEDIABOT_STORM_RATE``     100     roster notifications per second in the paced phase
``MEDIABOT_STORM_SECONDS``  60      the paced phase (s); the fast phase sends as many again
``MEDIABOT_MEMORY_CALLS``   200     calls started and ended against one bot
``MEDIABOT_MEMORY_WARMUP``  40      calls before the baseline
``MEDIABOT_MEMORY_BATCH``   4       calls at a time
``MEDIABOT_MEMORY_MB``      30      allowed RSS growth after the warm-up (MB; 200 ended calls are kept)
``MEDIABOT_LOAD_REPORT``    unset   a file to append each run's figures to (JSON lines)
========================== ======= ==================================================================

Nothing here asserts on wall time: the figures (CPU, latencies) are reported, the asserts are on counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import time
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from benchmarks._load import ReceiverProcess, cpu_seconds, loop_clips, percentiles, rss_bytes
from mediabot.audio import FRAME_SAMPLES
from mediabot.audio.kernels import Decimator
from mediabot.media import opus
from mediabot.sandbox import SandboxServer
from mediabot.sandbox._callback_signing import CallbackSigner
from mediabot.sandbox._notifications import envelope, roster_notification

PARTICIPANTS = 4
PACKET_S = 0.02
BATCH = 4
"""Calls rung at once; the next few are rung once these play (WHIP and DTLS set-up is the costliest moment)."""
POLL_S = 0.1
SCENARIO_TIMEOUT_S = 120.0
"""Starting a scenario encodes its audio first (once per clip and length): minutes of it take a while."""
SETUP_TIMEOUT_S = 120.0
FILES_TIMEOUT_S = 120.0
STORM_EXTRAS = 16
"""Extra participants who take turns joining and leaving: more than the requests ever in flight at once, so a
notification overtaken (and ignored as stale) still leaves one join or leave per notification in the events."""
STORM_CONCURRENCY = 8
STORM_TOKEN_EVERY = 100
"""A fresh callback token every this many notifications (a token lives 5 minutes)."""
STORM_MAX_IN_FLIGHT = 100
"""The paced phase's backlog bound: a second of notifications at 100/s (measured: 2-4 in flight with the bot on a
core of its own, 40-52 with the machine's cores busy with other work)."""
OPUS_AT_16K = opus.available()
"""The bot decodes Opus at 16 kHz with libopus (no resampler after it), else at 48 kHz with PyAV and decimates."""
WARMUP_SAMPLES = 0 if OPUS_AT_16K else Decimator.delay
"""A stream's frames start this much before its first sample (the resampler's warm-up, if any); the timeline starts
:data:`~mediabot.media.pipeline.TIMELINE_LEAD` before the first stream's media: a stream of the same call anchored
earlier than that one has its first samples trimmed (counted as late samples by the recorder)."""
TAIL_FRAMES = 0 if OPUS_AT_16K else 1
"""Frames after a stream's last packet's: the decimator's tail rings into one more."""
MAX_ANCHOR_SPREAD = 5 * FRAME_SAMPLES
"""How far a call's length may be from ``P`` (or ``P + 1``) frames: where its streams were anchored (their first
packets' arrival, refined over a second) differs by a few ms, more on a busy machine."""
MAX_REALIGN_SAMPLES = 5 * FRAME_SAMPLES
"""A stream is anchored by its first packets' arrival and realigned once a less-delayed packet shows, dropping that
many samples of its audio (:class:`~mediabot.media.pipeline.StreamPipeline`). On an idle bot that is a few ms (the
anchor's accuracy); when the bot is busy setting up other calls as a stream starts, its first packets are handled
late and tens of ms are dropped (measured: 20-30 ms with 4 calls set up at once). Reported, and bounded here."""
THREADS_SLACK = 2
FDS_SLACK = 8
"""Threads and open files may vary a little (executor threads, the relay's keep-alive connections to the bot): the
most seen after the warm-up may exceed the most seen during it by this much, not by one per call."""


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


LOAD_CALLS = _env_int("MEDIABOT_LOAD_CALLS", 25)
LOAD_SECONDS = _env_float("MEDIABOT_LOAD_SECONDS", 60.0)
LOAD_WORKERS = [int(w) for w in os.environ.get("MEDIABOT_LOAD_WORKERS", "0,2").split(",") if w.strip()]
STORM_RATE = _env_float("MEDIABOT_STORM_RATE", 100.0)
STORM_SECONDS = _env_float("MEDIABOT_STORM_SECONDS", 60.0)
MEMORY_CALLS = _env_int("MEDIABOT_MEMORY_CALLS", 200)
MEMORY_WARMUP = _env_int("MEDIABOT_MEMORY_WARMUP", 40)
MEMORY_BATCH = _env_int("MEDIABOT_MEMORY_BATCH", 4)
MEMORY_MB = _env_float("MEDIABOT_MEMORY_MB", 30.0)
FAST_MEMORY_MB = 30.0


def report(name: str, figures: dict[str, Any]) -> None:
    """Print a run's figures (visible with ``-s`` or on failure) and append them to ``MEDIABOT_LOAD_REPORT``."""
    line = json.dumps({"test": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), **figures}, default=str)
    print(line)
    target = os.environ.get("MEDIABOT_LOAD_REPORT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def load_average() -> float:
    """The 1-minute load average: other work on the machine shows here."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def own_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid``'s own threads (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds all cores spent busy so far (``/proc/stat``): what else runs on the machine shows against ours."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def count_entries(pid: int, folder: str) -> int:
    """How many threads (``task``) or open files (``fd``) a process has."""
    return len(os.listdir(f"/proc/{pid}/{folder}"))


# -- the system: sandbox, bot, scenarios ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    """The sandbox on a thread of this process; its relay offers loopback ICE candidates."""
    with SandboxServer(tmp_path_factory.mktemp("sandbox"), media_ice_loopback=True) as server:
        yield server


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Looped speech covering the longest media of any test here."""
    return [path for path, _ in loop_clips(tmp_path_factory.mktemp("clips"), max(LOAD_SECONDS, 10.0))]


def write_scenario(folder: Path, clips: list[Path], seconds: float, name: str = "load") -> Path:
    """An incoming call of :data:`PARTICIPANTS` participants present throughout, each on a looped clip."""
    path = folder / f"{name}.json"
    participants = [{"name": f"P{k}", "audio": str(clips[k % len(clips)])} for k in range(PARTICIPANTS)]
    path.write_text(json.dumps({"name": name, "kind": "incoming", "duration": seconds, "participants": participants}))
    return path


class Platform:
    """The sandbox's control plane from this test's event loop: scenarios, call ends, Graph reads."""

    def __init__(self, server: SandboxServer) -> None:
        self.server = server
        self.http = httpx.AsyncClient(
            base_url=server.base_url, verify=server.ssl_context(), trust_env=False, timeout=SCENARIO_TIMEOUT_S
        )

    async def aclose(self) -> None:
        """Close the client."""
        await self.http.aclose()

    async def start(self, scenario: Path, callback_uri: str) -> dict[str, Any]:
        """Start a scenario run (an incoming one rings the bot at once)."""
        response = await self.http.post(
            "/_sandbox/scenarios", json={"path": str(scenario), "callback_uri": callback_uri}
        )
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        return run

    async def runs(self) -> dict[str, dict[str, Any]]:
        """Every scenario run by id."""
        response = await self.http.get("/_sandbox/scenarios")
        response.raise_for_status()
        return {run["id"]: run for run in response.json()["value"]}

    async def wait(self, ids: list[str], statuses: set[str], seen: dict[str, float] | None = None) -> dict[str, Any]:
        """Until every run in ``ids`` is in one of ``statuses`` (or past it); ``seen`` notes when each got there."""
        order = ["armed", "attached", "ringing", "connecting", "running", "finished"]
        target = min(order.index(status) for status in statuses)
        async with asyncio.timeout(SETUP_TIMEOUT_S + LOAD_SECONDS):
            while True:
                runs = await self.runs()
                failed = [runs[i] for i in ids if runs[i]["status"] == "failed"]
                assert not failed, f"scenario runs failed: {[(r['id'], r['error']) for r in failed]}"
                now = time.monotonic()
                done = [i for i in ids if order.index(runs[i]["status"]) >= target]
                if seen is not None:
                    for i in done:
                        seen.setdefault(i, now)
                if len(done) == len(ids):
                    return runs
                await asyncio.sleep(POLL_S)

    async def end_call(self, call_id: str) -> None:
        """The remote side hangs up."""
        (await self.http.post(f"/_sandbox/calls/{call_id}/end")).raise_for_status()

    async def participants(self, call_id: str) -> list[dict[str, Any]]:
        """The call's roster as Graph lists it."""
        token = await asyncio.to_thread(self.server.access_token)
        response = await self.http.get(
            f"/v1.0/communications/calls/{call_id}/participants", headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        value: list[dict[str, Any]] = response.json()["value"]
        return value


@contextlib.asynccontextmanager
async def system(server: SandboxServer, workdir: Path, workers: int = 0) -> AsyncIterator[tuple[Platform, Bot]]:
    """A fresh bot process taking calls through the sandbox, and the sandbox's control plane."""
    platform = Platform(server)
    bot = Bot(server, workdir, workers)
    try:
        await bot.start()
        yield platform, bot
    finally:
        await bot.stop()
        await platform.aclose()


class Bot(ReceiverProcess):
    """``mediabot serve`` configured from the sandbox's environment (its Graph, its callback signing keys)."""

    def __init__(self, server: SandboxServer, workdir: Path, workers: int) -> None:
        super().__init__("bot", workdir, core=None, env={**server.env, "MEDIABOT_MEDIA_WORKERS": str(workers)})

    @property
    def callback_uri(self) -> str:
        """Where the platform POSTs this bot's call notifications."""
        return f"{self.base_url}/api/calling"

    async def metrics(self) -> dict[str, float]:
        """``/metrics``, parsed."""
        return (await self.scrape())[1]

    async def idle_metrics(self) -> dict[str, float]:
        """``/metrics`` once no media session is open (a closed session's counters are merged after its files)."""
        async with asyncio.timeout(FILES_TIMEOUT_S):
            while (metrics := await self.metrics())["mediabot_media_sessions"]:  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)  # another process closes them
        return metrics

    async def wait_for_files(self, call_ids: list[str]) -> None:
        """Until every call's ``call.json`` says its recording is complete."""
        async with asyncio.timeout(FILES_TIMEOUT_S):
            while not all(_complete(self.output_dir / call_id) for call_id in call_ids):  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)  # another process writes them


def _complete(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "call.json").read_text("utf-8")).get("complete"))
    except (OSError, ValueError):
        return False


def read_events(folder: Path) -> list[dict[str, Any]]:
    """A call's ``events.jsonl``."""
    path = folder / "events.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


# -- checking one call's recording ------------------------------------------------------------------------------------


@dataclass
class CallCheck:
    """What one call's folder shows: its recording's length, each file's, each stream's counters, what is wrong."""

    call_id: str
    samples: int
    files: dict[str, int]
    frames_in: list[int]
    concealed_samples: int
    late_frames: int
    rtp_lost: int
    late_samples: int
    dropped_samples: int
    realigned: list[int]
    rtp_packets: list[int]
    expected: int = 0
    broken: list[str] = field(default_factory=list)
    """What is wrong with the recording itself (files, lengths)."""
    lost: list[str] = field(default_factory=list)
    """Audio that did not make it into the recording (frames, RTP, start-of-stream drops)."""

    @property
    def problems(self) -> list[str]:
        """Everything wrong."""
        return self.broken + self.lost


def check_call(folder: Path, packets: int) -> CallCheck:
    """Check a finished call of :data:`PARTICIPANTS` streams of ``packets`` packets each (see the module docstring)."""
    meta = json.loads((folder / "call.json").read_text("utf-8"))
    recording = meta["recording"]["files"]
    files = {}
    for wav in sorted((folder / "audio").glob("*.wav")):
        with wave.open(str(wav), "rb") as reader:
            files[wav.name] = reader.getnframes()
    streams = [e for e in read_events(folder) if e["type"] == "source_disconnected" and e["source_id"] != "main"]
    check = CallCheck(
        call_id=folder.name,
        samples=int(recording["samples"]),
        files=files,
        frames_in=[int(e["frames_in"]) for e in streams],
        concealed_samples=sum(round(float(e["gap_s"]) * 16000) for e in streams),
        late_frames=sum(int(e["late_frames"]) for e in streams),
        rtp_lost=sum(int(e.get("rtp", {}).get("lost", 0)) for e in streams),
        late_samples=int(recording["late_samples"]),
        dropped_samples=int(recording["dropped_samples"]),
        realigned=[int(e["realigned_samples"]) for e in streams],
        rtp_packets=[int(e.get("rtp", {}).get("packets", -1)) for e in streams],
    )
    problems = check.broken
    if not meta.get("complete") or meta.get("errors") or recording.get("errors"):
        problems.append(f"incomplete or failed: {meta.get('errors') or recording.get('errors')}")
    if "mixed.wav" not in files or len(files) != PARTICIPANTS + 1:
        problems.append(f"expected {PARTICIPANTS} tracks and mixed.wav, found {sorted(files)}")
    if set(files.values()) != {check.samples}:
        problems.append(f"file lengths differ from the recording's {check.samples}: {files}")
    # Each stream's frames start a resampler delay before its first sample and follow each other (no gaps here):
    # the recording ends where the last stream's last frame does, to the sample.
    ends = [int(e["first_position"]) - WARMUP_SAMPLES + int(e["frames_out"]) * FRAME_SAMPLES for e in streams]
    check.expected = max(ends, default=0)
    if check.samples != check.expected:
        problems.append(f"{check.samples} samples; the streams end at {ends}")
    # ... which is, but for where each stream was anchored (its arrival), P frames (+ 1: a resampler's tail).
    problems = check.lost
    if abs(check.samples - (packets + TAIL_FRAMES) * FRAME_SAMPLES) >= MAX_ANCHOR_SPREAD:
        problems.append(f"{check.samples} samples for {packets} packets a stream")
    if check.frames_in != [packets] * PARTICIPANTS:
        problems.append(
            f"frames per stream {check.frames_in} (RTP {check.rtp_packets}), expected {PARTICIPANTS} x {packets}"
        )
    losses = ("concealed_samples", "late_frames", "rtp_lost", "dropped_samples")
    if any(getattr(check, name) for name in losses):
        problems.append(", ".join(f"{name} {getattr(check, name)}" for name in losses))
    # Anchoring: a stream realigned, or anchored before the timeline's start (its first samples trimmed, counted
    # late by the recorder), loses a little audio at its start only; bounded, and reported.
    trimmed_most = len(streams) * MAX_REALIGN_SAMPLES
    if max(check.realigned, default=0) > MAX_REALIGN_SAMPLES or check.late_samples > trimmed_most:
        problems.append(f"start-of-stream drops: realigned {check.realigned}, late samples {check.late_samples}")
    return check


# -- 1. concurrent calls ----------------------------------------------------------------------------------------------


@dataclass
class ConcurrentRun:
    """One concurrent-calls run: the checks of every call, the relay's and the bot's counters, CPU and memory."""

    calls: int
    seconds: float
    workers: int
    checks: list[CallCheck]
    relay: list[dict[str, Any]]
    metrics: dict[str, float]
    window_s: float
    bot_cpu: float | None
    sandbox_cpu: float | None
    machine_cpu: float | None
    """Every core's busy time (1.0 = one core): above bot + sandbox, other work competed for the two cores."""
    rss_idle_mb: float
    rss_mb: float
    load_before: float

    def figures(self) -> dict[str, Any]:
        """What is reported."""
        received = self.metrics.get("mediabot_media_frames_received_total", 0.0)
        return {
            "calls": self.calls,
            "streams": self.calls * PARTICIPANTS,
            "seconds": self.seconds,
            "media_workers": self.workers,
            "frames_received": received,
            "frames_expected": self.calls * PARTICIPANTS * round(self.seconds / PACKET_S),
            "frames_concealed": self.metrics.get("mediabot_media_frames_concealed_total"),
            "frames_late": self.metrics.get("mediabot_media_frames_late_total"),
            "packets_lost": self.metrics.get("mediabot_media_packets_lost_total"),
            "calls_with_problems": sum(1 for c in self.checks if c.problems),
            "realigned_ms_max": max((r for c in self.checks for r in c.realigned), default=0) / 16,
            "realigned_streams": sum(1 for c in self.checks for r in c.realigned if r),
            "start_trimmed_samples": sum(c.late_samples for c in self.checks),
            "length_minus_expected_frames_ms": [
                min(c.samples for c in self.checks) / 16 - (round(self.seconds / PACKET_S) + TAIL_FRAMES) * 20,
                max(c.samples for c in self.checks) / 16 - (round(self.seconds / PACKET_S) + TAIL_FRAMES) * 20,
            ],
            "window_s": round(self.window_s, 1),
            "bot_cpu_pct": None if self.bot_cpu is None else round(self.bot_cpu * 100, 1),
            "sandbox_relay_cpu_pct": None if self.sandbox_cpu is None else round(self.sandbox_cpu * 100, 1),
            "machine_cpu_pct": None if self.machine_cpu is None else round(self.machine_cpu * 100, 1),
            "rss_idle_mb": round(self.rss_idle_mb, 1),
            "rss_mb": round(self.rss_mb, 1),
            "load_average_before": self.load_before,
        }


async def run_concurrent_calls(
    server: SandboxServer, clips: list[Path], workdir: Path, calls: int, seconds: float, workers: int
) -> ConcurrentRun:
    """Ring ``calls`` calls :data:`BATCH` at a time, measure while all play, check every call once all ended."""
    scenario = write_scenario(workdir, clips, seconds)
    packets = round(seconds / PACKET_S)
    load_before = load_average()
    async with system(server, workdir / "bot", workers) as (platform, bot):
        rss_idle = rss_bytes(bot.pid)
        ids: list[str] = []
        playing: dict[str, float] = {}
        for first in range(0, calls, BATCH):
            batch = [(await platform.start(scenario, bot.callback_uri))["id"] for _ in range(min(BATCH, calls - first))]
            ids += batch
            await platform.wait(batch, {"running"}, playing)
        # The window: all calls play (from the last one's start to the first one's end, less half a second each side).
        start, end = max(playing.values()) + 0.5, min(playing.values()) + seconds - 0.5
        bot_cpu = sandbox_cpu = machine_cpu = None
        rss = rss_bytes(bot.pid)
        if end - start >= 1.0:
            await asyncio.sleep(max(start - time.monotonic(), 0.0))
            marks = (time.monotonic(), cpu_seconds(bot.pid), own_cpu_seconds(os.getpid()), machine_cpu_seconds())
            await asyncio.sleep(max(end - time.monotonic(), 0.0))
            rss = rss_bytes(bot.pid)
            window = time.monotonic() - marks[0]
            bot_cpu = (cpu_seconds(bot.pid) - marks[1]) / window
            sandbox_cpu = (own_cpu_seconds(os.getpid()) - marks[2]) / window
            machine_cpu = (machine_cpu_seconds() - marks[3]) / window
        else:
            window = 0.0
        runs = await platform.wait(ids, {"finished"})
        call_ids = [runs[i]["call_id"] for i in ids]
        await bot.wait_for_files(call_ids)
        metrics = await bot.idle_metrics()
        checks = [check_call(bot.output_dir / call_id, packets) for call_id in call_ids]
        relay = [p for i in ids for p in runs[i]["participants"]]
        return ConcurrentRun(
            calls=calls,
            seconds=seconds,
            workers=workers,
            checks=checks,
            relay=relay,
            metrics=metrics,
            window_s=window,
            bot_cpu=bot_cpu,
            sandbox_cpu=sandbox_cpu,
            machine_cpu=machine_cpu,
            rss_idle_mb=rss_idle / 1e6,
            rss_mb=rss / 1e6,
            load_before=load_before,
        )


def assert_no_lost_frames(run: ConcurrentRun) -> None:
    """Every call recorded exactly, every packet became a frame (relay, events and metrics agree)."""
    packets = round(run.seconds / PACKET_S)
    assert len(run.checks) == run.calls
    problems = {c.call_id: c.problems for c in run.checks if c.problems}
    assert not problems, f"{len(problems)} of {run.calls} calls lost or misplaced audio: {problems}"
    assert len({c.samples for c in run.checks}) >= 1
    assert len(run.relay) == run.calls * PARTICIPANTS
    assert all(p["sent"] == p["packets"] == packets and p["dropped"] == 0 for p in run.relay), run.relay
    assert all(p["stream_error"] is None for p in run.relay)
    metrics = run.metrics
    assert metrics["mediabot_media_frames_received_total"] == run.calls * PARTICIPANTS * packets
    assert metrics["mediabot_media_frames_concealed_total"] == 0
    assert metrics["mediabot_media_frames_late_total"] == 0
    assert metrics["mediabot_media_packets_lost_total"] == 0
    assert metrics["mediabot_media_streams"] == 0


async def test_concurrent_calls_are_recorded_exactly(sandbox: SandboxServer, clips: list[Path], tmp_path: Path) -> None:
    run = await run_concurrent_calls(sandbox, clips, tmp_path, calls=4, seconds=4.0, workers=0)
    report("concurrent_calls", run.figures())
    assert_no_lost_frames(run)


@pytest.mark.soak
@pytest.mark.parametrize("workers", LOAD_WORKERS)
async def test_soak_concurrent_calls_are_recorded_exactly(
    sandbox: SandboxServer, clips: list[Path], tmp_path: Path, workers: int
) -> None:
    run = await run_concurrent_calls(sandbox, clips, tmp_path, LOAD_CALLS, LOAD_SECONDS, workers)
    report("soak_concurrent_calls", run.figures())
    assert_no_lost_frames(run)


# -- 2. roster storm --------------------------------------------------------------------------------------------------


def _extra(k: int, tenant_id: str) -> dict[str, Any]:
    """A participant who joins and leaves in the storm (Graph's participant shape, as the sandbox's roster has it)."""
    pid = str(uuid.UUID(int=k + 1))
    return {
        "@odata.type": "#microsoft.graph.participant",
        "id": pid,
        "info": {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": {
                "@odata.type": "#microsoft.graph.identitySet",
                "user": {"id": str(uuid.uuid4()), "displayName": f"Storm {k}", "tenantId": tenant_id},
            },
            "endpointType": "default",
            "participantId": pid,
        },
        "mediaStreams": [
            {
                "@odata.type": "#microsoft.graph.mediaStream",
                "mediaType": "audio",
                "sourceId": str(1000 + k),
                "direction": "sendReceive",
                "serverMuted": False,
            }
        ],
        "isMuted": False,
        "isInLobby": False,
    }


class RosterStorm:
    """The bodies of a storm on one call: notification ``i`` (from 1) toggles extra ``i % STORM_EXTRAS``; every
    participant in it carries ``rosterSequenceNumber = i``."""

    def __init__(self, call_id: str, base: list[dict[str, Any]], tenant_id: str) -> None:
        self.call_id = call_id
        self.base = base
        self.extras = [_extra(k, tenant_id) for k in range(STORM_EXTRAS)]

    def present(self, i: int) -> list[int]:
        """The extras present after notification ``i``: those toggled an odd number of times in 1..i."""
        present = []
        for k in range(STORM_EXTRAS):
            first = k if k else STORM_EXTRAS
            if first <= i and ((i - first) // STORM_EXTRAS + 1) % 2 == 1:
                present.append(k)
        return present

    def body(self, i: int) -> bytes:
        """Notification ``i`` as the platform would POST it."""
        roster = copy.deepcopy(self.base) + [copy.deepcopy(self.extras[k]) for k in self.present(i)]
        for participant in roster:
            participant["rosterSequenceNumber"] = i
        return json.dumps(envelope([roster_notification(self.call_id, roster)])).encode()


@dataclass
class StormRun:
    """One storm: what was sent and answered, the backlog seen, the bot's roster after it, the events it left."""

    paced: int
    rate: float
    fast: int
    statuses: dict[int, int]
    in_flight: list[int]
    latency_ms: dict[str, dict[str, float | None]]
    fast_rate: float
    health_ms: dict[str, float | None]
    cpu_ms: list[float]
    """The bot's CPU per notification (ms; media included), paced and fast phase."""
    roster: set[str]
    roster_sequence: int | None
    expected_roster: set[str]
    storm_events: int
    rss_before_mb: float
    rss_after_mb: float

    @property
    def sent(self) -> int:
        """Notifications sent."""
        return self.paced + self.fast

    def figures(self) -> dict[str, Any]:
        """What is reported."""
        return {
            "sent": self.sent,
            "paced": self.paced,
            "rate_per_s": self.rate,
            "fast": self.fast,
            "fast_rate_per_s": round(self.fast_rate, 1),
            "statuses": self.statuses,
            "in_flight_max": max(self.in_flight, default=0),
            "in_flight_max_last_third": max(self.in_flight[2 * len(self.in_flight) // 3 :], default=0),
            "latency_ms": self.latency_ms,
            "healthz_ms_during_storm": self.health_ms,
            "bot_cpu_ms_per_notification": self.cpu_ms,
            "storm_events": self.storm_events,
            "roster_sequence": self.roster_sequence,
            "rss_before_mb": round(self.rss_before_mb, 1),
            "rss_after_mb": round(self.rss_after_mb, 1),
        }


async def run_roster_storm(
    server: SandboxServer, clips: list[Path], workdir: Path, paced: int, rate: float, fast: int
) -> StormRun:
    """A live call (media playing), then ``paced`` notifications at ``rate``/s and ``fast`` as fast as it goes."""
    # Long enough for the storm even if its fast phase only reaches 25 notifications/s (a starved bot on a busy
    # machine); the call is ended once the storm is over.
    scenario = write_scenario(workdir, clips, paced / rate + fast / 25 + 20.0, name="storm")
    signer = CallbackSigner(server.config)
    app_id = server.default_app.client_id
    async with system(server, workdir / "bot") as (platform, bot):
        run_id = (await platform.start(scenario, bot.callback_uri))["id"]
        call_id = (await platform.wait([run_id], {"running"}))[run_id]["call_id"]
        storm = RosterStorm(call_id, await platform.participants(call_id), server.tenant_id)
        rss_before = rss_bytes(bot.pid)
        statuses: dict[int, int] = {}
        latencies: dict[str, list[float]] = {"paced": [], "fast": []}
        in_flight: list[int] = []
        token = ""
        counts = {"sent": 0, "answered": 0}
        limits = httpx.Limits(max_connections=STORM_MAX_IN_FLIGHT + 16, max_keepalive_connections=STORM_MAX_IN_FLIGHT)
        async with httpx.AsyncClient(base_url=bot.base_url, trust_env=False, timeout=60.0, limits=limits) as http:

            async def send(i: int, phase: str) -> None:
                nonlocal token
                if i % STORM_TOKEN_EVERY == 1 or not token:
                    token = signer.token(app_id)
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                began = time.monotonic()
                counts["sent"] += 1
                response = await http.post("/api/calling", content=storm.body(i), headers=headers)
                counts["answered"] += 1
                latencies[phase].append((time.monotonic() - began) * 1000)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            health: list[float] = []
            storming = True

            async def probe() -> None:
                """The bot's responsiveness during the storm: /healthz round trips (its event loop's lag shows)."""
                while storming:
                    began = time.monotonic()
                    (await bot.http.get("/healthz")).raise_for_status()
                    health.append((time.monotonic() - began) * 1000)
                    await asyncio.sleep(0.05)

            prober = asyncio.create_task(probe())
            tasks = []
            cpu = [cpu_seconds(bot.pid)]
            t0 = time.monotonic()
            for i in range(1, paced + 1):
                await asyncio.sleep(max(t0 + (i - 1) / rate - time.monotonic(), 0.0))  # the open loop's pace
                in_flight.append(counts["sent"] - counts["answered"])
                tasks.append(asyncio.create_task(send(i, "paced")))
            await asyncio.gather(*tasks)
            cpu.append(cpu_seconds(bot.pid))
            queue = iter(range(paced + 1, paced + fast + 1))

            async def worker() -> None:
                for i in queue:
                    await send(i, "fast")

            began = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(STORM_CONCURRENCY)))
            fast_rate = fast / (time.monotonic() - began) if fast else 0.0
            cpu.append(cpu_seconds(bot.pid))
            storming = False
            await prober
        rss_after = rss_bytes(bot.pid)
        snapshot = (await bot.http.get(f"/v1/calls/{call_id}")).json()
        last = paced + fast
        expected = {p["id"] for p in storm.base} | {storm.extras[k]["id"] for k in storm.present(last)}
        await platform.end_call(call_id)
        await bot.wait_for_files([call_id])
        names = {f"Storm {k}" for k in range(STORM_EXTRAS)}
        events = [
            e
            for e in read_events(bot.output_dir / call_id)
            if e["type"] in ("participant_joined", "participant_left") and e.get("display_name") in names
        ]
        return StormRun(
            paced=paced,
            rate=rate,
            fast=fast,
            statuses=statuses,
            in_flight=in_flight,
            latency_ms={phase: percentiles(values) for phase, values in latencies.items()},
            fast_rate=fast_rate,
            health_ms=percentiles(health),
            cpu_ms=[
                round((b - a) * 1000 / max(n, 1), 2) for a, b, n in zip(cpu[:-1], cpu[1:], (paced, fast), strict=True)
            ],
            roster={p["id"] for p in snapshot["roster"]},
            roster_sequence=snapshot["roster_sequence"],
            expected_roster=expected,
            storm_events=len(events),
            rss_before_mb=rss_before / 1e6,
            rss_after_mb=rss_after / 1e6,
        )


def assert_storm_absorbed(run: StormRun) -> None:
    """Every notification answered 202, the backlog bounded, the last roster is the state, one event each."""
    assert run.statuses == {202: run.sent}
    assert max(run.in_flight) <= STORM_MAX_IN_FLIGHT, run.in_flight
    assert run.roster == run.expected_roster
    assert run.roster_sequence == run.sent
    assert run.storm_events == run.sent


def test_a_storm_toggles_each_extra_in_turn() -> None:
    storm = RosterStorm("call", [], "tenant")
    assert storm.present(0) == []
    assert storm.present(1) == [1]
    assert storm.present(STORM_EXTRAS - 1) == list(range(1, STORM_EXTRAS))
    assert storm.present(STORM_EXTRAS) == list(range(STORM_EXTRAS))
    assert storm.present(STORM_EXTRAS + 1) == [0, *range(2, STORM_EXTRAS)]
    assert storm.present(2 * STORM_EXTRAS) == []
    body = json.loads(storm.body(3))
    roster = body["value"][0]["resourceData"]
    assert [p["info"]["identity"]["user"]["displayName"] for p in roster] == ["Storm 1", "Storm 2", "Storm 3"]
    assert {p["rosterSequenceNumber"] for p in roster} == {3}


async def test_a_roster_storm_leaves_no_backlog(sandbox: SandboxServer, clips: list[Path], tmp_path: Path) -> None:
    run = await run_roster_storm(sandbox, clips, tmp_path, paced=300, rate=100.0, fast=300)
    report("roster_storm", run.figures())
    assert_storm_absorbed(run)


@pytest.mark.soak
async def test_soak_a_roster_storm_leaves_no_backlog(sandbox: SandboxServer, clips: list[Path], tmp_path: Path) -> None:
    paced = round(STORM_RATE * STORM_SECONDS)
    run = await run_roster_storm(sandbox, clips, tmp_path, paced=paced, rate=STORM_RATE, fast=paced)
    report("soak_roster_storm", run.figures())
    assert_storm_absorbed(run)


# -- 3. memory across many calls --------------------------------------------------------------------------------------


@dataclass
class MemoryRun:
    """RSS, threads and open files of the bot after each batch of calls; what it still holds at the end."""

    calls: int
    warmup: int
    rss_mb: list[float]
    threads: list[int]
    fds: list[int]
    checks: list[CallCheck]
    metrics: dict[str, float]
    calls_listed: int
    seconds: float

    @property
    def baseline(self) -> int:
        """The sample taken after the warm-up."""
        return -(-self.warmup // MEMORY_BATCH) - 1

    @property
    def window(self) -> int:
        """Samples averaged at each end: the RSS saw-tooths by ~±15 MB with the work each batch leaves behind."""
        return max(1, min(5, (len(self.rss_mb) - self.baseline - 1) // 4))

    @property
    def growth_mb(self) -> float:
        """RSS growth from the warm-up to the end (each the mean of :attr:`window` samples)."""
        start = self.rss_mb[self.baseline : self.baseline + self.window]
        return float(np.mean(self.rss_mb[-self.window :]) - np.mean(start))

    def figures(self) -> dict[str, Any]:
        """What is reported."""
        checks = self.checks
        return {
            "calls": self.calls,
            "warmup": self.warmup,
            "rss_start_mb": self.rss_mb[0],
            "rss_after_warmup_mb": self.rss_mb[self.baseline],
            "rss_end_mb": self.rss_mb[-1],
            "rss_max_mb": max(self.rss_mb),
            "growth_mb": round(self.growth_mb, 1),
            "growth_per_call_kb": round(self.growth_mb * 1000 / max(self.calls - self.warmup, 1), 1),
            "rss_mb_series": self.rss_mb,
            "threads": self.threads,
            "fds": self.fds,
            "realigned_ms_max": max((r for c in self.checks for r in c.realigned), default=0) / 16,
            "frames_missing": sum(round(self.seconds / PACKET_S) * len(c.frames_in) - sum(c.frames_in) for c in checks),
            "calls_losing_audio": sum(1 for c in self.checks if c.lost),
            "calls_listed": self.calls_listed,
            "calls_with_problems": sum(1 for c in self.checks if c.problems),
        }


async def run_many_calls(
    server: SandboxServer, clips: list[Path], workdir: Path, calls: int, warmup: int, seconds: float = 1.0
) -> MemoryRun:
    """``calls`` short calls, :data:`MEMORY_BATCH` at a time, each waited for until its files are complete."""
    scenario = write_scenario(workdir, clips, seconds, name="memory")
    packets = round(seconds / PACKET_S)
    rss: list[float] = []
    threads: list[int] = []
    fds: list[int] = []
    checks: list[CallCheck] = []
    async with system(server, workdir / "bot") as (platform, bot):
        for first in range(0, calls, MEMORY_BATCH):
            ids = [
                (await platform.start(scenario, bot.callback_uri))["id"]
                for _ in range(min(MEMORY_BATCH, calls - first))
            ]
            runs = await platform.wait(ids, {"finished"})
            call_ids = [runs[i]["call_id"] for i in ids]
            await bot.wait_for_files(call_ids)
            await bot.idle_metrics()
            checks += [check_call(bot.output_dir / call_id, packets) for call_id in call_ids]
            rss.append(round(rss_bytes(bot.pid) / 1e6, 1))
            threads.append(count_entries(bot.pid, "task"))
            fds.append(count_entries(bot.pid, "fd"))
        metrics = await bot.idle_metrics()
        listed = len((await bot.http.get("/v1/calls")).json()["value"])
    return MemoryRun(calls, warmup, rss, threads, fds, checks, metrics, listed, seconds)


def assert_memory_flat(run: MemoryRun, bound_mb: float) -> None:
    """Bounded RSS growth; no thread, file, session or stream left behind; every call recorded (its files whole and of
    one length: what audio they lost at the start and end of each stream under this churn is reported)."""
    assert [c.broken for c in run.checks if c.broken] == []
    assert run.growth_mb < bound_mb, run.rss_mb
    split = run.baseline + 1
    assert max(run.threads[split:]) <= max(run.threads[:split]) + THREADS_SLACK, run.threads
    assert max(run.fds[split:]) <= max(run.fds[:split]) + FDS_SLACK, run.fds
    assert run.metrics["mediabot_media_sessions"] == 0
    assert run.metrics["mediabot_media_streams"] == 0
    assert run.calls_listed == run.calls


async def test_memory_is_flat_across_calls(sandbox: SandboxServer, clips: list[Path], tmp_path: Path) -> None:
    run = await run_many_calls(sandbox, clips, tmp_path, calls=20, warmup=8)
    report("memory", run.figures())
    # The heap settles over the first ~40 calls (caches, the ended calls the manager keeps): this short run only
    # catches a gross leak (a call's peer connections or buffers, ~2 MB each); the soak measures flatness.
    assert_memory_flat(run, bound_mb=FAST_MEMORY_MB)


@pytest.mark.soak
async def test_soak_memory_is_flat_across_calls(sandbox: SandboxServer, clips: list[Path], tmp_path: Path) -> None:
    run = await run_many_calls(sandbox, clips, tmp_path, calls=MEMORY_CALLS, warmup=MEMORY_WARMUP)
    report("soak_memory", run.figures())
    assert_memory_flat(run, bound_mb=MEMORY_MB)
