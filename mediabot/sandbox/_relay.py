"""``MediaRelay``: plays a prepared scenario's participants into a bot over WHIP, and hears the bot on ``main``.

For one call, :meth:`MediaRelay.start` takes the bot's :class:`~mediabot.media.blob.MediaConfigBlob`, a
:class:`~mediabot.sandbox._scenario.PreparedScenario` and the participants' ``sourceId``s, and returns a running
:class:`RelayRun`:

- **Sessions.** Each WHIP session is an aiortc peer connection with one Opus audio transceiver: the offer is POSTed
  to ``blob.endpoint?source=<sourceId>`` with the blob's bearer (``201`` + ``Location`` + answer SDP expected;
  anything else is a :class:`RelayError` with the status and body), and ended with ``DELETE <Location>``. With
  ``receive: unmixed`` every participant has a ``sendonly`` session, and ``source=main`` is ``recvonly``: the relay
  hears the bot's audio (prompts). With ``receive: mixed`` there is only ``main``, ``sendrecv``, carrying the
  scenario's mix. ``blob.send`` is not consulted: a bot that sends nothing leaves :meth:`RelayRun.received_main` empty.
- **Clock.** Every stream is paced on one scenario clock ``t0`` (monotonic), set once the sessions present at the
  start (join within :data:`CONNECT_AHEAD_S`) and ``main`` are connected (ICE and DTLS up), so no audio is lost to
  setup; a late joiner connects :data:`CONNECT_AHEAD_S` before its ``join_at`` (its track sends nothing before).
  Packet ``k`` of a participant is due at ``t0 + join_at + k·0.02`` and carries ``pts = round(join_at·48000) + k·960``
  (time base 1/48000): pre-encoded packets that aiortc packs without re-encoding. A session that connects late
  (setup slower than the lead) sends its overdue packets at once.
- **What the wire shows.** aiortc starts each sender's RTP timestamps at a random origin (as RFC 3550 asks), so
  the scenario axis is visible as timestamp *differences* within a stream (aiortc's receiver even rebases them to its
  first packet); a bot places a stream on its call timeline by its first arrival, as it would with Teams.
- **Loss** drops a packet from the track: the receiver sees a 20 ms timestamp gap, but the RTP sequence number does
  *not* skip, because aiortc numbers packets when it sends them. A receiver's loss statistics therefore show no
  loss; the relay counts what it dropped (:attr:`StreamStats.dropped`).
- **Jitter** releases each packet up to ``jitter_ms`` late (uniform), never out of order. Loss and jitter come from
  the prepared, seeded schedule, so a run is reproducible.
- **End.** ``on_join(name)`` fires at ``join_at``; at ``leave_at`` ``on_leave(name)`` fires and the session is DELETEd
  (after its last packet when jitter holds that one back). At ``duration`` every remaining session is DELETEd and
  closed, then ``on_end()`` fires. :meth:`RelayRun.stop` ends a run early (no more callbacks) and cleans up.

Callbacks are plain callables run on the event loop; an exception in one is logged and the run goes on. A late
joiner whose session fails is logged and recorded in its :attr:`StreamStats.error`; the others play on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, Packet

from mediabot._errors import MediaError
from mediabot.media.blob import MediaConfigBlob
from mediabot.media.ice import allow_loopback_candidates, guard_datagrams
from mediabot.media.whip import close_peer

from ._scenario import PACKET_S, PACKET_SAMPLES, SCENARIO_RATE, TIME_BASE, PreparedParticipant, PreparedScenario

__all__ = [
    "CONNECT_AHEAD_S",
    "MAIN_SOURCE",
    "MediaRelay",
    "PacedPacketTrack",
    "RelayError",
    "RelayRun",
    "ScenarioClock",
    "StreamStats",
]

logger = logging.getLogger(__name__)

MAIN_SOURCE = "main"
CONNECT_AHEAD_S = 1.0
CONNECT_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 10.0
KEEPALIVE_EXPIRY_S = 2.0
HANDOVER_WAITS = 50  # packet times a late loop gets to hand its last packets over before the DELETE (1 s)
MAX_FILLED_GAP = 60 * SCENARIO_RATE
MAIN_CHUNK = 10 * SCENARIO_RATE
AUDIBLE_PEAK = 100
"""A main frame with a sample beyond this (about -50 dBFS) counts as audio, not silence."""

Callback = Callable[[str], object]


class RelayError(MediaError):
    """A WHIP session of the relay failed: refused (``status`` and ``body`` of the answer), unreachable, or no ICE."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class StreamStats:
    """One WHIP session's counters: packets of its presence, sent, dropped by the loss schedule, frames heard."""

    name: str
    source: str
    location: str | None
    packets: int
    sent: int
    dropped: int
    received_frames: int = 0
    error: str | None = None


class ScenarioClock:
    """The scenario's shared origin ``t0`` (monotonic seconds): tracks wait for it before their first packet."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self._started = asyncio.Event()

    def start(self, t0: float) -> None:
        """Fix ``t0`` and release the waiting tracks."""
        self.t0 = t0
        self._started.set()

    async def origin(self) -> float:
        """``t0``, once started."""
        while self.t0 is None:
            await self._started.wait()
        return self.t0


class PacedPacketTrack(MediaStreamTrack):
    """An audio track of pre-encoded Opus packets, each returned at its due time on the scenario clock.

    ``kept`` are the packet indices to send (the others are lost) and ``release_s`` when each is due, in seconds
    after ``start_s`` on the clock; packet ``k`` has ``pts = first_pts + k·960``. After the last packet ``recv``
    waits until the track stops.
    """

    kind = "audio"

    def __init__(
        self,
        packets: Sequence[bytes],
        *,
        first_pts: int,
        kept: npt.NDArray[np.int64],
        release_s: npt.NDArray[np.float64],
        start_s: float,
        clock: ScenarioClock,
    ) -> None:
        super().__init__()
        self._packets = packets
        self._first_pts = first_pts
        self._kept = kept
        self._release = release_s
        self._start_s = start_s
        self._clock = clock
        self._ended = asyncio.Event()
        self.sent = 0
        self.dropped = 0

    @classmethod
    def for_participant(cls, participant: PreparedParticipant, clock: ScenarioClock) -> PacedPacketTrack:
        """The track of a prepared participant, on its loss and jitter schedule."""
        return cls(
            participant.packets,
            first_pts=participant.first_pts,
            kept=participant.kept,
            release_s=participant.release_s,
            start_s=participant.join_at,
            clock=clock,
        )

    @property
    def all_sent(self) -> bool:
        """Whether every kept packet has been handed to the sender."""
        return self.sent >= self._kept.size

    @property
    def last_release_s(self) -> float:
        """When the last packet is due (scenario seconds), or the start when none is sent."""
        return self._start_s + (self._release.item(-1) if self._release.size else 0.0)

    def stop(self) -> None:
        """End the track: a waiting ``recv`` raises :class:`MediaStreamError`."""
        self._ended.set()
        super().stop()

    async def recv(self) -> Packet[Any]:
        """The next kept packet, once it is due."""
        index = self.sent
        if index >= self._kept.size:
            self.dropped = len(self._packets) - self.sent
            await self._ended.wait()
            raise MediaStreamError
        t0 = self._clock.t0 if self._clock.t0 is not None else await self._clock.origin()
        delay = t0 + self._start_s + self._release.item(index) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self.readyState != "live":
            raise MediaStreamError
        k = self._kept.item(index)
        packet = Packet(self._packets[k])
        packet.pts = self._first_pts + k * PACKET_SAMPLES
        packet.time_base = TIME_BASE
        self.sent = index + 1
        self.dropped = k - index
        return packet


class _MainRecording:
    """The bot's audio on ``main``: 48 kHz mono int16, in arrival order, timestamp gaps filled with silence."""

    def __init__(self, capacity: int) -> None:
        self._buffer = np.zeros(capacity, np.int16)
        self._size = 0
        self._next_pts: int | None = None
        self.frames = 0
        self.first_audio: float | None = None

    def add(self, frame: AudioFrame, now: float) -> None:
        channels = len(frame.layout.channels)
        count = frame.samples
        samples = np.frombuffer(memoryview(frame.planes[0]), np.int16, count * channels)[::channels]
        if frame.pts is not None and self._next_pts is not None:
            gap = frame.pts - self._next_pts
            if 0 < gap <= MAX_FILLED_GAP:
                self._reserve(gap)
                self._buffer[self._size : self._size + gap] = 0
                self._size += gap
        self._reserve(count)
        self._buffer[self._size : self._size + count] = samples
        self._size += count
        self._next_pts = None if frame.pts is None else frame.pts + count
        self.frames += 1
        if self.first_audio is None and (samples.max() > AUDIBLE_PEAK or samples.min() < -AUDIBLE_PEAK):
            self.first_audio = now

    def _reserve(self, extra: int) -> None:
        needed = self._size + extra
        if needed > self._buffer.size:
            grown = np.zeros(max(needed, self._buffer.size + MAIN_CHUNK), np.int16)
            grown[: self._size] = self._buffer[: self._size]
            self._buffer = grown

    def samples(self) -> npt.NDArray[np.int16]:
        return self._buffer[: self._size].copy()


@dataclass(eq=False)
class _Session:
    """One WHIP session: its peer connection, what it sends, where it lives, and its one-time teardown."""

    name: str
    source: str
    pc: RTCPeerConnection
    track: PacedPacketTrack | None
    location: str | None = None
    reader: asyncio.Task[None] | None = None
    finishing: asyncio.Future[None] | None = None


class MediaRelay:
    """Publishes scenario participants to bots' WHIP endpoints; one relay serves any number of concurrent runs.

    ``verify`` is httpx's (an :class:`ssl.SSLContext`, a CA bundle path, or a bool); the environment's proxies are
    ignored. ``allow_loopback`` adds ``127.0.0.1`` ICE candidates process-wide (hosts with only loopback).
    ``transport`` replaces the HTTP transport (tests).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        allow_loopback: bool = False,
        connect_ahead_s: float = CONNECT_AHEAD_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if allow_loopback:
            allow_loopback_candidates()
        guard_datagrams()  # the relay's peers are as exposed to stray datagrams as the bot's
        if isinstance(verify, str):
            verify = (
                ssl.create_default_context(capath=verify)
                if os.path.isdir(verify)
                else ssl.create_default_context(cafile=verify)
            )
        # Idle connections are dropped before a server's keep-alive timeout could close them under a request
        # (uvicorn's and httpx's defaults are both 5 s: a POST on a connection the server just closed fails).
        limits = httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S)
        self._client = httpx.AsyncClient(
            verify=verify, trust_env=False, timeout=HTTP_TIMEOUT_S, limits=limits, transport=transport
        )
        self._connect_ahead_s = connect_ahead_s
        self._connect_timeout_s = connect_timeout_s
        self._runs: set[RelayRun] = set()

    async def __aenter__(self) -> MediaRelay:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(
        self,
        blob: MediaConfigBlob,
        prepared: PreparedScenario,
        sources: Mapping[str, str],
        *,
        on_join: Callback | None = None,
        on_leave: Callback | None = None,
        on_end: Callable[[], object] | None = None,
        t0: float | None = None,
    ) -> RelayRun:
        """Connect the sessions present at the start and ``main``, start the clock, and return the running run.

        ``sources`` maps each participant's name to its ``sourceId`` (needed for unmixed media). ``t0`` (monotonic
        seconds) fixes the scenario clock instead of "now, once connected". Raises :class:`RelayError` when a session
        cannot be set up (everything opened so far is closed again).
        """
        run = RelayRun(
            self._client,
            blob,
            prepared,
            dict(sources),
            on_join=on_join,
            on_leave=on_leave,
            on_end=on_end,
            connect_ahead_s=self._connect_ahead_s,
            connect_timeout_s=self._connect_timeout_s,
        )
        await run._open(t0)
        self._runs.add(run)
        run._on_done(self._runs.discard)
        return run

    async def aclose(self) -> None:
        """Stop every run and close the HTTP client."""
        await asyncio.gather(*(run.stop() for run in list(self._runs)))
        await self._client.aclose()


class RelayRun:
    """One scenario playing into one call: its clock ``t0``, stream counters, the bot's audio; ``wait``/``stop``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        blob: MediaConfigBlob,
        prepared: PreparedScenario,
        sources: dict[str, str],
        *,
        on_join: Callback | None,
        on_leave: Callback | None,
        on_end: Callable[[], object] | None,
        connect_ahead_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.blob = blob
        self.prepared = prepared
        self.mode: Literal["unmixed", "mixed"] = blob.receive
        self._client = client
        self._sources = sources
        self._on_join = on_join
        self._on_leave = on_leave
        self._on_end = on_end
        self._connect_ahead_s = connect_ahead_s
        self._connect_timeout_s = connect_timeout_s
        self._clock = ScenarioClock()
        self._sessions: list[_Session] = []
        self._by_name: dict[str, _Session] = {}
        self._errors: dict[str, str] = {}
        self._main: _Session | None = None
        self._recording = _MainRecording(min(MAIN_CHUNK, round(prepared.duration * SCENARIO_RATE)))
        self._runner: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self.ended = False
        """True once the run reached ``duration`` (not when stopped early)."""

    # -- what a run tells -------------------------------------------------------------------------------------------
    @property
    def t0(self) -> float:
        """The scenario clock's origin (``time.monotonic()`` seconds): call time 0."""
        if self._clock.t0 is None:
            raise RuntimeError("the run has not started")
        return self._clock.t0

    @property
    def done(self) -> bool:
        """Whether the run is over (ended, stopped, or failed)."""
        return self._runner is not None and self._runner.done()

    def stats(self) -> dict[str, StreamStats]:
        """Each participant's counters, by name (no session, sent 0, under mixed media)."""
        result = {}
        for participant in self.prepared.participants:
            session = self._by_name.get(participant.name)
            track = session.track if session is not None else None
            result[participant.name] = StreamStats(
                name=participant.name,
                source=self._sources.get(participant.name, ""),
                location=session.location if session is not None else None,
                packets=len(participant.packets),
                sent=track.sent if track is not None else 0,
                dropped=track.dropped if track is not None else 0,
                error=self._errors.get(participant.name),
            )
        return result

    @property
    def main(self) -> StreamStats:
        """The ``main`` session's counters (it sends the mix under mixed media) and frames heard from the bot."""
        session = self._main
        track = session.track if session is not None else None
        return StreamStats(
            name=MAIN_SOURCE,
            source=MAIN_SOURCE,
            location=session.location if session is not None else None,
            packets=len(self.prepared.mixed.packets) if self.mode == "mixed" and self.prepared.mixed else 0,
            sent=track.sent if track is not None else 0,
            dropped=track.dropped if track is not None else 0,
            received_frames=self._recording.frames,
        )

    def received_main(self) -> npt.NDArray[np.int16]:
        """The bot's audio heard on ``main`` so far (48 kHz mono int16, from its first frame; gaps are silence)."""
        return self._recording.samples()

    @property
    def main_audio_at(self) -> float | None:
        """When the bot's first audible frame arrived on ``main``, in scenario seconds (``None``: not yet)."""
        first = self._recording.first_audio
        return None if first is None or self._clock.t0 is None else first - self._clock.t0

    # -- control ----------------------------------------------------------------------------------------------------
    async def wait(self) -> None:
        """Until the run is over; raises what made it fail (not :class:`asyncio.CancelledError` after ``stop``)."""
        if self._runner is None:
            return
        await asyncio.wait([self._runner])
        error = None if self._runner.cancelled() else self._runner.exception()
        if error is not None:
            raise error

    async def stop(self) -> None:
        """End the run now (idempotent): every session is DELETEd and closed; no more callbacks."""
        if self._runner is not None:
            if not self._runner.done():
                self._runner.cancel()
            await asyncio.wait([self._runner])
        await self._close()

    def _on_done(self, callback: Callable[[RelayRun], object]) -> None:
        assert self._runner is not None
        self._runner.add_done_callback(lambda _: callback(self))

    # -- the run ----------------------------------------------------------------------------------------------------
    async def _open(self, t0: float | None) -> None:
        prepared = self.prepared
        if self.mode == "mixed" and prepared.mixed is None:
            raise RelayError("the bot asked for mixed audio; prepare the scenario with media='mixed'")
        if self.mode == "unmixed":
            missing = [p.name for p in prepared.participants if p.name not in self._sources]
            if missing:
                raise RelayError(f"no sourceId for {', '.join(map(repr, missing))}")
        early = (
            [p for p in prepared.participants if p.join_at <= self._connect_ahead_s] if self.mode == "unmixed" else []
        )
        try:
            results = await asyncio.gather(
                self._connect_main(), *(self._connect_participant(p) for p in early), return_exceptions=True
            )
            failures = [result for result in results if isinstance(result, BaseException)]
            if failures:
                raise failures[0]
        except BaseException:
            await self._close()
            raise
        self._clock.start(time.monotonic() if t0 is None else t0)
        logger.info(
            "relay: %r playing into %s (%s, %d participants)",
            prepared.scenario.name,
            self.blob.endpoint,
            self.mode,
            len(prepared.participants),
        )
        self._runner = asyncio.create_task(self._run(), name=f"relay {prepared.scenario.name}")
        self._runner.add_done_callback(_log_failure)

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for participant in self.prepared.participants:
                    group.create_task(self._play(participant))
                group.create_task(self._play_main())
        finally:
            await self._close()
        self.ended = True
        if self._on_end is not None:
            _call(self._on_end)

    async def _play(self, participant: PreparedParticipant) -> None:
        session = self._by_name.get(participant.name)
        if session is None and self.mode == "unmixed":
            await self._sleep_until(participant.join_at - self._connect_ahead_s)
            try:
                session = await self._connect_participant(participant)
            except RelayError as exc:
                logger.warning("relay: %s could not join: %s", participant.name, exc)
                self._errors[participant.name] = str(exc)
        await self._sleep_until(participant.join_at)
        if self._on_join is not None:
            _call(self._on_join, participant.name)
        await self._sleep_until(participant.end_s)
        if participant.leave_at is not None and self._on_leave is not None:
            _call(self._on_leave, participant.name)
        if session is not None:
            await self._finish_after_last_packet(session)

    async def _play_main(self) -> None:
        await self._sleep_until(self.prepared.duration)
        if self._main is not None:
            await self._finish_after_last_packet(self._main)

    async def _finish_after_last_packet(self, session: _Session) -> None:
        if session.track is not None:
            # Jitter may hold the last packet back past the end; it goes out before the session ends.
            await self._sleep_until(session.track.last_release_s + PACKET_S)
            # A loop that ran late has not handed the last packets to the sender yet: they go out first.
            for _ in range(HANDOVER_WAITS):
                if session.track.all_sent:
                    break
                await asyncio.sleep(PACKET_S)
        await asyncio.shield(self._finish(session))

    async def _sleep_until(self, scenario_s: float) -> None:
        delay = self.t0 + scenario_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- sessions ---------------------------------------------------------------------------------------------------
    async def _connect_main(self) -> None:
        track = None
        mixed = self.prepared.mixed
        if self.mode == "mixed" and mixed is not None:
            count = len(mixed.packets)
            track = PacedPacketTrack(
                mixed.packets,
                first_pts=0,
                kept=np.arange(count, dtype=np.int64),
                release_s=np.arange(count, dtype=np.float64) * PACKET_S,
                start_s=0.0,
                clock=self._clock,
            )
        self._main = await self._connect(MAIN_SOURCE, MAIN_SOURCE, track, "sendrecv" if track else "recvonly")

    async def _connect_participant(self, participant: PreparedParticipant) -> _Session:
        track = PacedPacketTrack.for_participant(participant, self._clock)
        session = await self._connect(participant.name, self._sources[participant.name], track, "sendonly")
        self._by_name[participant.name] = session
        return session

    async def _connect(self, name: str, source: str, track: PacedPacketTrack | None, direction: str) -> _Session:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session = _Session(name=name, source=source, pc=pc, track=track)
        self._sessions.append(session)
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def state_changed() -> None:
            if connected.done():
                return
            if pc.connectionState == "connected":
                connected.set_result(None)
            elif pc.connectionState in ("failed", "closed"):
                connected.set_exception(RelayError(f"WHIP session {source!r}: the connection {pc.connectionState}"))

        def track_arrived(remote: MediaStreamTrack) -> None:
            if remote.kind == "audio" and session.reader is None:
                session.reader = asyncio.create_task(self._hear(remote), name=f"relay main {source}")

        pc.on("connectionstatechange", state_changed)
        if direction != "sendonly":
            pc.on("track", track_arrived)
        try:
            transceiver = pc.addTransceiver(track if track is not None else "audio", direction=direction)
            transceiver.setCodecPreferences(_opus())
            await pc.setLocalDescription(await pc.createOffer())
            answer = await self._post(source, pc.localDescription.sdp)
            session.location = answer[0]
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=answer[1], type="answer"))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise RelayError(f"WHIP session {source!r}: the answer SDP was refused: {exc}") from exc
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    await connected
            except TimeoutError:
                raise RelayError(
                    f"WHIP session {source!r}: ICE/DTLS did not connect within {self._connect_timeout_s:g} s"
                ) from None
        except BaseException:
            connected.cancel()  # a failure reported by closing the connection is not news
            await asyncio.shield(self._finish(session))
            raise
        logger.debug("relay: %s connected as source %s", name, source)
        return session

    async def _post(self, source: str, offer: str) -> tuple[str, str]:
        """POST an offer; the resource's URL and the answer SDP."""
        headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {self.blob.token}"}
        try:
            response = await self._client.post(
                self.blob.endpoint, params={"source": source}, content=offer.encode(), headers=headers
            )
        except httpx.HTTPError as exc:
            raise RelayError(f"WHIP POST to {self.blob.endpoint} (source {source!r}) failed: {exc}") from exc
        if response.status_code != 201:
            raise RelayError(
                f"WHIP POST to {self.blob.endpoint} (source {source!r}) answered {response.status_code}: "
                f"{response.text[:500]}",
                status=response.status_code,
                body=response.text,
            )
        location = response.headers.get("location")
        if not location:
            raise RelayError(
                f"WHIP POST (source {source!r}) answered 201 without a Location", status=201, body=response.text
            )
        return str(response.url.join(location)), response.text

    async def _hear(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, AudioFrame):
                self._recording.add(frame, time.monotonic())

    def _finish(self, session: _Session) -> asyncio.Future[None]:
        """The session's teardown (DELETE, close), started once; callers shield it from their cancellation."""
        if session.finishing is None:
            session.finishing = asyncio.ensure_future(self._disconnect(session))
        return session.finishing

    async def _disconnect(self, session: _Session) -> None:
        if session.track is not None:
            session.track.stop()
        if session.location is not None:
            try:
                response = await self._client.delete(
                    session.location, headers={"Authorization": f"Bearer {self.blob.token}"}
                )
                if response.status_code >= 300:
                    logger.warning("relay: DELETE %s answered %d", session.location, response.status_code)
            except httpx.HTTPError as exc:
                logger.warning("relay: DELETE %s failed: %s", session.location, exc)
        await close_peer(session.pc)
        if session.reader is not None:
            session.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.reader

    def _close(self) -> Coroutine[Any, Any, None]:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_all())
        return _shielded(self._closing)

    async def _close_all(self) -> None:
        await asyncio.gather(*(self._finish(session) for session in list(self._sessions)))


async def _shielded(future: asyncio.Future[None]) -> None:
    await asyncio.shield(future)


def _call(callback: Callable[..., object], *args: object) -> None:
    try:
        callback(*args)
    except Exception:
        logger.exception("relay: a %s callback failed", getattr(callback, "__name__", "scenario"))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("relay: the run failed", exc_info=task.exception())


def _opus() -> list[Any]:
    capabilities = RTCRtpSender.getCapabilities("audio")
    return [codec for codec in capabilities.codecs if codec.mimeType.lower() == "audio/opus"]
