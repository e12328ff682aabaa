"""Hostile input on the media path, end to end: a real WHIP session, a legitimate peer streaming a known clip, and
garbage from outside and from inside the encrypted session. The legitimate recording must come out intact.

From outside (no keys): another UDP socket sends datagrams to the bot's ICE ports (its ``127.0.0.1`` host candidates,
read from the SDP answer; the engine offers loopback candidates so that no other address is ever a target): random
bytes, RTP- and RTCP-shaped packets with random fields and lying length fields, STUN binding requests naming the real
ICE usernames but with a wrong MESSAGE-INTEGRITY, DTLS-shaped records, and 64 KB datagrams.

From inside (a peer that holds the session's WHIP bearer, so its packets pass SRTP): random Opus payloads, payload
types that were never negotiated, wildly jumping sequence numbers, empty and oversized payloads, and SRTCP with lying
lengths, all sent with the peer's own SSRC through its DTLS transport.

Defects this test found, each with its own test here: one datagram from anyone used to end the media connection if it
was empty (aiortc 1.16's DTLS receive loop indexes ``data[0]``) or over 1500 bytes and in the SRTP range (pylibsrtp
raises ``ValueError``, which aiortc does not catch): ``mediabot.media.ice.guard_datagrams`` now drops both before
aiortc sees them. One authenticated RTP packet whose timestamp jumped far ahead stretched the whole call's recording
by the jump: the pipeline now re-anchors the stream at its arrival instead. And the inside peer could make the WHIP
DELETE of its own connection hang for good (it failed about one run in four, by when the receiver's next report fell):
more than about 60 SSRCs, or timestamps swinging by 2^32, made a receiver report that could not be sent or built, the
receiver's RTCP task died, and aiortc's close waits for that task forever. ``mediabot.media.rtpguard`` now pins each
connection to one sending source and skips a report that fails, and ``mediabot.media.whip.close_peer`` bounds a
close whatever the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import socket
import struct
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import soxr
from aioice import stun
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket
from aiortc.stats import RTCRemoteInboundRtpStreamStats
from av import AudioFrame
from prometheus_client import CollectorRegistry, generate_latest

from mediabot.media.engine import MediaEngine
from mediabot.media.pipeline import TIMELINE_LEAD
from mediabot.media.receive import payload_codecs
from mediabot.media.session import MediaSession, RosterEntry, SourceConnection
from mediabot.metrics import MediaCollector

from .conftest import (
    RATE,
    PacedTrack,
    answer_and_connect,
    best_lag_correlation,
    serving_whip,
    wav_header_matches,
    whip_options,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "audio"
JUMP_S = 120  # how far ahead the one bad timestamp is
FRAME_16K = 320


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as reader:
        assert reader.getframerate() == 16_000
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def clip_48k() -> npt.NDArray[np.int16]:
    with wave.open(str(FIXTURES / "speech_fox.wav"), "rb") as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    speech = soxr.resample(samples, rate, RATE).astype(np.int16)
    silence = np.zeros(RATE // 2, np.int16)
    return np.concatenate([silence, speech, silence, speech, silence])


def opus_packets(count: int) -> list[bytes]:
    """Valid 20 ms Opus packets (a quiet tone), as a real sender's payloads."""
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    tone = (3000 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.int16)
    payloads: list[bytes] = []
    for index in range(count + 5):
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(tone[(index % 50) * 960 : (index % 50 + 1) * 960].tobytes())
        frame.sample_rate = RATE
        frame.pts = index * 960
        payloads.extend(bytes(packet) for packet in encoder.encode(frame))
    return payloads[:count]


class SilentTrack(MediaStreamTrack):
    """An audio track that never yields a frame: its sender stays quiet, so only crafted packets go out."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._never = asyncio.Event()

    async def recv(self) -> AudioFrame:
        await self._never.wait()
        raise AssertionError("unreachable")


@dataclasses.dataclass
class Peer:
    """A connected WHIP publisher: its peer connection, the bot's answer, the resource, the bot's loopback ports."""

    pc: RTCPeerConnection
    answer: str
    location: str
    ports: list[int]
    bot_ufrag: str
    peer_ufrag: str


@dataclasses.dataclass
class Served:
    engine: MediaEngine
    client: Any
    peers: list[RTCPeerConnection] = dataclasses.field(default_factory=list)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    def engine(base_url: str) -> MediaEngine:
        return MediaEngine(dataclasses.replace(whip_options(base_url, tmp_path), ice_loopback=True))

    async with serving_whip(engine) as (plane, _url, client):
        served = Served(plane, client)
        try:
            yield served
        finally:  # a test that failed half-way leaves its peers open: close them before the engine stops
            for pc in served.peers:
                await pc.close()


async def connect(served: Served, session: MediaSession, source: str, track: MediaStreamTrack) -> Peer:
    pc = RTCPeerConnection()
    served.peers.append(pc)
    pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    response = await served.client.post(
        f"/media/whip/{session.id}",
        params={"source": source},
        content=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {session.token}", "Content-Type": "application/sdp"},
    )
    assert response.status_code == 201, response.text
    answer = response.text
    await answer_and_connect(pc, pc, answer)
    ports = sorted({int(p) for p in re.findall(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", answer)})
    assert ports, "the bot offered no loopback candidate"
    bot_ufrag = re.search(r"a=ice-ufrag:(\S+)", answer)
    peer_ufrag = re.search(r"a=ice-ufrag:(\S+)", pc.localDescription.sdp)
    assert bot_ufrag and peer_ufrag
    return Peer(pc, answer, response.headers["location"], ports, bot_ufrag.group(1), peer_ufrag.group(1))


async def unpublish(served: Served, session: MediaSession, peer: Peer) -> None:
    response = await served.client.delete(peer.location, headers={"Authorization": f"Bearer {session.token}"})
    assert response.status_code in (200, 404)  # 404: the bot already ended it
    await peer.pc.close()


# -- garbage from outside ---------------------------------------------------------------------------------------------


def outside_garbage(rng: np.random.Generator, peer: Peer) -> dict[str, list[bytes]]:
    """Datagrams anyone on the network could send, by kind (bounded counts)."""

    def rand(size: int) -> bytes:
        return rng.bytes(size)

    def rtp() -> bytes:
        first = 0x80 | int(rng.integers(0, 64))  # version 2; padding, extension and CSRC count at random
        header = struct.pack(
            "!BBHII",
            first,
            int(rng.integers(0, 256)),
            *(int(v) for v in rng.integers(0, 2**16, 1)),
            int(rng.integers(0, 2**32)),
            int(rng.integers(0, 2**32)),
        )
        return header + rand(int(rng.integers(0, 1200)))

    def rtcp() -> bytes:
        first = 0x80 | int(rng.integers(0, 32))  # report count at random
        lying_length = int(rng.choice([0, 1, 0xFFFF, int(rng.integers(0, 2**16))]))
        header = struct.pack("!BBHI", first, int(rng.integers(200, 207)), lying_length, int(rng.integers(0, 2**32)))
        return header + rand(int(rng.integers(0, 200)))

    def stun_bad_integrity() -> bytes:
        message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        message.attributes["USERNAME"] = f"{peer.bot_ufrag}:{peer.peer_ufrag}"
        message.attributes["PRIORITY"] = int(rng.integers(1, 2**31))
        message.attributes["ICE-CONTROLLING"] = int(rng.integers(0, 2**63))
        message.attributes["USE-CANDIDATE"] = None
        message.add_message_integrity(rand(22))  # not the bot's ICE password
        message.add_fingerprint()
        return bytes(message)

    def stun_lying_length() -> bytes:
        header = struct.pack("!HHI", 0x0001, int(rng.integers(0, 2**16)), stun.COOKIE) + rand(12)
        return header + rand(int(rng.integers(0, 64)))

    def dtls() -> bytes:
        content_type = int(rng.choice([20, 21, 22, 23, int(rng.integers(20, 64))]))
        version = int(rng.choice([0xFEFD, 0xFEFF, int(rng.integers(0, 2**16))]))
        epoch = int(rng.integers(0, 3))
        lying_length = int(rng.choice([0, 13, 0xFFFF, int(rng.integers(0, 2**14))]))
        header = struct.pack("!BHH", content_type, version, epoch) + rand(6) + struct.pack("!H", lying_length)
        return header + rand(int(rng.integers(0, 300)))

    # 64 KB of DTLS, STUN-range and unclassifiable bytes (the SRTP-range ones have their own test below).
    oversized = [bytes([first]) + rand(65_506) for first in (0x16, 0x17, 0x00, 0x01, 0x40, 0xFF)]
    return {
        "random bytes": [rand(int(rng.integers(1, 1500))) for _ in range(300)],
        "RTP-shaped": [rtp() for _ in range(300)],
        "RTCP-shaped, lying lengths": [rtcp() for _ in range(200)],
        "STUN, wrong integrity": [stun_bad_integrity() for _ in range(60)],
        "STUN, lying length": [stun_lying_length() for _ in range(60)],
        "DTLS-shaped": [dtls() for _ in range(200)],
        "64 KB": oversized * 3,
    }


async def blast(ports: list[int], datagrams: list[bytes]) -> int:
    """Send every datagram to every port on 127.0.0.1, yielding to the loop every 16 KB; how many were sent.

    Paced so that the bot's socket buffers (about 200 KB) never overflow: a flood that fills them drops the legit
    participant's packets in the kernel, which is a denial of service no receiver can undo, not what this tests."""
    sent = 0
    pending = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for datagram in datagrams:
            for port in ports:
                sock.sendto(datagram, ("127.0.0.1", port))
                sent += 1
            pending += len(datagram) + 64
            if pending >= 16_384:
                pending = 0
                await asyncio.sleep(0.005)
    return sent


# -- garbage from inside ----------------------------------------------------------------------------------------------


class Insider:
    """Sends crafted packets through an authenticated peer's own DTLS transport (so they pass the bot's SRTP)."""

    def __init__(self, peer: Peer, rng: np.random.Generator) -> None:
        sender = peer.pc.getSenders()[0]
        self.transport = sender.transport
        self.ssrc: int = sender._ssrc
        codecs = payload_codecs(peer.answer)
        self.opus = next(pt for pt, mime in codecs.items() if mime == "audio/opus")
        self.unknown = [pt for pt in (0, 8, 9, 13, 34, 101, 126, 127) if pt not in codecs]
        self.rng = rng
        self.seq = int(rng.integers(0, 2**16))
        self.ts = int(rng.integers(0, 2**32))
        self.sent = 0

    async def rtp(
        self,
        payload: bytes,
        *,
        pt: int | None = None,
        seq: int | None = None,
        ts: int | None = None,
        ssrc: int | None = None,
    ) -> None:
        self.seq = (self.seq + 1) % 2**16 if seq is None else seq
        self.ts = (self.ts + 960) % 2**32 if ts is None else ts
        packet = RtpPacket(
            payload_type=self.opus if pt is None else pt,
            sequence_number=self.seq,
            timestamp=self.ts,
            ssrc=self.ssrc if ssrc is None else ssrc,
            payload=payload,
        )
        await self.send(packet.serialize())

    async def send(self, data: bytes) -> None:
        await self.transport._send_rtp(data)
        self.sent += 1
        if self.sent % 8 == 0:
            await asyncio.sleep(0.005)

    async def everything_but_time_jumps(self) -> None:
        rng = self.rng
        for _ in range(150):  # random Opus payloads (random TOC bytes: every config, stereo, frame counts)
            await self.rtp(rng.bytes(int(rng.integers(1, 400))))
        for _ in range(60):  # payload types never negotiated
            await self.rtp(rng.bytes(int(rng.integers(1, 200))), pt=int(rng.choice(self.unknown)))
        for _ in range(60):  # sequence numbers leaping ahead (the sender's SRTP refuses to go back; timestamps sane)
            await self.rtp(
                rng.bytes(int(rng.integers(1, 200))), seq=(self.seq + int(rng.integers(100, 30_000))) % 2**16
            )
        for _ in range(60):  # other SSRCs with random sequence numbers, interleaved with the peer's own
            await self.rtp(
                rng.bytes(int(rng.integers(1, 200))), ssrc=int(rng.integers(0, 2**32)), seq=int(rng.integers(0, 2**16))
            )
        for size in [0] * 10 + [1] * 10 + [1200] * 10:  # empty, tiny and oversized payloads
            await self.rtp(rng.bytes(size))
        for _ in range(40):  # SRTCP with lying lengths and counts
            first = 0x80 | int(rng.integers(0, 32))
            length = int(rng.choice([0, 1, 0xFFFF, int(rng.integers(0, 2**16))]))
            body = rng.bytes(int(rng.integers(4, 120)))
            await self.send(struct.pack("!BBHI", first, int(rng.integers(200, 207)), length, self.ssrc) + body)
        # RTP whose padding length claims more than the packet holds.
        lying = bytearray(
            RtpPacket(
                payload_type=self.opus,
                sequence_number=self.seq + 1,
                timestamp=self.ts + 960,
                ssrc=self.ssrc,
                payload=b"\x00\xff",
            ).serialize()
        )
        lying[0] |= 0x20
        lying[-1] = 0xFF
        await self.send(bytes(lying))


def scrape(engine: MediaEngine) -> dict[str, float]:
    """The engine's media metrics as ``/metrics`` renders them: sample line (name and labels) → value."""
    registry = CollectorRegistry()
    registry.register(MediaCollector(lambda: engine))
    lines = generate_latest(registry).decode().splitlines()
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines if not line.startswith("#"))}


# -- the tests --------------------------------------------------------------------------------------------------------


def roster(session: MediaSession) -> None:
    session.roster_changed([RosterEntry("p-legit", "Legit", ("7",)), RosterEntry("p-noise", "Noise", ("9",))])


async def test_garbage_on_the_media_ports_leaves_the_call_intact(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    rng = np.random.default_rng(8)
    engine = served.engine
    session = engine.open_session("call-hostile")
    roster(session)
    signal = clip_48k()
    track = PacedTrack(signal)
    legit = await connect(served, session, "7", track)
    insider_peer = await connect(served, session, "9", SilentTrack())
    insider = Insider(insider_peer, rng)
    legit_connection = next(c for c in session.connections() if c.source_id == "7")

    sent: dict[str, int] = {}
    for kind, datagrams in outside_garbage(rng, legit).items():
        sent[kind] = await blast(legit.ports + insider_peer.ports, datagrams)
    await insider.everything_but_time_jumps()
    # Still connected and still receiving after all of it.
    assert legit.pc.connectionState == "connected" and insider_peer.pc.connectionState == "connected"
    frames = legit_connection.pipeline.stats.frames_in
    async with asyncio.timeout(10):
        while legit_connection.pipeline.stats.frames_in < frames + 10:  # noqa: ASYNC110 - frames arrive by RTP
            await asyncio.sleep(0.05)
    await unpublish(served, session, insider_peer)
    await track.finished.wait()
    await unpublish(served, session, legit)
    await engine.release("call-hostile")
    assert session.closed and session.connections() == []

    folder = engine.options.output_dir / "call-hostile"
    recorded = read_wav(folder / "audio" / "p-legit.wav")
    reference = soxr.resample(signal, RATE, 16_000).astype(np.int16)
    lag, corr = best_lag_correlation(recorded, reference)
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    legit_end = [e for e in events if e["type"] == "source_disconnected" and e["source_id"] == "7"]
    assert corr >= 0.9, (corr, lag, recorded.size, reference.size, legit_end)
    assert lag <= FRAME_16K  # the legit source started the timeline: aligned within one frame
    # Exactly the clip's length on the timeline (the publisher pads its last packet, the recorder its last frame).
    assert reference.size - 2 * FRAME_16K <= recorded.size <= reference.size + TIMELINE_LEAD + 2 * FRAME_16K
    wavs = sorted((folder / "audio").glob("*.wav"))
    assert {w.name for w in wavs} == {"p-legit.wav", "p-noise.wav", "mixed.wav"}
    assert {read_wav(w).size for w in wavs} == {recorded.size}
    assert all(wav_header_matches(w) for w in wavs)
    meta = json.loads((folder / "call.json").read_text())
    assert meta["complete"] is True and "errors" not in meta
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    [noise] = [e for e in events if e["type"] == "source_disconnected" and e["source_id"] == "9"]
    assert noise["rtp"]["packets"] >= 200  # the insider's packets reached the receiver and were dealt with
    assert noise["rtp"]["direct"] > 0 and noise["rtp"]["malformed"] >= 1  # its lying padding, from the socket
    scraped = scrape(engine)
    assert scraped['mediabot_media_packets_dropped_total{reason="malformed"}'] == noise["rtp"]["malformed"]
    assert scraped['mediabot_media_packets_dropped_total{reason="srtp"}'] == sum(
        e["rtp"]["unprotect_failed"] for e in events if e["type"] == "source_disconnected"
    )
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    assert sum(sent.values()) > 2000 and insider.sent > 300


async def _stream_then(served: Served, session: MediaSession) -> tuple[PacedTrack, Peer, Any]:
    track = PacedTrack(clip_48k())
    legit = await connect(served, session, "7", track)
    connection = next(c for c in session.connections() if c.source_id == "7")
    async with asyncio.timeout(10):
        while connection.pipeline.stats.frames_in < 25:  # noqa: ASYNC110 - frames arrive by RTP
            await asyncio.sleep(0.05)
    return track, legit, connection


KILLERS = [
    pytest.param(b"", id="zero-length"),
    pytest.param(b"\x80" + bytes(1500), id="SRTP-range, 1501 bytes"),
]


@pytest.mark.parametrize("datagram", KILLERS)
async def test_one_bad_datagram_from_anyone_does_not_end_the_media(served: Served, datagram: bytes) -> None:
    session = served.engine.open_session("call-empty")
    roster(session)
    _track, legit, connection = await _stream_then(served, session)
    try:
        await blast(legit.ports, [datagram])
        frames = connection.pipeline.stats.frames_in
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while connection.pipeline.stats.frames_in < frames + 25:  # noqa: ASYNC110 - frames arrive by RTP
                    await asyncio.sleep(0.05)
        assert connection.pipeline.stats.frames_in >= frames + 25, "no audio after that one datagram"
    finally:
        await unpublish(served, session, legit)
        await served.engine.release("call-empty")


async def test_a_jumping_rtp_timestamp_does_not_stretch_the_call(served: Served) -> None:
    rng = np.random.default_rng(9)
    session = served.engine.open_session("call-jump")
    roster(session)
    track, legit, _connection = await _stream_then(served, session)
    insider_peer = await connect(served, session, "9", SilentTrack())
    insider = Insider(insider_peer, rng)
    packets = opus_packets(80)
    for payload in packets[:60]:  # past the pipeline's first second, in which the anchor is still refined
        await insider.rtp(payload)
    await insider.rtp(packets[60], ts=(insider.ts + JUMP_S * 48_000) % 2**32)  # far ahead, once
    for payload in packets[61:]:
        await insider.rtp(payload)
    await unpublish(served, session, insider_peer)
    await track.finished.wait()
    await unpublish(served, session, legit)
    await served.engine.release("call-jump")
    recorded = read_wav(served.engine.options.output_dir / "call-jump" / "audio" / "p-legit.wav")
    expected = clip_48k().size // 3
    assert recorded.size <= expected + TIMELINE_LEAD + 2 * FRAME_16K, f"{recorded.size / 16_000:.0f} s recorded"


async def test_a_publisher_that_never_connects_can_be_deleted(served: Served) -> None:
    session = served.engine.open_session("call-ghost")
    pc = RTCPeerConnection()
    pc.addTransceiver(SilentTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    response = await served.client.post(
        f"/media/whip/{session.id}",
        params={"source": "7"},
        content=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {session.token}", "Content-Type": "application/sdp"},
    )
    assert response.status_code == 201
    await pc.close()  # the publisher is gone before ICE completed (a crash, UDP blocked on its side)
    # A guard against a hang, not a timing: the DELETE and the call's end both come back.
    async with asyncio.timeout(30):
        deleted = await served.client.delete(
            response.headers["location"], headers={"Authorization": f"Bearer {session.token}"}
        )
        assert deleted.status_code in (200, 404)
        await served.engine.release("call-ghost")
    assert session.closed


async def next_receiver_report(peer: Peer) -> None:
    """Wait for the bot's next RTCP receiver report about the peer's stream (as the peer's sender records it)."""

    async def last() -> object:
        stats = await peer.pc.getSenders()[0].getStats()
        return next((s.timestamp for s in stats.values() if isinstance(s, RTCRemoteInboundRtpStreamStats)), None)

    before = await last()
    async with asyncio.timeout(10):  # reports come every 0.5-1.5 s: a guard against none, not a timing
        while await last() == before:  # noqa: ASYNC110 - reports come on aiortc's schedule
            await asyncio.sleep(0.1)


@dataclasses.dataclass
class Pair:
    """A session with a legitimate source streaming the clip ("7") and an inside peer that sends only crafted
    packets ("9"), with their bot-side connections."""

    session: MediaSession
    track: PacedTrack
    legit: Peer
    legit_connection: SourceConnection
    peer: Peer
    insider: Insider
    connection: SourceConnection


async def legit_and_insider(served: Served, call: str, seed: int) -> Pair:
    session = served.engine.open_session(call)
    roster(session)
    track, legit, legit_connection = await _stream_then(served, session)
    peer = await connect(served, session, "9", SilentTrack())
    connection = next(c for c in session.connections() if c.source_id == "9")
    return Pair(session, track, legit, legit_connection, peer, Insider(peer, np.random.default_rng(seed)), connection)


def source_end(served: Served, call: str, source: str) -> dict[str, Any]:
    """The ``source_disconnected`` event of one source of a finished call."""
    events = (served.engine.options.output_dir / call / "events.jsonl").read_text().splitlines()
    [end] = [e for e in map(json.loads, events) if e["type"] == "source_disconnected" and e["source_id"] == source]
    return end


async def test_a_flood_of_ssrcs_from_the_peer_is_dropped_and_its_reports_go_on(served: Served) -> None:
    pair = await legit_and_insider(served, "call-ssrcs", 10)
    insider, guard = pair.insider, pair.connection.guard
    for payload in opus_packets(20):  # the peer's own stream, which the bot reports on
        await insider.rtp(payload)
    await next_receiver_report(pair.peer)
    # Each new SSRC used to add a report block to every receiver report, for good: past about 60 the report no
    # longer fitted a packet, the receiver's RTCP task died, and closing the connection waited for it forever.
    foreign = {int(s) for s in insider.rng.integers(0, 2**32, 200)} - {insider.ssrc}
    for ssrc in foreign:
        await insider.rtp(opus_packets(1)[0], ssrc=ssrc, seq=int(insider.rng.integers(0, 2**16)))
    await next_receiver_report(pair.peer)
    await next_receiver_report(pair.peer)
    assert guard is not None and guard.ssrcs == {insider.ssrc} and guard.foreign == len(foreign)
    async with asyncio.timeout(30):  # a guard against the hang this test is about, not a timing
        await unpublish(served, pair.session, pair.peer)
    await pair.track.finished.wait()
    await unpublish(served, pair.session, pair.legit)
    await served.engine.release("call-ssrcs")
    noise = source_end(served, "call-ssrcs", "9")
    assert noise["rtp"]["foreign_ssrc"] == len(foreign) and noise["reason"] == "deleted"
    # /metrics counts them too, once the connection is gone.
    scraped = scrape(served.engine)
    assert scraped['mediabot_media_packets_dropped_total{reason="foreign_ssrc"}'] == len(foreign)


async def test_a_report_field_the_peer_overflows_does_not_stall_the_close(served: Served) -> None:
    pair = await legit_and_insider(served, "call-jitter", 11)
    guard = pair.connection.guard
    assert guard is not None
    # aiortc's interarrival jitter subtracts raw 32-bit timestamps: swinging between 2^32 - 1 and 0, each swing to 0
    # after a pause, pushes it past the report's 32-bit field, and building the report raised inside its RTCP task.
    payload = opus_packets(1)[0]
    for index in range(300):
        if index % 2:
            await asyncio.sleep(0.02)
        await pair.insider.rtp(payload, ts=0 if index % 2 else 2**32 - 1)
    async with asyncio.timeout(10):  # the next report is due within 1.5 s: a guard, not a timing
        while guard.rtcp_unsent == 0:  # noqa: ASYNC110 - reports are built on aiortc's schedule
            await asyncio.sleep(0.1)
    frames = pair.legit_connection.pipeline.stats.frames_in
    async with asyncio.timeout(30):  # a guard against the hang this test is about, not a timing
        await unpublish(served, pair.session, pair.peer)
    await pair.track.finished.wait()
    assert pair.legit_connection.pipeline.stats.frames_in > frames  # the other source kept streaming meanwhile
    await unpublish(served, pair.session, pair.legit)
    await served.engine.release("call-jitter")
    noise = source_end(served, "call-jitter", "9")
    assert noise["rtp"]["rtcp_unsent"] >= 1 and noise["reason"] == "deleted"


async def test_what_a_publisher_sent_just_before_its_delete_is_kept(served: Served) -> None:
    session = served.engine.open_session("call-tail")
    roster(session)
    peer = await connect(served, session, "9", SilentTrack())
    insider = Insider(peer, np.random.default_rng(12))
    burst = opus_packets(100)
    for payload in burst:  # sent without yielding to the loop: all in the bot's socket buffer before the DELETE
        insider.seq, insider.ts = (insider.seq + 1) % 2**16, (insider.ts + 960) % 2**32
        packet = RtpPacket(
            payload_type=insider.opus,
            sequence_number=insider.seq,
            timestamp=insider.ts,
            ssrc=insider.ssrc,
            payload=payload,
        )
        await insider.transport._send_rtp(packet.serialize())
    # The bot reads one datagram per loop turn: without the drain, its DELETE handler closed the connection long
    # before the last of these were read.
    await unpublish(served, session, peer)
    await served.engine.release("call-tail")
    end = source_end(served, "call-tail", "9")
    assert end["rtp"]["packets"] == len(burst) and end["frames_in"] == len(burst)
