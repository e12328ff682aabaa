"""A WHIP endpoint served for real (uvicorn on loopback, in the test's loop) and a plain aiortc WHIP publisher."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame
from fastapi import FastAPI

from mediabot.media.engine import MediaEngine
from mediabot.media.ice import allow_loopback_candidates
from mediabot.media.rtpguard import ReceiverGuard, guard_receiver
from mediabot.media.session import MediaOptions
from mediabot.media.whip import answer_offer, check_offer
from mediabot.service.routes import whip
from mediabot.store.layout import wav_info

RATE = 48_000
FRAME = 960


class PacedTrack(MediaStreamTrack):
    """Plays a mono 48 kHz int16 signal in real time, then ends."""

    kind = "audio"

    def __init__(self, signal: npt.NDArray[np.int16]) -> None:
        super().__init__()
        self.signal = signal
        self.index = 0
        self.start: float | None = None
        self.finished = asyncio.Event()

    async def recv(self) -> AudioFrame:
        if self.start is None:
            self.start = time.monotonic()
        if self.index * FRAME >= self.signal.size:
            self.finished.set()
            raise MediaStreamError
        due = self.start + self.index * 0.02
        if (delay := due - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        chunk = np.zeros(FRAME, np.int16)
        part = self.signal[self.index * FRAME : (self.index + 1) * FRAME]
        chunk[: part.size] = part
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk.tobytes())
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        frame.pts = self.index * FRAME
        self.index += 1
        return frame


@dataclass
class Publisher:
    """One WHIP client connection."""

    pc: RTCPeerConnection
    location: str
    received: list[npt.NDArray[np.int16]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def heard(self) -> npt.NDArray[np.int16]:
        return np.concatenate(self.received) if self.received else np.zeros(0, np.int16)


async def offer_for(
    signal: npt.NDArray[np.int16] | None, *, codec: str | None = None, receive: bool = False
) -> tuple[RTCPeerConnection, PacedTrack | None]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = PacedTrack(signal) if signal is not None else None
    direction = "sendrecv" if (track and receive) else ("sendonly" if track else "recvonly")
    transceiver = pc.addTransceiver(track or "audio", direction=direction)
    if codec is not None:
        capabilities = RTCRtpSender.getCapabilities("audio")
        assert capabilities is not None
        transceiver.setCodecPreferences([c for c in capabilities.codecs if c.mimeType == codec])
    await pc.setLocalDescription(await pc.createOffer())
    return pc, track


async def _keep(track: MediaStreamTrack, into: list[npt.NDArray[np.int16]]) -> None:
    with contextlib.suppress(MediaStreamError):
        while True:
            frame = await track.recv()
            channels = len(frame.layout.channels)
            data = frame.to_ndarray().reshape(-1, channels)
            into.append(data.mean(axis=1).astype(np.int16))


@dataclass
class WhipServer:
    """The engine behind a real HTTP server; helpers to publish to it."""

    engine: MediaEngine
    base_url: str
    client: httpx.AsyncClient

    async def publish(
        self,
        endpoint: str,
        token: str,
        source: str,
        signal: npt.NDArray[np.int16] | None,
        *,
        codec: str | None = None,
        receive: bool = False,
    ) -> tuple[Publisher, PacedTrack | None]:
        pc, track = await offer_for(signal, codec=codec, receive=receive)
        response = await self.client.post(
            endpoint,
            params={"source": source},
            content=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
        assert response.status_code == 201, response.text
        assert response.headers["content-type"].startswith("application/sdp")
        publisher = Publisher(pc=pc, location=response.headers["location"])
        if receive or signal is None:

            @pc.on("track")
            def _track(remote: MediaStreamTrack) -> None:
                publisher.reader = asyncio.get_running_loop().create_task(_keep(remote, publisher.received))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
        return publisher, track

    async def unpublish(self, publisher: Publisher, token: str) -> None:
        response = await self.client.delete(publisher.location, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        await publisher.pc.close()
        if publisher.reader is not None:
            await publisher.reader


class _Plane(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


P = TypeVar("P", bound=_Plane)


@contextlib.asynccontextmanager
async def serving_whip(make_plane: Callable[[str], P]) -> AsyncIterator[tuple[P, str, httpx.AsyncClient]]:
    """A media plane (made for its base URL, then started) behind the WHIP route on a real loopback port, with a
    client; the plane is stopped and the server shut down afterwards."""
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    plane = make_plane(base_url)
    await plane.start()
    app = FastAPI()
    app.include_router(whip.router)
    app.state.media = plane
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for "listening"
        await asyncio.sleep(0.01)
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client:
        try:
            yield plane, base_url, client
        finally:
            await plane.stop()
            server.should_exit = True
            await serving
            sock.close()


def whip_options(base_url: str, folder: Path) -> MediaOptions:
    """The tests' media options: outputs under ``folder``, small SDP limit, prompts from ``folder/prompts``."""
    return MediaOptions(
        public_url=base_url, output_dir=folder / "out", max_sdp_bytes=20_000, prompt_dir=folder / "prompts"
    )


@pytest.fixture
async def whip_server(tmp_path: Path) -> AsyncIterator[WhipServer]:
    async with serving_whip(lambda base_url: MediaEngine(whip_options(base_url, tmp_path))) as (engine, url, client):
        yield WhipServer(engine=engine, base_url=url, client=client)


def wav_header_matches(path: Path) -> bool:
    """The RIFF and data sizes in the header are exactly what the file holds, in whole 16 kHz mono samples."""
    size = path.stat().st_size
    info = wav_info(path)
    with path.open("rb") as file:
        head = file.read(info.data_offset)
    riff_size = struct.unpack_from("<I", head, 4)[0]
    data_size = struct.unpack_from("<I", head, info.data_offset - 4)[0]
    return (
        head[:4] == b"RIFF"
        and info.is_recording
        and riff_size == size - 8
        and data_size == size - info.data_offset
        and data_size % 2 == 0
    )


@dataclass
class AnsweredPair:
    """A publisher and the bot's answering peer connection, connected over loopback, with the bot's receiver guard."""

    publisher: RTCPeerConnection
    bot: RTCPeerConnection
    audio: RTCRtpTransceiver
    guard: ReceiverGuard | None


async def connected_pair(*, declare_ssrc: bool = True) -> AnsweredPair:
    """Connect a sendonly publisher to :func:`answer_offer` over loopback, the bot's receiver guarded as the engine
    does it; ``declare_ssrc=False`` strips the offer's ``a=ssrc`` lines (an unsignaled sender)."""
    allow_loopback_candidates()
    publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    publisher.addTransceiver("audio", direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    offer = publisher.localDescription.sdp
    if not declare_ssrc:
        offer = "".join(line for line in offer.splitlines(keepends=True) if not line.startswith("a=ssrc"))
    bot, audio, answer = await answer_offer(offer)
    guard = guard_receiver(audio.receiver, check_offer(offer.encode(), len(offer))[1].ssrcs)
    await answer_and_connect(bot, publisher, answer)
    return AnsweredPair(publisher, bot, audio, guard)


async def answer_and_connect(watched: RTCPeerConnection, publisher: RTCPeerConnection, answer: str) -> None:
    """Give ``publisher`` the bot's answer and wait until ``watched`` (either side) is connected."""
    connected = asyncio.Event()

    @watched.on("connectionstatechange")
    def _changed() -> None:
        if watched.connectionState == "connected":
            connected.set()

    await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    async with asyncio.timeout(20):  # a guard against no connection, not a timing
        await connected.wait()


def best_lag_correlation(recorded: npt.NDArray[np.int16], reference: npt.NDArray[np.int16]) -> tuple[int, float]:
    """The lag (samples) at which ``reference`` best matches ``recorded``, and the normalised correlation there."""
    a = recorded.astype(np.float64)
    b = reference.astype(np.float64)
    size = 1 << int(np.ceil(np.log2(a.size + b.size)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)[: a.size]
    lag = int(np.argmax(xc))
    window = a[lag : lag + b.size]
    return lag, float(np.dot(window, b[: window.size]) / (np.linalg.norm(window) * np.linalg.norm(b) + 1e-9))
