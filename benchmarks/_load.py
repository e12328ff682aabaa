"""The load harness of the capacity and latency benchmarks: N paced Opus streams into a receiver under test.

Two processes, each pinned to its own core (``os.sched_setaffinity`` before ``exec``, so every thread and child
process they start inherits it):

- the **generator** (:data:`GENERATOR` core): ``python -m benchmarks._load generate`` (its spec, one JSON line, on
  stdin: targets, clips, duration) opens one WHIP publisher per stream (aiortc, ICE on loopback,
  ``RTCConfiguration(iceServers=[])``) and plays pre-encoded speech through the sandbox relay's
  :class:`~mediabot.sandbox._relay.PacedPacketTrack` (no encoding per packet). Streams are grouped in sessions of
  :data:`PER_SESSION` (calls of four participants); each plays one of the bundled scenario clips, looped with a
  pause so that speech starts again and again, from its own offset into the loop and its own phase within the
  20 ms packet clock, so onsets and packet sends are spread. It records when every packet was sent;
- the **receiver** (:data:`RECEIVER` core): the real bot (``mediabot serve``: standalone sessions, transcriber
  ``none``, recording on, log level WARNING; placeholder Graph settings, never used) or the bare aiortc receiver
  (:mod:`benchmarks._bare_receiver`). Both answer the same ``POST /v1/sessions`` and WHIP API and count decoded
  frames in ``mediabot_media_frames_received_total``.

:func:`run_load` measures over the steady-state window (from ``ramp_s`` after the first packet to just before the
last): the receiver's CPU (``/proc/<pid>/stat`` utime+stime of all its threads, and of its child processes if it
has any) as a fraction of one core, the generator's CPU and how late it sent, and two ways of counting frames
against the packets the generator sent in the window (its per-packet send times make "sent by time T" exact):

- **kept** = 1 - frames missing / packets sent, where missing frames are the receiver's own count of gaps in the RTP
  timestamps plus frames dropped as late (``mediabot_media_frames_concealed_total`` + ``..._late_total``): what
  was lost between the sender and the pipeline, independent of how long the receiver holds frames;
- **throughput** = frames counted in the window (``mediabot_media_frames_received_total``, read at the midpoint of a
  scrape) / packets sent in it: a receiver that falls behind — frames queued, not lost — shows here. Its noise is
  the variation of the receiver's delay between the two scrapes (1 ms is 0.05 frames per stream).

Counting over a window leaves out start-up and the frames a jitter buffer still holds when a stream stops (the
whole-run ``kept_total`` includes them). RSS (``VmRSS``) is read before any stream and at the end of the window.
After the streams end, the bot's sessions close and their files (``segments.jsonl`` with each speech start's
``latency_ms``/``pipeline_ms``) are read into :attr:`LoadRun.segments`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
CLIP_DIR = REPO / "mediabot" / "sandbox" / "scenarios"
PER_SESSION = 4
PACKET_S = 0.02
LOOP_PAUSE_S = 0.6
"""Silence added after each pass of a clip; with the clip's kept edges (:data:`EDGE_S` each side) the gap is 1.2 s,
longer than the segmenter's stop window, so every pass starts speech anew."""
AUDIBLE = 1000
EDGE_S = 0.3
START_LEAD_S = 0.2
LINGER_S = 0.6
CONNECT_CONCURRENCY = 8
CONNECT_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
FILES_TIMEOUT_S = 60.0
GOLDEN = 0.6180339887498949
CLK_TCK = os.sysconf("SC_CLK_TCK")
API_KEY = "benchmark-api-key-0123456789"
FRAMES_METRIC = "mediabot_media_frames_received_total"
STREAMS_METRIC = "mediabot_media_streams"
LOST_METRICS = ("mediabot_media_frames_concealed_total", "mediabot_media_frames_late_total")
FRAME_DELAY_METRIC = "mediabot_media_frame_delay_seconds"

# Set the calling process's affinity, then become the command: threads started later inherit the core.
_PIN = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); os.execv(sys.argv[2], sys.argv[2:])"

ReceiverKind = Literal["bot", "bare"]


class LoadError(RuntimeError):
    """A load run could not be carried out (a process did not start, a stream did not connect)."""


def cores() -> tuple[int, int, bool]:
    """(generator core, receiver core, whether they are distinct): the first two CPUs this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) >= 2:
        return allowed[0], allowed[1], True
    return allowed[0], allowed[0], False


GENERATOR, RECEIVER, SEPARATE_CORES = cores()


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    """A command line that runs ``argv`` (whose first item is an executable path) pinned to ``core``."""
    return [sys.executable, "-c", _PIN, str(core), *argv]


def _stat(pid: int) -> list[str]:
    # After the command's closing parenthesis: field 3 (state) onwards.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (media worker processes, if the receiver has any)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process tree: every thread of ``pid`` and of its live descendants, plus the
    children it has reaped (``/proc/<pid>/stat`` utime, stime, cutime, cstime)."""
    fields = _stat(pid)
    total = sum(int(v) for v in fields[11:15])
    for child in process_tree(pid)[1:]:
        with contextlib.suppress(OSError):
            total += sum(int(v) for v in _stat(child)[11:13])
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size (``VmRSS``) of a process tree (shared pages of several processes count in each)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    if total == 0:
        raise LoadError(f"no VmRSS for process {pid}")
    return total


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition → ``{"name{labels}": value}`` (comments skipped)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match:
            with contextlib.suppress(ValueError):
                samples[match.group(1)] = float(match.group(2))
    return samples


def histogram(metrics: Mapping[str, float], name: str) -> list[tuple[float, float]]:
    """A histogram's cumulative buckets ``(upper bound, count)`` sorted by bound (``[]`` if the metric is absent)."""
    prefix = f"{name}_bucket{{"
    buckets = []
    for key, value in metrics.items():
        if key.startswith(prefix):
            bound = re.search(r'le="([^"]+)"', key)
            if bound:
                buckets.append((float(bound.group(1)), value))
    return sorted(buckets)


def histogram_delta(
    end: Sequence[tuple[float, float]], start: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The buckets of what was observed between two scrapes."""
    before = dict(start)
    return [(bound, count - before.get(bound, 0.0)) for bound, count in end]


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile by linear interpolation within cumulative buckets (as Prometheus does); None if empty.

    A quantile in the ``+Inf`` bucket is reported as the largest finite bound (a lower bound of the truth).
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if math.isinf(bound):
                return lower
            share = (target - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def percentiles(
    values: Sequence[float] | npt.NDArray[np.float64], qs: Sequence[float] = (0.5, 0.99, 0.999)
) -> dict[str, float | None]:
    """``{"p50": ..., "p99": ..., "p99.9": ...}`` of ``values`` (None when there are none)."""
    data = np.asarray(values, dtype=np.float64)
    return {f"p{q * 100:g}": (float(np.quantile(data, q, method="linear")) if data.size else None) for q in qs}


# -- speech clips ---------------------------------------------------------------------------------------------------


def loop_clips(folder: Path, seconds: float) -> list[tuple[Path, int]]:
    """Write each bundled clip, trimmed and looped with a pause, covering ``seconds`` plus one loop, as a 16-bit WAV.

    Returns ``(path, packets per pass)`` for each clip: speech starts again every pass (the loads' streams speak
    throughout, not only for a clip's few seconds).
    """
    folder.mkdir(parents=True, exist_ok=True)
    clips = sorted(CLIP_DIR.glob("*.wav"))
    looped: list[tuple[Path, int]] = []
    for index, clip in enumerate(clips):
        with wave.open(str(clip), "rb") as reader:
            rate, channels = reader.getframerate(), reader.getnchannels()
            raw = np.frombuffer(reader.readframes(reader.getnframes()), "<i2").reshape(-1, channels)[:, 0]
        loud = np.flatnonzero(np.abs(raw.astype(np.int32)) > AUDIBLE)
        margin = round(EDGE_S * rate)
        if loud.size:  # a clip's own leading and trailing silence only makes the loop longer
            raw = raw[max(int(loud[0]) - margin, 0) : int(loud[-1]) + margin]
        one = np.concatenate([raw, np.zeros(round(LOOP_PAUSE_S * rate), np.int16)])
        passes = math.ceil((seconds + one.size / rate) * rate / one.size) + 1
        path = folder / f"loop{index}.wav"
        with wave.open(str(path), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(rate)
            writer.writeframes(np.tile(one, passes).astype("<i2").tobytes())
        looped.append((path, math.ceil(one.size / rate / PACKET_S)))
    return looped


def prepare_clips(folder: Path, seconds: float) -> Path:
    """Encode each bundled clip, trimmed and looped with a pause, to cover ``seconds`` plus one loop, into an ``.npz``.

    Encoding goes through the sandbox's own preparation (:func:`mediabot.sandbox._scenario.prepare`). The file
    holds ``data<k>`` (the packets of clip ``k`` back to back), ``lengths<k>`` and ``loop<k>`` (packets per pass).
    """
    from mediabot.sandbox._scenario import ParticipantSpec, Scenario, prepare

    looped = loop_clips(folder, seconds)
    length = seconds + max(loop for _, loop in looped) * PACKET_S + 1.0
    scenario = Scenario.model_validate(
        {
            "name": "load",
            "kind": "meeting",
            "duration": length,
            "participants": [ParticipantSpec(name=f"clip{k}", audio=path) for k, (path, _) in enumerate(looped)],
        }
    )
    prepared = prepare(scenario)
    arrays: dict[str, npt.NDArray[Any]] = {}
    for k, participant in enumerate(prepared.participants):
        packets = participant.packets
        arrays[f"data{k}"] = np.frombuffer(b"".join(packets), np.uint8)
        arrays[f"lengths{k}"] = np.array([len(p) for p in packets], np.int64)
        arrays[f"loop{k}"] = np.array(looped[k][1], np.int64)
    out = folder / "clips.npz"
    np.savez(out, **arrays)  # type: ignore[arg-type]
    return out


def load_clips(path: Path) -> list[tuple[tuple[bytes, ...], int]]:
    """The clips saved by :func:`prepare_clips`: (packets, packets per loop) each."""
    with np.load(path) as data:
        count = sum(1 for key in data.files if key.startswith("data"))
        clips = []
        for k in range(count):
            blob = data[f"data{k}"].tobytes()
            ends = np.cumsum(data[f"lengths{k}"])
            starts = ends - data[f"lengths{k}"]
            clips.append(
                (tuple(blob[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)), int(data[f"loop{k}"]))
            )
    return clips


# -- the generator process ------------------------------------------------------------------------------------------


def _emit(event: str, **data: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


async def _generate(spec: dict[str, Any]) -> None:
    """Connect every target, play for ``duration_s``, linger, end the sessions, save the send times."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from mediabot.media.ice import allow_loopback_candidates
    from mediabot.sandbox._relay import PacedPacketTrack, ScenarioClock

    allow_loopback_candidates()
    clips = load_clips(Path(spec["clips"]))
    targets: list[dict[str, str]] = spec["targets"]
    count = math.ceil(float(spec["duration_s"]) / PACKET_S)
    clock = ScenarioClock()
    sent_at = np.full((len(targets), count), np.nan)
    due = np.zeros((len(targets), count))
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]

    class TimedTrack(PacedPacketTrack):
        """The relay's paced track, noting when each packet left."""

        row: int = 0

        async def recv(self) -> Any:
            packet = await super().recv()
            sent_at[self.row, self.sent - 1] = time.monotonic()
            return packet

    tracks: list[TimedTrack] = []
    phases = [PACKET_S * (i * GOLDEN % 1.0) for i in range(len(targets))]
    for i, phase in enumerate(phases):
        packets, loop = clips[i % len(clips)]
        offset = int((i // len(clips) * GOLDEN % 1.0) * loop)
        if offset + count > len(packets):
            raise LoadError(f"the clips cover {len(packets) * PACKET_S:.0f} s; prepare them for longer runs")
        track = TimedTrack(
            packets[offset : offset + count],
            first_pts=0,
            kept=np.arange(count, dtype=np.int64),
            release_s=np.arange(count, dtype=np.float64) * PACKET_S,
            start_s=phase,
            clock=clock,
        )
        track.row = i
        tracks.append(track)
    pcs: list[RTCPeerConnection] = []
    locations: list[tuple[str, str]] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async with httpx.AsyncClient(trust_env=False, timeout=CONNECT_TIMEOUT_S) as http:

        async def connect(i: int) -> None:
            target = targets[i]
            async with gate:
                pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                pcs.append(pc)
                connected = asyncio.get_running_loop().create_future()

                @pc.on("connectionstatechange")
                def _state() -> None:
                    if not connected.done() and pc.connectionState in ("connected", "failed", "closed"):
                        connected.set_result(pc.connectionState)

                transceiver = pc.addTransceiver(tracks[i], direction="sendonly")
                transceiver.setCodecPreferences(opus)
                await pc.setLocalDescription(await pc.createOffer())
                headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {target['token']}"}
                response = await http.post(
                    target["whip_url"],
                    params={"source": target["source"]},
                    content=pc.localDescription.sdp.encode(),
                    headers=headers,
                )
                if response.status_code != 201:
                    raise LoadError(f"WHIP POST answered {response.status_code}: {response.text[:300]}")
                locations.append((str(response.url.join(response.headers["location"])), target["token"]))
                await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
                state = await asyncio.wait_for(connected, CONNECT_TIMEOUT_S)
                if state != "connected":
                    raise LoadError(f"stream {i}: the connection {state}")

        began = time.monotonic()
        try:
            await asyncio.gather(*(connect(i) for i in range(len(targets))))
            connect_s = time.monotonic() - began
            t0 = time.monotonic() + START_LEAD_S
            due[:] = t0 + np.array(phases)[:, None] + np.arange(count) * PACKET_S
            clock.start(t0)
            _emit("playing", t0=t0, connect_s=connect_s, streams=len(targets))
            await asyncio.sleep(max(t0 + float(spec["duration_s"]) + PACKET_S - time.monotonic(), 0.0))
            _emit("finished")
            await asyncio.sleep(float(spec.get("linger_s", LINGER_S)))
        finally:
            for track in tracks:
                track.stop()

            async def delete(location: str, token: str) -> None:
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(location, headers={"Authorization": f"Bearer {token}"})

            await asyncio.gather(*(delete(location, token) for location, token in locations))
            await asyncio.gather(*(pc.close() for pc in pcs))
    np.savez(spec["out"], sent_at=sent_at, due=due)
    _emit("done", sent=int(np.isfinite(sent_at).sum()))


def _generator_main() -> None:
    """The generator process: import what it needs, then read its spec (one JSON line on stdin) and run."""
    import aiortc  # noqa: F401 - imported before the spec comes, while the receiver starts

    import mediabot.sandbox._relay  # noqa: F401

    spec = json.loads(sys.stdin.readline())
    try:
        asyncio.run(_generate(spec))
    except Exception as exc:
        _emit("error", message=f"{type(exc).__name__}: {exc}")
        raise


# -- the receiver under test ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Target:
    """One stream to publish: the session's WHIP URL and bearer, and the stream's ``source`` id."""

    session_id: str
    whip_url: str
    token: str
    source: str
    folder: str | None


class ReceiverProcess:
    """The receiver under test as a child process pinned to :data:`RECEIVER` (``core=None``: not pinned): the bot
    or the bare receiver. ``env`` adds to (or replaces) the bot's ``MEDIABOT_*`` settings: a sandbox's environment
    makes it a bot that takes calls through the sandbox's Graph instead of standalone sessions only."""

    def __init__(
        self, kind: ReceiverKind, workdir: Path, *, core: int | None = RECEIVER, env: Mapping[str, str] | None = None
    ) -> None:
        self.kind = kind
        self.extra_env = dict(env or {})
        self.workdir = workdir
        self.core = core
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.output_dir = workdir / "recordings"
        self.log_path = workdir / f"{kind}.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def pid(self) -> int:
        """The child's process id."""
        if self._proc is None:
            raise LoadError("the receiver is not running")
        return self._proc.pid

    def _command(self) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIABOT_")}
        if self.kind == "bare":
            argv = [sys.executable, "-m", "benchmarks._bare_receiver", "--port", str(self.port), "--ice-loopback"]
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
            return argv, env
        # No call comes through Graph here (standalone sessions only): its settings only need to be present.
        nowhere = "http://127.0.0.1:9"
        env |= {
            "MEDIABOT_TENANT_ID": "benchmark",
            "MEDIABOT_CLIENT_ID": "benchmark",
            "MEDIABOT_CLIENT_SECRET": "benchmark",
            "MEDIABOT_AUTHORITY": f"{nowhere}/benchmark",
            "MEDIABOT_GRAPH_URL": f"{nowhere}/v1.0",
            "MEDIABOT_CALLBACK_OPENID_URL": f"{nowhere}/openid",
            "MEDIABOT_API_KEY": API_KEY,
            "MEDIABOT_PUBLIC_URL": self.base_url,
            "MEDIABOT_OUTPUT_DIR": str(self.output_dir),
            "MEDIABOT_TRANSCRIBER": "none",
            "MEDIABOT_MEDIA_ICE_LOOPBACK": "true",
            "MEDIABOT_LOG_LEVEL": "WARNING",
        }
        env |= self.extra_env
        return [sys.executable, "-m", "mediabot", "serve", "--port", str(self.port)], env

    async def start(self) -> None:
        """Start the child (in ``workdir``, so no ``.env`` is read) and wait until ``/healthz`` answers."""
        await asyncio.to_thread(self.workdir.mkdir, parents=True, exist_ok=True)
        argv, env = self._command()
        with self.log_path.open("wb") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *(argv if self.core is None else pinned(self.core, argv)),
                cwd=self.workdir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, trust_env=False, timeout=30.0, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.returncode is not None:
                raise LoadError(f"the {self.kind} receiver exited at start: {self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await self._http.get("/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise LoadError(f"the {self.kind} receiver did not start: {self.log_tail()}")
            await asyncio.sleep(0.1)

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the child's log."""
        try:
            return self.log_path.read_text("utf-8", "replace")[-chars:]
        except OSError:
            return ""

    def errors(self, most: int = 10) -> list[str]:
        """The first ``most`` ERROR (or CRITICAL) lines of the child's log."""
        try:
            lines = self.log_path.read_text("utf-8", "replace").splitlines()
        except OSError:
            return []
        return [line[:300] for line in lines if " ERROR " in line or " CRITICAL " in line][:most]

    @property
    def http(self) -> httpx.AsyncClient:
        """The client of the child's API (with its key)."""
        if self._http is None:
            raise LoadError("the receiver is not running")
        return self._http

    async def open_targets(self, streams: int, per_session: int = PER_SESSION) -> list[Target]:
        """Open ``ceil(streams / per_session)`` sessions and name one source per stream in them."""
        targets: list[Target] = []
        for first in range(0, streams, per_session):
            response = await self.http.post("/v1/sessions")
            if response.status_code != 201:
                raise LoadError(f"POST /v1/sessions answered {response.status_code}: {response.text[:300]}")
            body = response.json()
            for i in range(first, min(first + per_session, streams)):
                targets.append(Target(body["session_id"], body["whip_url"], body["token"], f"p{i}", body["folder"]))
        return targets

    async def scrape(self) -> tuple[float, dict[str, float]]:
        """``/metrics`` parsed, and the moment it was taken (the middle of the request, monotonic seconds)."""
        before = time.monotonic()
        response = await self.http.get("/metrics")
        after = time.monotonic()
        response.raise_for_status()
        return (before + after) / 2, parse_metrics(response.text)

    async def close_sessions(self, targets: Sequence[Target]) -> None:
        """DELETE every session (one already closed by its last publisher's leaving answers 404: fine)."""
        for session_id in dict.fromkeys(t.session_id for t in targets):
            with contextlib.suppress(httpx.HTTPError):
                await self.http.delete(f"/v1/sessions/{session_id}")

    async def stop(self) -> None:
        """SIGTERM (the bot finishes its files), then SIGKILL if it takes too long."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# -- one run --------------------------------------------------------------------------------------------------------


@dataclass
class Mark:
    """The counters at one moment of the window."""

    at: float
    receiver_cpu_s: float
    generator_cpu_s: float
    metrics_at: float
    metrics: dict[str, float]


@dataclass
class LoadRun:
    """What one run measured (CPU as a fraction of one core; times in seconds; memory in bytes)."""

    receiver: ReceiverKind
    streams: int
    duration_s: float
    window_s: float
    receiver_cpu: float
    generator_cpu: float
    rss_idle: int
    rss: int
    sent_window: int
    received_window: float
    lost_window: float
    sent_total: int
    received_total: float
    generator_late_ms: dict[str, float | None]
    """How late the generator sent the window's packets (p50/p99/p99.9, ms): large when its core is saturated."""
    connect_s: float
    start: Mark
    end: Mark
    segments: list[dict[str, Any]] = field(default_factory=list)
    folders_complete: int = 0
    sessions: int = 0
    errors: list[str] = field(default_factory=list)
    """The receiver's logged errors (first lines of each), if any."""

    @property
    def open_streams(self) -> int:
        """Streams the receiver still had open at the end of the window (all of them, unless some failed)."""
        return int(self.end.metrics.get(STREAMS_METRIC, 0.0))

    @property
    def kept(self) -> float:
        """The share of the window's packets that became frames: 1 - frames missing (by RTP timestamp: lost, or
        dropped as late) / packets sent. Exact whatever the receiver's delay."""
        return 1.0 - self.lost_window / self.sent_window if self.sent_window else 0.0

    @property
    def throughput(self) -> float:
        """Frames counted during the window / packets sent during it: below 1 when the receiver falls behind (or
        loses frames); as exact as the receiver's delay is steady (a few ms of its variation are a few frames)."""
        return self.received_window / self.sent_window if self.sent_window else 0.0

    @property
    def kept_total(self) -> float:
        """The same over the whole run (includes start-up and what was still buffered when the streams ended)."""
        return self.received_total / self.sent_total if self.sent_total else 0.0

    @property
    def generator_late_p99_ms(self) -> float | None:
        """The p99 of :attr:`generator_late_ms`."""
        return self.generator_late_ms["p99"]

    @property
    def delivered(self) -> float:
        """Packets sent during the window / packets due in it: below 1 when the generator cannot keep up."""
        due = self.streams * (self.end.metrics_at - self.start.metrics_at) / PACKET_S
        return self.sent_window / due if due > 0 else 0.0

    @property
    def rss_per_stream(self) -> float:
        """Resident memory added per stream (bytes)."""
        return (self.rss - self.rss_idle) / self.streams if self.streams else 0.0

    def histogram(self, name: str) -> list[tuple[float, float]]:
        """A histogram of the receiver's ``/metrics`` over the window (``[]`` when it does not expose it)."""
        return histogram_delta(histogram(self.end.metrics, name), histogram(self.start.metrics, name))


async def _mark(receiver: ReceiverProcess, generator_pid: int) -> Mark:
    at = time.monotonic()
    rx, gen = cpu_seconds(receiver.pid), cpu_seconds(generator_pid)
    metrics_at, metrics = await receiver.scrape()
    return Mark(at, rx, gen, metrics_at, metrics)


async def _line(stream: asyncio.StreamReader, wait_s: float, receiver: ReceiverProcess) -> dict[str, Any]:
    async with asyncio.timeout(wait_s):
        raw = await stream.readline()
    if not raw:
        raise LoadError(f"the generator exited unexpectedly; receiver log: {receiver.log_tail(800)}")
    event: dict[str, Any] = json.loads(raw)
    if event.get("event") == "error":
        raise LoadError(f"generator: {event.get('message')}; receiver log: {receiver.log_tail(800)}")
    return event


def _sent_by(sent_at: npt.NDArray[np.float64], moment: float) -> int:
    return int(np.count_nonzero(sent_at <= moment))


def _read_segments(folder: Path) -> list[dict[str, Any]]:
    path = folder / "segments.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _complete(folder: Path) -> bool:
    try:
        return bool(json.loads((folder / "call.json").read_text("utf-8")).get("complete"))
    except (OSError, ValueError):
        return False


async def _wait_for_files(folders: Sequence[Path]) -> int:
    """Wait (bounded) until every folder's ``call.json`` says complete; how many are."""
    deadline = time.monotonic() + FILES_TIMEOUT_S
    while True:
        done = sum(_complete(folder) for folder in folders)
        if done == len(folders) or time.monotonic() > deadline:
            return done
        await asyncio.sleep(0.2)


async def run_load(
    kind: ReceiverKind,
    streams: int,
    *,
    clips: Path,
    workdir: Path,
    duration_s: float,
    ramp_s: float,
    per_session: int = PER_SESSION,
    keep: bool = False,
    env: Mapping[str, str] | None = None,
) -> LoadRun:
    """Start a fresh receiver, publish ``streams`` streams into it for ``duration_s``, measure, stop everything.

    The window runs from ``ramp_s`` after the first packet to 0.3 s before the last. ``workdir`` (the receiver's
    folder: logs, recordings) is removed afterwards unless ``keep``. ``env`` adds to the bot's ``MEDIABOT_*`` settings.
    """
    if duration_s - ramp_s < 1.0:
        raise ValueError("the steady-state window must last at least a second")
    receiver = ReceiverProcess(kind, workdir, env=env)
    generator: asyncio.subprocess.Process | None = None
    try:
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        # The generator imports aiortc and the relay while the receiver starts; it waits for its spec on stdin.
        with (workdir / "generator.log").open("wb") as log:
            generator = await asyncio.create_subprocess_exec(
                *pinned(GENERATOR, [sys.executable, "-m", "benchmarks._load", "generate"]),
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        await receiver.start()
        logger.debug("%s receiver started", kind)
        rss_idle = rss_bytes(receiver.pid)
        targets = await receiver.open_targets(streams, per_session)
        out = workdir / "sent.npz"
        spec = {
            "clips": str(clips),
            "duration_s": duration_s,
            "linger_s": LINGER_S,
            "out": str(out),
            "targets": [{"whip_url": t.whip_url, "token": t.token, "source": t.source} for t in targets],
        }
        assert generator.stdin is not None
        generator.stdin.write(json.dumps(spec).encode() + b"\n")
        await generator.stdin.drain()
        generator.stdin.close()
        await generator.stdin.wait_closed()
        assert generator.stdout is not None
        playing = await _line(generator.stdout, CONNECT_TIMEOUT_S + streams, receiver)
        logger.debug("%d streams connected in %.2f s", streams, playing["connect_s"])
        t0 = float(playing["t0"])
        await asyncio.sleep(max(t0 + ramp_s - time.monotonic(), 0.0))
        start = await _mark(receiver, generator.pid)
        await asyncio.sleep(max(t0 + duration_s - 0.3 - time.monotonic(), 0.0))
        end = await _mark(receiver, generator.pid)
        rss = rss_bytes(receiver.pid)
        await _line(generator.stdout, duration_s + CONNECT_TIMEOUT_S, receiver)  # finished
        await asyncio.sleep(LINGER_S / 2)
        _, final = await receiver.scrape()
        done = await _line(generator.stdout, CONNECT_TIMEOUT_S + streams, receiver)
        await generator.stdout.read()
        await generator.wait()
        logger.debug("the generator is done")
        with np.load(out) as data:
            sent_at, due = data["sent_at"], data["due"]
        in_window = (due >= start.at) & (due <= end.at) & np.isfinite(sent_at)
        lateness = (sent_at - due)[in_window]
        sessions = list(dict.fromkeys(t.session_id for t in targets))
        folders = [receiver.output_dir / f for f in dict.fromkeys(t.folder for t in targets) if f]
        await receiver.close_sessions(targets)
        complete = await _wait_for_files(folders) if kind == "bot" else 0
        logger.debug("%d of %d folders complete", complete, len(folders))
        segments = [segment for folder in folders for segment in _read_segments(folder)]
        window = end.at - start.at
        return LoadRun(
            receiver=kind,
            streams=streams,
            duration_s=duration_s,
            window_s=window,
            receiver_cpu=(end.receiver_cpu_s - start.receiver_cpu_s) / window,
            generator_cpu=(end.generator_cpu_s - start.generator_cpu_s) / window,
            rss_idle=rss_idle,
            rss=rss,
            sent_window=_sent_by(sent_at, end.metrics_at) - _sent_by(sent_at, start.metrics_at),
            received_window=end.metrics.get(FRAMES_METRIC, 0.0) - start.metrics.get(FRAMES_METRIC, 0.0),
            lost_window=sum(end.metrics.get(m, 0.0) - start.metrics.get(m, 0.0) for m in LOST_METRICS),
            sent_total=int(done["sent"]),
            received_total=final.get(FRAMES_METRIC, 0.0),
            generator_late_ms=percentiles(lateness * 1000),
            connect_s=float(playing["connect_s"]),
            start=start,
            end=end,
            segments=segments,
            folders_complete=complete,
            sessions=len(sessions),
            errors=receiver.errors(),
        )
    finally:
        if generator is not None and generator.returncode is None:
            generator.kill()
            await generator.wait()
        await receiver.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def load(kind: ReceiverKind, streams: int, **options: Any) -> LoadRun:
    """:func:`run_load` from synchronous code."""
    return asyncio.run(run_load(kind, streams, **options))


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A private temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


if __name__ == "__main__":
    if sys.argv[1:] == ["generate"]:
        _generator_main()
    else:
        sys.exit("usage: python -m benchmarks._load generate < SPEC.json (run_load starts it)")
