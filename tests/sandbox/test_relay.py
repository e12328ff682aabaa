"""MediaRelay against a real aiortc WHIP endpoint (an asyncio HTTP server written here), over real ICE/DTLS/RTP."""

from __future__ import annotations

import asyncio
import fractions
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.opus import OpusDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from mediabot.media.blob import MediaConfigBlob
from mediabot.media.ice import loopback_candidates_allowed
from mediabot.sandbox._relay import MediaRelay, PacedPacketTrack, RelayError, ScenarioClock
from mediabot.sandbox._scenario import DEMO_SCENARIO, PACKET_SAMPLES, SCENARIO_RATE, load_scenario, prepare

TOKEN = "relay-test-token"
RATE = SCENARIO_RATE
ADELE = DEMO_SCENARIO.parent / "adele-vance.wav"
MEGAN = DEMO_SCENARIO.parent / "megan-bowen.wav"


# -- the WHIP endpoint --------------------------------------------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    """The endpoint's audio on main: a tone, sent once in real time, then nothing."""

    kind = "audio"

    def __init__(self, samples: npt.NDArray[np.int16]) -> None:
        super().__init__()
        self.samples = samples
        self.offset = 0
        self.start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        if self.offset >= self.samples.size:
            await asyncio.Future()  # nothing more to say; cancelled when the connection closes
        await asyncio.sleep(max(0.0, self.start + self.offset / RATE - time.monotonic()))
        chunk = self.samples[self.offset : self.offset + PACKET_SAMPLES]
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        frame.pts = self.offset
        self.offset += PACKET_SAMPLES
        return frame


@dataclass
class Received:
    """What one source delivered: decoded frames (pts, arrival, mono samples), and when it was DELETEd."""

    frames: list[tuple[int, float, npt.NDArray[np.int16]]] = field(default_factory=list)
    deleted_at: float | None = None
    first_frame: asyncio.Event = field(default_factory=asyncio.Event)


class WhipEndpoint:
    """A WHIP endpoint on aiortc: bearer check (401), offer → 201 + Location + answer, DELETE → 200."""

    def __init__(
        self, token: str = TOKEN, main_audio: npt.NDArray[np.int16] | None = None, refuse: frozenset[str] = frozenset()
    ) -> None:
        self.token = token
        self.refuse = refuse
        self.main_audio = main_audio
        self.sources: dict[str, Received] = {}
        self.posts: list[str] = []
        self._resources: dict[str, tuple[str, RTCPeerConnection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> WhipEndpoint:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/whip/session-1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers)  # each ends on its connection's EOF
        await self._server.wait_closed()
        for _, pc in self._resources.values():
            await pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def open_resources(self) -> int:
        return len(self._resources)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while line := await reader.readline():
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, value = header.decode().split(":", 1)
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra, payload = await self._handle(method, target, headers, body)
                head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}", *extra]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[str], bytes]:
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, [], b"bad bearer"
        url = urlsplit(target)
        if method == "POST" and url.path == "/whip/session-1":
            assert headers["content-type"] == "application/sdp"
            source = parse_qs(url.query)["source"][0]
            self.posts.append(source)
            if source in self.refuse:
                return 503, [], b"busy"
            answer, resource = await self._answer(source, body.decode())
            location = f"/whip/session-1/resources/{resource}"
            return 201, [f"Location: {location}", "Content-Type: application/sdp"], answer.encode()
        if method == "DELETE" and url.path.startswith("/whip/session-1/resources/"):
            entry = self._resources.pop(url.path.rsplit("/", 1)[1], None)
            if entry is None:
                return 404, [], b"no such resource"
            self.sources[entry[0]].deleted_at = time.monotonic()
            await entry[1].close()
            return 200, [], b""
        return 404, [], b"not found"

    async def _answer(self, source: str, offer: str) -> tuple[str, str]:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        received = self.sources.setdefault(source, Received())

        def on_track(track: MediaStreamTrack) -> None:
            task = asyncio.create_task(self._record(track, received))
            self._tasks.add(task)

        pc.on("track", on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in pc.getTransceivers():
            if source == "main" and self.main_audio is not None:
                transceiver.sender.replaceTrack(ToneTrack(self.main_audio))
                transceiver.direction = "sendrecv"
            else:
                transceiver.direction = "recvonly"
        await pc.setLocalDescription(await pc.createAnswer())
        resource = secrets.token_hex(6)
        self._resources[resource] = (source, pc)
        return pc.localDescription.sdp, resource

    @staticmethod
    async def _record(track: MediaStreamTrack, received: Received) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            channels = len(frame.layout.channels)
            mono = frame.to_ndarray()[0, ::channels].astype(np.int16)
            received.frames.append((int(frame.pts), time.monotonic(), mono))
            received.first_frame.set()


# -- helpers ------------------------------------------------------------------------------------------------------


def scenario_file(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def json_file(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def tone(seconds: float, freq: float = 1000.0) -> npt.NDArray[np.int16]:
    t = np.arange(round(seconds * RATE)) / RATE
    return np.rint(8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def ncc_best(a: npt.NDArray[Any], b: npt.NDArray[Any], max_lag: int = 24) -> float:
    x, y = a.astype(np.float64), b.astype(np.float64)
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        u = x[max(0, lag) : x.size + min(0, lag)]
        v = y[max(0, -lag) : y.size + min(0, -lag)]
        best = max(best, float(u @ v / np.sqrt((u @ u) * (v @ v) + 1e-9)))
    return best


def frame_indices(received: Received, first_index: int) -> npt.NDArray[np.int64]:
    """Each received frame's packet index on the presence, from its pts (aiortc rebases pts to the first frame)."""
    pts = np.array([frame[0] for frame in received.frames], np.int64)
    assert np.all(pts % PACKET_SAMPLES == 0)
    return pts // PACKET_SAMPLES + first_index


def laid_out(received: Received, indices: npt.NDArray[np.int64], count: int) -> npt.NDArray[np.int16]:
    out = np.zeros(count * PACKET_SAMPLES, np.int16)
    for index, (_, _, mono) in zip(indices, received.frames, strict=True):
        out[index * PACKET_SAMPLES : (index + 1) * PACKET_SAMPLES] = mono
    return out


def decode_in_order(packets: list[bytes]) -> npt.NDArray[np.int16]:
    decoder = OpusDecoder()
    frames = [decoder.decode(JitterFrame(data, k * PACKET_SAMPLES)) for k, data in enumerate(packets)]
    return np.concatenate([frame.to_ndarray()[0, ::2] for decoded in frames for frame in decoded]).astype(np.int16)


def dominant_frequency(signal: npt.NDArray[np.int16]) -> float:
    spectrum = np.abs(np.fft.rfft(signal.astype(np.float64)))
    return float(np.argmax(spectrum) * RATE / signal.size)


class Events:
    """Records the relay's callbacks with their scenario time."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, float]] = []
        self.t0 = 0.0

    def join(self, name: str) -> None:
        self.items.append(("join", name, time.monotonic() - self.t0))

    def leave(self, name: str) -> None:
        self.items.append(("leave", name, time.monotonic() - self.t0))

    def end(self) -> None:
        self.items.append(("end", "", time.monotonic() - self.t0))


# -- tests --------------------------------------------------------------------------------------------------------


async def test_packet_track_paces_packets_on_the_scenario_axis(tmp_path: Path) -> None:
    data = {
        "name": "track",
        "kind": "meeting",
        "duration": 0.5,
        "participants": [
            {"name": "Ann", "audio": str(ADELE), "join_at": 0.2, "network": {"loss": 0.3, "jitter_ms": 10}}
        ],
    }
    person = prepare(load_scenario(scenario_file(tmp_path, data)), seed=5).participants[0]
    clock = ScenarioClock()
    track = PacedPacketTrack.for_participant(person, clock)
    clock.start(time.monotonic())
    assert clock.t0 is not None
    for index, k in enumerate(person.kept.tolist()):
        packet = await track.recv()
        assert time.monotonic() >= clock.t0 + 0.2 + person.release_s[index]  # never before it is due
        assert packet.pts == round(0.2 * RATE) + k * PACKET_SAMPLES
        assert packet.time_base == fractions.Fraction(1, RATE)
        assert bytes(packet) == person.packets[k]
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert not waiting.done()  # after the last packet: nothing more, until the track stops
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiting
    assert track.sent == person.kept.size and track.dropped == person.dropped > 0


async def test_unmixed_run_publishes_each_participant_and_hears_main(tmp_path: Path) -> None:
    data = {
        "name": "relay",
        "kind": "meeting",
        "duration": 3.0,
        "participants": [
            {"name": "Adele", "audio": str(ADELE)},
            {"name": "Megan", "audio": str(MEGAN), "join_at": 1.5, "leave_at": 2.7, "network": {"loss": 0.1}},
        ],
    }
    prepared = prepare(load_scenario(scenario_file(tmp_path, data)), seed=2)
    sources = {"Adele": "src-adele", "Megan": "src-megan"}
    events = Events()
    async with WhipEndpoint(main_audio=tone(0.4)) as endpoint, MediaRelay(verify=False) as relay:
        blob = MediaConfigBlob(endpoint=endpoint.url, token=TOKEN, receive="unmixed")
        run = await relay.start(blob, prepared, sources, on_join=events.join, on_leave=events.leave, on_end=events.end)
        events.t0 = run.t0
        # Megan connects about a second before she joins; at t0 only main and Adele exist.
        assert sorted(endpoint.posts) == ["main", "src-adele"]
        await run.wait()
        assert run.done and run.ended
        assert sorted(endpoint.posts) == ["main", "src-adele", "src-megan"]
        assert endpoint.open_resources == 0  # every session was DELETEd
        stats = run.stats()
        main_audio = run.received_main()
        main_stats = run.main

    assert [(kind, name) for kind, name, _ in events.items] == [
        ("join", "Adele"),
        ("join", "Megan"),
        ("leave", "Megan"),
        ("end", ""),
    ]
    assert [at >= due for (_, _, at), due in zip(events.items, (0.0, 1.5, 2.7, 3.0), strict=True)] == [True] * 4

    for name, source in sources.items():
        person = prepared.participant(name)
        received = endpoint.sources[source]
        assert stats[name].location is not None and stats[name].location.startswith(endpoint.url)
        assert stats[name].sent == person.kept.size
        assert stats[name].dropped == person.dropped
        assert stats[name].error is None
        # aiortc's receiver holds the last few frames in its jitter buffer; the rest all arrive, in order.
        assert person.kept.size - 8 <= len(received.frames) <= person.kept.size
        indices = frame_indices(received, int(person.kept[0]))
        assert np.all(np.diff(indices) > 0)
        assert np.array_equal(indices, person.kept[: indices.size])  # lost packets are timestamp gaps
        # What arrived is exactly the kept packets, decoded (the same decoder state as an offline decode).
        expected = decode_in_order([person.packets[k] for k in indices.tolist()])
        assert np.array_equal(np.concatenate([mono for _, _, mono in received.frames]), expected)

    # Without loss, the decoded audio is the reference (loss makes Opus re-converge for a few frames after a gap).
    adele = prepared.participant("Adele")
    received = endpoint.sources["src-adele"]
    indices = frame_indices(received, 0)
    heard = laid_out(received, indices, len(adele.packets))[: indices.size * PACKET_SAMPLES]
    assert ncc_best(heard, adele.reference[: heard.size]) >= 0.9

    megan = prepared.participant("Megan")
    assert megan.dropped > 0
    assert stats["Megan"].dropped / len(megan.packets) == pytest.approx(0.1, abs=0.08)
    first_arrival = endpoint.sources["src-megan"].frames[0][1]
    assert first_arrival >= run.t0 + 1.5  # nothing is sent before join_at, though connected earlier
    megan_deleted = endpoint.sources["src-megan"].deleted_at
    adele_deleted = endpoint.sources["src-adele"].deleted_at
    assert megan_deleted is not None and adele_deleted is not None
    assert run.t0 + 2.7 <= megan_deleted < adele_deleted  # DELETE at leave, before the end
    assert adele_deleted >= run.t0 + 3.0

    # The endpoint spoke a 1 kHz tone on main: the relay heard it.
    assert main_stats.received_frames > 0
    assert main_audio.size >= round(0.3 * RATE)
    assert dominant_frequency(main_audio) == pytest.approx(1000.0, abs=10.0)
    assert run.main_audio_at is not None and run.main_audio_at < 3.0


async def test_mixed_run_sends_the_mix_on_main(tmp_path: Path) -> None:
    data = {
        "name": "mixed",
        "kind": "meeting",
        "duration": 2.0,
        "media": "mixed",
        "participants": [
            {"name": "Adele", "audio": str(ADELE)},
            {"name": "Megan", "audio": str(MEGAN), "join_at": 0.6, "leave_at": 1.6},
        ],
    }
    prepared = prepare(load_scenario(scenario_file(tmp_path, data)))
    assert prepared.mixed is not None
    events = Events()
    async with WhipEndpoint(main_audio=tone(0.3, 600.0)) as endpoint, MediaRelay(verify=False) as relay:
        blob = MediaConfigBlob(endpoint=endpoint.url, token=TOKEN, receive="mixed")
        run = await relay.start(blob, prepared, {}, on_join=events.join, on_leave=events.leave, on_end=events.end)
        events.t0 = run.t0
        await run.wait()
        assert endpoint.open_resources == 0

    assert endpoint.posts == ["main"]
    assert [(kind, name) for kind, name, _ in events.items] == [
        ("join", "Adele"),
        ("join", "Megan"),
        ("leave", "Megan"),
        ("end", ""),
    ]
    received = endpoint.sources["main"]
    count = len(prepared.mixed.packets)
    assert run.main.sent == count
    assert count - 8 <= len(received.frames) <= count
    indices = frame_indices(received, 0)
    assert np.array_equal(indices, np.arange(indices.size))
    heard = laid_out(received, indices, count)[: indices.size * PACKET_SAMPLES]
    assert ncc_best(heard, prepared.mixed.reference[: heard.size]) >= 0.9
    assert all(stat.sent == 0 and stat.location is None for stat in run.stats().values())
    assert dominant_frequency(run.received_main()) == pytest.approx(600.0, abs=10.0)


async def test_a_late_joiner_refused_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    data = {
        "name": "refused",
        "kind": "meeting",
        "duration": 1.5,
        "participants": [{"name": "Ann", "audio": str(ADELE)}, {"name": "Bob", "audio": str(MEGAN), "join_at": 1.2}],
    }
    prepared = prepare(load_scenario(scenario_file(tmp_path, data)))
    events = Events()
    async with WhipEndpoint(refuse=frozenset({"b"})) as endpoint, MediaRelay(verify=False) as relay:
        t0 = time.monotonic() + 0.3
        events.t0 = t0
        blob = MediaConfigBlob(endpoint=endpoint.url, token=TOKEN)
        run = await relay.start(blob, prepared, {"Ann": "a", "Bob": "b"}, on_join=events.join, on_end=events.end, t0=t0)
        assert run.t0 == t0  # the clock the caller gave
        await run.wait()
    assert run.ended
    assert [(kind, name) for kind, name, _ in events.items] == [("join", "Ann"), ("join", "Bob"), ("end", "")]
    stats = run.stats()
    assert stats["Bob"].error is not None and "503" in stats["Bob"].error and stats["Bob"].sent == 0
    assert stats["Ann"].error is None and stats["Ann"].sent == len(prepared.participant("Ann").packets)
    assert endpoint.sources["a"].frames[0][1] >= t0


async def test_a_refused_bearer_is_a_relay_error(tmp_path: Path) -> None:
    data = {"name": "x", "kind": "incoming", "duration": 1.0, "participants": [{"name": "Ann", "audio": str(ADELE)}]}
    prepared = prepare(load_scenario(scenario_file(tmp_path, data)))
    async with WhipEndpoint() as endpoint, MediaRelay(verify=False) as relay:
        blob = MediaConfigBlob(endpoint=endpoint.url, token="not-the-token")
        with pytest.raises(RelayError) as caught:
            await relay.start(blob, prepared, {"Ann": "src-ann"})
        assert endpoint.open_resources == 0
    assert caught.value.status == 401
    assert caught.value.body == "bad bearer"
    assert "401" in str(caught.value)


async def test_missing_source_ids_and_unprepared_mix_are_refused(tmp_path: Path) -> None:
    data = {"name": "x", "kind": "incoming", "duration": 1.0, "participants": [{"name": "Ann", "audio": str(ADELE)}]}
    prepared = prepare(load_scenario(scenario_file(tmp_path, data)))
    async with MediaRelay(verify=False) as relay:
        blob = MediaConfigBlob(endpoint="http://127.0.0.1:9/whip", token=TOKEN)
        with pytest.raises(RelayError, match="no sourceId for 'Ann'"):
            await relay.start(blob, prepared, {})
        with pytest.raises(RelayError, match="media='mixed'"):
            await relay.start(MediaConfigBlob(endpoint=blob.endpoint, token=TOKEN, receive="mixed"), prepared, {})


async def test_stop_ends_early_and_cleans_up_with_loopback_candidates(tmp_path: Path) -> None:
    data = {
        "name": "stop",
        "kind": "outgoing",
        "duration": 4.0,
        "participants": [
            {"name": "Ann", "audio": str(ADELE)},
            {"name": "Bob", "audio": str(MEGAN), "join_at": 3.5},
        ],
    }
    prepared = prepare(load_scenario(json_file(tmp_path, data)))
    joined = asyncio.Event()
    ended: list[str] = []
    async with WhipEndpoint() as endpoint, MediaRelay(verify=False, allow_loopback=True) as relay:
        assert loopback_candidates_allowed()
        blob = MediaConfigBlob(endpoint=endpoint.url, token=TOKEN)
        run = await relay.start(
            blob,
            prepared,
            {"Ann": "a", "Bob": "b"},
            on_join=lambda name: joined.set(),
            on_end=lambda: ended.append("end"),
        )
        await joined.wait()
        await endpoint.sources["a"].first_frame.wait()
        await run.stop()
        await run.stop()  # idempotent
        await run.wait()  # returns: a stopped run is not an error
        assert run.done and not run.ended
        assert endpoint.open_resources == 0
        assert sorted(endpoint.posts) == ["a", "main"]  # Bob never connected
    assert ended == []
    assert run.stats()["Ann"].sent >= 1
