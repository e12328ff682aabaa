"""``MediaSession``: one call's media — its WHIP connections, a pipeline per source, analysis, recording, prompts.

Each WHIP connection carries one source (``?source=<sourceId>`` or ``main``). Its decoded frames go through a
:class:`~mediabot.media.pipeline.StreamPipeline` onto the call timeline, then to one :class:`SourceAnalysis` per
source: the recorder's track (once the compliance gate is open), the VAD segmenter and the DTMF detector.

Participants: the roster (from the call plane) maps ``sourceId`` → participant. Audio from a source not yet in the
roster is recorded under ``source-<sourceId>`` and renamed, and its segments and tones are held, until the roster
names it. Nothing reaches the disk before the gate opens (``recording_decided(True)``); a refused gate writes nothing.
Events (state, roster, tones, prompts) are stamped on the call timeline (seconds; negative = before the first media).

Vanished peers: a connection that brings audio in and whose transport received nothing (no RTP, no RTCP, no DTLS)
for ``media_idle_timeout`` seconds is ended as :attr:`EndReason.MEDIA_TIMEOUT`. Its segment and tone are closed and
its track is padded with silence from there, like a participant who left's, but stays open for a publisher that comes
back on a new connection for the same source. The check reads the transport's packet counter on the ticker (once a
second); nothing is added per packet. A connection on which the peer only listens sends the bot nothing to time out:
ICE consent freshness (about 30 s) ends it when its peer is gone. Once no connection bringing audio in is left and
the last one ended abnormally (:attr:`EndReason.abnormal`; a WHIP DELETE is normal), the session waits as long again
for a publisher to come back, then logs ``media_lost`` and tells :attr:`MediaSession.on_media_lost` (the engine has
the call hung up, or closes a standalone session).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.stats import RTCInboundRtpStreamStats, RTCTransportStats
from av import AudioFrame

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.audio.kernels import LEVEL_FLOOR_DBFS, level_dbfs
from mediabot.logs import context_with_ids
from mediabot.media.dtmf import DtmfDetector, DtmfTone
from mediabot.media.pipeline import StreamPipeline, TimelineClock
from mediabot.media.prompt import Prompt, PromptTrack
from mediabot.media.receive import InlineAudioReceiver, attach, payload_codecs
from mediabot.media.recorder import CallRecorder, RecorderIO, TrackWriter
from mediabot.media.rtpdirect import DirectRtp, direct_rtp
from mediabot.media.rtpguard import ReceiverGuard
from mediabot.media.vad import SegmenterParams, SpeechSegment, SpeechSegmenter, create_vad
from mediabot.media.whip import close_peer
from mediabot.metrics import SPEECH_START_LATENCY, SPEECH_START_PIPELINE
from mediabot.store.layout import CallPaths, write_json_atomic

__all__ = [
    "MAIN_SOURCE",
    "EndReason",
    "MediaListener",
    "MediaLossListener",
    "MediaOptions",
    "MediaSession",
    "RosterEntry",
    "SpeechEvent",
    "ToneEvent",
]

logger = logging.getLogger(__name__)
_warned_stock_receive = False

MAIN_SOURCE = "main"
TICK_S = 0.25
RECORDER_HOLD_S = 3.0
DRAIN_QUIET_S = 0.06  # a DELETEd publisher's last packets: three packet times without one means none is coming
DRAIN_MAX_S = 1.0  # a publisher that keeps streaming after its DELETE is cut off here
READER_END_S = 2.0  # a closed receiver's last frames are queued already: its reader ends within a few loop turns
RTP_POLL_TICKS = 4  # RTP receive counters are refreshed every second
# A segment whose voiced part is mostly DTMF (tones ± the gap between digits) is a keypad, not speech.
TONE_GAP = SAMPLE_RATE // 10
KEYPAD_COVER = 0.8
TONES_REMEMBERED = 64
LEVEL_EVERY_FRAMES = 5  # the live level meter is refreshed every 100 ms, not every frame


class EndReason(StrEnum):
    """Why a WHIP connection ended: the ``reason`` of its ``source_disconnected`` event."""

    DELETED = "deleted"  # the publisher's WHIP DELETE
    REPLACED = "replaced"  # a newer connection for the same source took its place
    SESSION_CLOSED = "session closed"  # the call ended (or the session was closed)
    MEDIA_TIMEOUT = "media timeout"  # nothing arrived for ``media_idle_timeout`` seconds: the peer vanished
    FAILED = "connection failed"  # ICE or DTLS failed (ICE consent freshness expired)
    CLOSED = "connection closed"  # the transport closed under it, without a DELETE
    RECEIVE_ERROR = "receive error"  # receiving or decoding its audio failed

    @property
    def abnormal(self) -> bool:
        """Whether the connection ended without its publisher or the call saying so (it vanished or failed)."""
        return self not in (EndReason.DELETED, EndReason.REPLACED, EndReason.SESSION_CLOSED)


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """A participant as the media plane needs it: id, display name, the audio ``sourceId``s it sends on."""

    participant_id: str
    display_name: str | None = None
    source_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SpeechEvent:
    """A closed speech segment of one source, attributed to its participant when known."""

    call_id: str
    source_id: str
    participant_id: str | None
    display_name: str | None
    segment: SpeechSegment


@dataclass(frozen=True, slots=True)
class ToneEvent:
    """A DTMF digit heard in one source's audio (call-timeline seconds)."""

    call_id: str
    source_id: str
    participant_id: str | None
    digit: str
    start_s: float
    end_s: float


class MediaListener(Protocol):
    """What the media plane tells the call plane; called on the event loop, must return quickly."""

    def on_speech(self, event: SpeechEvent) -> None:
        """A speech segment closed (only once the recording gate is open)."""
        ...

    def on_tone(self, event: ToneEvent) -> None:
        """A DTMF digit was detected in a participant's audio."""
        ...

    def on_media_error(self, call_id: str, message: str) -> None:
        """Recording failed (disk full, I/O error); the call goes on."""
        ...


@runtime_checkable
class MediaLossListener(Protocol):
    """A :class:`MediaListener` that also hears when a call's media is gone for good (the CallManager)."""

    def on_media_lost(self, call_id: str, reason: str) -> None:
        """Every connection bringing the call's audio in ended abnormally and none came back in time."""
        ...


@dataclass(frozen=True)
class MediaOptions:
    """The media plane's settings (see :class:`mediabot.config.Settings` for each)."""

    public_url: str
    output_dir: Any
    receive: Literal["unmixed", "mixed"] = "unmixed"
    vad_backend: Literal["webrtc", "silero"] = "webrtc"
    vad_aggressiveness: int = 2
    segmenter: SegmenterParams = field(default_factory=SegmenterParams)
    max_sdp_bytes: int = 64 * 1024
    record_ogg: bool = False
    ice_loopback: bool = False
    inline_receive: bool = True
    direct_rtp: bool = True
    prompt_dir: Any = None
    ca_bundle: Any = None
    media_idle_timeout: float = 10.0


class SourceAnalysis:
    """The sinks of one source in one object (one call per frame): recorder track, VAD segmenter, DTMF detector.

    It also measures each speech start: from the moment the onset's audio arrived (on the least-delayed path, as the
    source's pipeline anchored it) to the moment the segmenter declared speech — and the part of that spent after
    the packet that completed the start window actually arrived (reorder wait, decode, resampling, VAD). A start
    decided by the stream's tail at its close is not measured.
    """

    def __init__(self, session: MediaSession, source_id: str) -> None:
        self.session = session
        self.source_id = source_id
        options = session.options
        self.segmenter = SpeechSegmenter(create_vad(options.vad_backend, options.vad_aggressiveness), options.segmenter)
        self.dtmf = DtmfDetector(SAMPLE_RATE)
        self.track: TrackWriter | None = None
        self.pipeline: StreamPipeline | None = None  # the current connection's: it knows when audio arrived
        self.end_position = 0
        self.segments = 0
        self.speech_samples = 0
        self.level_dbfs = LEVEL_FLOOR_DBFS
        self.start_latency: SpeechStart | None = None
        self._onsets = 0
        self._frames = 0
        self._tones: deque[tuple[int, int]] = deque(maxlen=TONES_REMEMBERED)
        self._pad = options.segmenter.pad_ms * SAMPLE_RATE // 1000

    @property
    def speaking(self) -> bool:
        """Whether this source is in a speech segment now."""
        return self.segmenter.speaking

    def on_frame(self, position: int, frame: npt.NDArray[np.int16]) -> None:
        """Record, segment and listen for tones in one 20 ms frame."""
        track = self.track
        if track is None and self.session.gate_open:
            track = self.track = self.session._open_track(self.source_id)
        if track is not None:
            track.write(position, frame)
        segmenter = self.segmenter
        segment = segmenter.process(position, frame)
        if segment is not None:
            self._closed(segment)
        if segmenter.onsets != self._onsets:
            self._onsets = segmenter.onsets
            self._speech_started(segmenter.onset, position + frame.size)  # decided by this frame's last sample
        tone = self.dtmf.process(position, frame)
        if tone is not None:
            self._tone(tone)
        self.end_position = position + frame.size
        self._frames += 1
        if self._frames % LEVEL_EVERY_FRAMES == 0:
            self.level_dbfs = level_dbfs(frame)

    def _speech_started(self, onset: int, decided: int) -> None:
        pipeline = self.pipeline
        if pipeline is None or pipeline.closing:
            return
        # The onset frame's audio was all in once the packet carrying its last sample came (frames start a filter
        # delay before their packet, so the first few samples of a frame belong to the packet before).
        onset_arrival = pipeline.arrival_of(onset + FRAME_SAMPLES - 1)
        # The packet whose push completed the deciding frame (the resampler's look-ahead included); if the frame was
        # completed outside a push, when its packet was due on the least-delayed path.
        decided_arrival = pipeline.pushing_arrival or pipeline.arrival_of(decided - 1)
        if onset_arrival is None or decided_arrival is None:
            return
        now = self.session.clock.now()
        start = SpeechStart(onset, now - onset_arrival, now - decided_arrival)
        self.start_latency = start
        SPEECH_START_LATENCY.observe(max(start.latency_s, 0.0))
        SPEECH_START_PIPELINE.observe(max(start.pipeline_s, 0.0))

    def _take_latency(self, segment: SpeechSegment) -> SpeechStart | None:
        """The measured start of the segment that just closed (a segment continuing after a cut has none)."""
        start = self.start_latency
        if start is None or not segment.start <= start.onset < segment.end:
            return None
        self.start_latency = None
        return start

    def _tone(self, tone: DtmfTone) -> None:
        self._tones.append((tone.start, tone.end))
        self.session._tone(self.source_id, tone)

    def _closed(self, segment: SpeechSegment) -> None:
        """A segment closed: speech goes on to the session; keypad tones the VAD took for speech do not."""
        start = self._take_latency(segment)
        if self._keypad(segment):
            return
        self.session._segment(self.source_id, segment, start)

    def _keypad(self, segment: SpeechSegment) -> bool:
        """Whether DTMF tones (with their gaps) cover most of the segment's voiced part (its pads excluded)."""
        if not self._tones:
            return False
        core_start, core_end = segment.start + self._pad, segment.end - self._pad
        if core_end <= core_start:
            core_start, core_end = segment.start, segment.end
        covered, reach = 0, core_start
        for tone_start, tone_end in self._tones:
            lo, hi = max(tone_start - TONE_GAP, reach), min(tone_end + TONE_GAP, core_end)
            if hi > lo:
                covered += hi - lo
                reach = hi
        return covered >= KEYPAD_COVER * (core_end - core_start)

    def finish(self, *, left: bool = True) -> None:
        """The source's stream ended: close what is open in the detector and segmenter; if the participant ``left``,
        end the track too (else it stays open, silent, for a publisher that comes back on a new connection)."""
        tone = self.dtmf.flush()
        if tone is not None:
            self._tone(tone)
        segment = self.segmenter.flush(self.end_position)
        if segment is not None:
            self._closed(segment)
        if self.track is not None and left:
            self.track.end(self.end_position)


@dataclass(frozen=True, slots=True)
class SpeechStart:
    """When speech started in a source (timeline sample of its first speech frame) and how late it was noticed.

    ``latency_s``: from the onset audio's arrival (least-delayed path) to the speech start; ``pipeline_s``: from the
    actual arrival of the packet that completed the start window to the speech start.
    """

    onset: int
    latency_s: float
    pipeline_s: float


@dataclass
class SourceConnection:
    """One WHIP resource: the peer connection carrying one source, its pipeline and reader task."""

    resource_id: str
    source_id: str
    pc: RTCPeerConnection
    transceiver: RTCRtpTransceiver
    pipeline: StreamPipeline
    codec: str = ""
    answer_sdp: str = ""
    inline: InlineAudioReceiver | None = None
    guard: ReceiverGuard | None = None
    direct: DirectRtp | None = None
    task: asyncio.Task[None] | None = None
    ended: bool = False
    packets_lost: int = 0
    jitter_s: float = 0.0
    datagrams: int = 0  # what its transport had received (DTLS, RTP, RTCP) at the last poll
    heard_at: float = 0.0  # when a poll last found that count grown (session clock), or when it was added

    @property
    def receives(self) -> bool:
        """Whether the peer sends audio on it (else it only listens to the bot, on ``main``)."""
        return self.transceiver.currentDirection not in ("sendonly", "inactive")

    async def poll_rtp(self, now: float) -> None:
        """Refresh the RTP receive counters (from sequence numbers, as aiortc's receiver reports them) and note,
        at ``now``, whether anything arrived since the last poll."""
        report = await self.transceiver.receiver.getStats()
        for stats in report.values():
            if isinstance(stats, RTCInboundRtpStreamStats):
                self.packets_lost = max(stats.packetsLost, 0)
                self.jitter_s = stats.jitter / 48000 if self.codec.lower() == "audio/opus" else stats.jitter / 8000
            elif isinstance(stats, RTCTransportStats):
                # The RTP that went straight from the socket bypassed the transport's count.
                datagrams = stats.packetsReceived + (self.direct.datagrams if self.direct is not None else 0)
                if datagrams != self.datagrams:
                    self.datagrams = datagrams
                    self.heard_at = now


@dataclass
class StreamTotals:
    """Frame and packet counters summed over streams (``streams``: how many are open)."""

    streams: int = 0
    frames_received: int = 0
    packets_lost: int = 0
    frames_concealed: int = 0
    frames_late: int = 0
    packets_refused: int = 0  # SRTP refused them (forged, replayed), on the direct path
    packets_malformed: int = 0  # unprotected but not well-formed RTP, on the direct path
    packets_foreign: int = 0  # from an SSRC other than the connection's sending source

    def add(self, connection: SourceConnection) -> None:
        """Count one connection's counters in."""
        stats = connection.pipeline.stats
        self.frames_received += stats.frames_in
        self.packets_lost += connection.packets_lost
        self.frames_concealed += stats.gap_samples // FRAME_SAMPLES
        self.frames_late += stats.late_frames
        if connection.direct is not None:
            self.packets_refused += connection.direct.unprotect_failed
            self.packets_malformed += connection.direct.malformed
        if connection.guard is not None:
            self.packets_foreign += connection.guard.foreign

    def merge(self, other: StreamTotals) -> None:
        """Count another total in (streams included)."""
        self.streams += other.streams
        self.frames_received += other.frames_received
        self.packets_lost += other.packets_lost
        self.frames_concealed += other.frames_concealed
        self.frames_late += other.frames_late
        self.packets_refused += other.packets_refused
        self.packets_malformed += other.packets_malformed
        self.packets_foreign += other.packets_foreign


class MediaSession:
    """The media of one call (or one standalone WHIP session): connections, sources, gate, recording, prompts."""

    def __init__(
        self,
        options: MediaOptions,
        io: RecorderIO,
        *,
        call_id: str | None = None,
        gated: bool = False,
        listener: MediaListener | None = None,
        speech_sink: Callable[[MediaSession, SpeechEvent], None] | None = None,
        standalone: bool = False,
        now: Callable[[], float] = time.monotonic,
        session_id: str | None = None,
        token: str | None = None,
    ) -> None:
        self.id = session_id or secrets.token_urlsafe(12)
        self.token = token or secrets.token_urlsafe(32)
        self.options = options
        self.call_id = call_id
        self.standalone = standalone
        self.on_empty: Callable[[MediaSession], None] | None = None
        self.on_media_lost: Callable[[MediaSession, EndReason], None] | None = None
        self.listener = listener
        self.speech_sink = speech_sink
        self.clock = TimelineClock(now)
        self.created = _wall()
        self._io = io
        self._gate: bool | None = None if gated else True
        self._connections: dict[str, SourceConnection] = {}
        self._analysis: dict[str, SourceAnalysis] = {}
        self._roster: dict[str, RosterEntry] = {}
        self._present: dict[str, RosterEntry] = {}
        self._recorder: CallRecorder | None = None
        self._pending_events: list[tuple[float, dict[str, Any]]] = []
        self._held: dict[str, list[tuple[str, Any]]] = {}
        self.prompt_track = PromptTrack()
        self.segments = 0
        self.tones: list[ToneEvent] = []
        self.errors: list[str] = []
        self._tick: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._summary: dict[str, Any] | None = None
        self._lost_at: float | None = None  # when the last connection bringing audio in ended abnormally
        self._lost_reason = EndReason.MEDIA_TIMEOUT
        self._lost_told = False
        self.retired = StreamTotals()

    # -- state -------------------------------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The folder name of this session's outputs: the call id, or the session id for a standalone session."""
        return self.call_id or self.id

    @property
    def gate_open(self) -> bool:
        """Whether media may be persisted now."""
        return self._gate is True

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    @property
    def media_lost(self) -> bool:
        """Whether the audio publishers vanished (the session waits for one to come back, or gave up)."""
        return self._lost_at is not None

    def connections(self) -> list[SourceConnection]:
        """The WHIP connections currently open."""
        return list(self._connections.values())

    def log_context(self, **ids: str | None) -> contextvars.Context:
        """A context whose log lines carry this session's call and session ids (and ``ids``), for its tasks."""
        return context_with_ids(call_id=self.call_id, session_id=self.id, **ids)

    def totals(self) -> StreamTotals:
        """Frame and packet counters of this session's streams, open and closed."""
        totals = StreamTotals(streams=len(self._connections))
        totals.merge(self.retired)
        for connection in self._connections.values():
            totals.add(connection)
        return totals

    def live(self) -> dict[str, Any]:
        """What is happening now, for the console and ``mediabot demo``: sources, who speaks, levels, counts."""
        origin = self.clock.origin
        sources = []
        for source_id, analysis in self._analysis.items():
            entry = self._roster.get(source_id)
            connection = next((c for c in self._connections.values() if c.source_id == source_id), None)
            speech = analysis.speech_samples
            if analysis.speaking:
                speech += max(analysis.end_position - analysis.segmenter.onset, 0)
            sources.append(
                {
                    "source_id": source_id,
                    "participant_id": entry.participant_id if entry else None,
                    "display_name": entry.display_name if entry else None,
                    "connected": connection is not None,
                    "codec": connection.codec if connection else None,
                    "speaking": analysis.speaking,
                    "level_dbfs": round(analysis.level_dbfs, 1),
                    "segments": analysis.segments,
                    "speaking_s": round(speech / SAMPLE_RATE, 2),
                    "frames_received": connection.pipeline.stats.frames_in if connection else None,
                    "packets_lost": connection.packets_lost if connection else None,
                    "jitter_ms": round(connection.jitter_s * 1000, 1) if connection else None,
                }
            )
        return {
            "session_id": self.id,
            "call_id": self.call_id,
            "standalone": self.standalone,
            "key": self.key,
            "created": self.created,
            "recording": {None: "pending", True: "on", False: "refused"}[self._gate],
            "position_s": round(self.clock.now() - origin, 2) if origin is not None else 0.0,
            "segments": self.segments,
            "tones": "".join(t.digit for t in self.tones),
            "sources": sources,
        }

    def participant_of(self, source_id: str) -> RosterEntry | None:
        """The participant sending on ``source_id``, if the roster named it."""
        return self._roster.get(source_id)

    # -- connections -------------------------------------------------------------------------------------------------

    def add_connection(self, connection: SourceConnection) -> None:
        """Start reading a newly answered WHIP connection (a previous one for the same source is replaced)."""
        for old in [c for c in self._connections.values() if c.source_id == connection.source_id]:
            self._background(self.remove_connection(old.resource_id, EndReason.REPLACED))
        self._lost_at = None  # a publisher is back
        self._lost_told = False
        connection.heard_at = self.clock.now()
        analysis = self._analysis.get(connection.source_id)
        if analysis is None:
            analysis = self._analysis[connection.source_id] = SourceAnalysis(self, connection.source_id)
        connection.pipeline.sinks.append(analysis)
        analysis.pipeline = connection.pipeline
        self._connections[connection.resource_id] = connection
        if self.options.inline_receive and connection.answer_sdp:
            self._receive_inline(connection)
        entry = self._roster.get(connection.source_id)
        connection.task = asyncio.get_running_loop().create_task(
            self._read(connection),
            name=f"media {self.key} {connection.source_id}",
            context=self.log_context(participant_id=entry.participant_id if entry else None),
        )

        @connection.pc.on("connectionstatechange")
        async def _state() -> None:
            # "closed" here was not the bot's doing (its own close removed the connection first): the peer's DTLS
            # ended, or the transport under it (aiortc reports a lost ICE consent either way).
            state = connection.pc.connectionState
            if state in ("failed", "closed"):
                reason = EndReason.FAILED if state == "failed" else EndReason.CLOSED
                await self.remove_connection(connection.resource_id, reason)

        if self._tick is None:
            self._tick = asyncio.get_running_loop().create_task(
                self._ticker(), name=f"media tick {self.key}", context=self.log_context()
            )
        self.event("source_connected", source_id=connection.source_id, codec=connection.codec)

    def _receive_inline(self, connection: SourceConnection) -> None:
        """Decode the connection's RTP packets as they arrive (see :mod:`mediabot.media.receive`)."""
        global _warned_stock_receive
        resource_id = connection.resource_id

        def failed(_exc: BaseException) -> None:
            self._background(self.remove_connection(resource_id, EndReason.RECEIVE_ERROR))

        connection.inline = attach(
            connection.transceiver.receiver,
            connection.pipeline,
            payload_codecs(connection.answer_sdp),
            now=self.clock.now,
            on_failure=failed,
        )
        if connection.inline is None and not _warned_stock_receive:
            _warned_stock_receive = True
            logger.warning("media: this aiortc cannot be hooked for inline receive; using its stock receive path")
        if connection.inline is not None and self.options.direct_rtp:
            connection.direct = direct_rtp(
                connection.transceiver.receiver, connection.inline, connection.guard, now=self.clock.now
            )

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` as a task the session keeps (and awaits when it closes)."""
        task = asyncio.get_running_loop().create_task(work, context=self.log_context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection(self, resource_id: str) -> SourceConnection | None:
        """The open WHIP connection with that resource id."""
        return self._connections.get(resource_id)

    async def remove_connection(self, resource_id: str, reason: EndReason = EndReason.DELETED) -> bool:
        """End one WHIP connection (DELETE, a vanished or failed peer, the call's end); its source's sinks are
        finished, and ``reason`` goes in its ``source_disconnected`` event."""
        connection = self._connections.pop(resource_id, None)
        if connection is None:
            return False
        connection.ended = True
        if (
            reason.abnormal
            and self._lost_at is None
            and not self._closed
            and self.options.media_idle_timeout > 0
            and not any(c.receives for c in self._connections.values())
        ):
            self._lost_at = self.clock.now()
            self._lost_reason = reason
        # aiortc starts the receiver (whose stop ends the track, so the reader returns) only once DTLS connected.
        started = connection.transceiver.receiver.transport.state not in ("new", "connecting")
        if reason is EndReason.DELETED and started and connection.receives:
            await self._drain(connection)
        with contextlib.suppress(Exception):  # the counters are a report; a broken transport must not stop the close
            await connection.poll_rtp(self.clock.now())
        await close_peer(connection.pc)
        if connection.task is not None:
            await self._end_reader(connection, connection.task, READER_END_S if started else 0.0)
        if connection.direct is not None:
            connection.direct.stop()
        if connection.inline is not None:
            connection.inline.close()
        connection.pipeline.close()
        analysis = self._analysis.get(connection.source_id)
        if analysis is not None and not any(c.source_id == connection.source_id for c in self._connections.values()):
            analysis.finish(left=not reason.abnormal)
        self.retired.add(connection)
        # Publishers that vanished may come back: the ticker decides once the wait is over.
        if not self._connections and self.on_empty is not None and not self._closed and self._lost_at is None:
            self.on_empty(self)
        self.event("source_disconnected", source_id=connection.source_id, reason=str(reason), **_stats(connection))
        return True

    async def _drain(self, connection: SourceConnection) -> None:
        """Take what a publisher sent just before its DELETE: the request can be read before the last packets are
        (they arrive on another socket, and a busy loop serves sockets in any order). Waits until no frame has come
        for :data:`DRAIN_QUIET_S`, for at most :data:`DRAIN_MAX_S`."""
        stats = connection.pipeline.stats
        seen = stats.frames_in
        for _ in range(round(DRAIN_MAX_S / DRAIN_QUIET_S)):
            await asyncio.sleep(DRAIN_QUIET_S)
            if stats.frames_in == seen:
                return
            seen = stats.frames_in

    async def _end_reader(self, connection: SourceConnection, task: asyncio.Task[None], wait_s: float) -> None:
        """Let the reader take the frames the closed receiver still queued, for at most ``wait_s``; then cancel it.

        A receiver that never started (the publisher never completed ICE or DTLS) never ends its track, so the reader
        would wait forever, and with it the WHIP DELETE, the call's end and the engine's stop.
        """
        if wait_s > 0:
            await asyncio.wait({task}, timeout=wait_s)
        if not task.done():
            logger.info("media %s: source %s: its track never ended; reader stopped", self.key, connection.source_id)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _read(self, connection: SourceConnection) -> None:
        track = connection.transceiver.receiver.track
        if track is None or connection.transceiver.currentDirection in ("sendonly", "inactive"):
            return  # the peer only listens (a main session that only hears the bot's prompts)
        pipeline = connection.pipeline
        now = self.clock.now
        try:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                if not isinstance(frame, AudioFrame):
                    continue
                channels = len(frame.layout.channels)
                samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16, count=frame.samples * channels)
                pipeline.push(frame.pts, frame.sample_rate, channels, samples, now())
        except Exception:
            logger.exception("media %s: source %s failed; its connection is closed", self.key, connection.source_id)
            self._background(self.remove_connection(connection.resource_id, EndReason.RECEIVE_ERROR))

    # -- the call plane's news ---------------------------------------------------------------------------------------

    def roster_changed(self, entries: list[RosterEntry]) -> None:
        """The call's full roster: map sources to participants, log who joined and left."""
        present = {entry.participant_id: entry for entry in entries}
        for pid in present.keys() - self._present.keys():
            entry = present[pid]
            self.event("participant_joined", participant_id=pid, display_name=entry.display_name)
        for pid in self._present.keys() - present.keys():
            self.event("participant_left", participant_id=pid, display_name=self._present[pid].display_name)
        self._present = present
        for entry in entries:
            for source_id in entry.source_ids:
                if self._roster.get(source_id) == entry:
                    continue
                self._roster[source_id] = entry
                analysis = self._analysis.get(source_id)
                if analysis is not None and analysis.track is not None:
                    analysis.track.rename(entry.participant_id)
                self._release_held(source_id)

    def recording_decided(self, allowed: bool) -> None:
        """The compliance gate: open (record from now on) or refused (nothing is ever written)."""
        if self._gate is not None:
            return
        self._gate = allowed
        self.event("recording", allowed=allowed)
        if not allowed:
            self._pending_events.clear()
            self._held.clear()

    def event(self, kind: str, **data: Any) -> None:
        """Record a call event (state change, roster change, tone, prompt) at the current time."""
        if self._gate is False or self._closed:
            return
        self._note(kind, data)

    def _note(self, kind: str, data: dict[str, Any]) -> None:
        self._pending_events.append((self.clock.now(), {"type": kind, **data}))
        if self._gate and self.clock.origin is not None:
            self._flush_events()

    async def play(self, prompt: Prompt) -> float:
        """Play a prompt on ``main``; returns its length once it was sent. Logged as prompt events."""
        self.event("prompt_started", source=prompt.source, duration_s=round(prompt.duration_s, 3))
        logger.info("media %s: playing %s (%.2f s) on main", self.key, prompt.source, prompt.duration_s)
        played = await self.prompt_track.play(prompt)
        self.event("prompt_finished", source=prompt.source)
        return played

    # -- sinks' news -------------------------------------------------------------------------------------------------

    def _segment(self, source_id: str, segment: SpeechSegment, start: SpeechStart | None = None) -> None:
        if not self.gate_open:
            return
        entry = self._roster.get(source_id)
        if entry is None and source_id != MAIN_SOURCE and not self._closed:
            self._held.setdefault(source_id, []).append(("segment", (segment, start)))
            return
        self.segments += 1
        analysis = self._analysis.get(source_id)
        if analysis is not None:
            analysis.segments += 1
            analysis.speech_samples += segment.end - segment.start
        record: dict[str, Any] = {
            "source_id": source_id,
            "participant_id": entry.participant_id if entry else None,
            "display_name": entry.display_name if entry else None,
            "start": round(segment.start_s, 3),
            "end": round(segment.end_s, 3),
            "duration": round(segment.duration_s, 3),
            "reason": segment.reason,
        }
        if start is not None:
            record["latency_ms"] = round(start.latency_s * 1000, 1)
            record["pipeline_ms"] = round(start.pipeline_s * 1000, 1)
        self._recording().append_jsonl(self._paths().segments, record)
        event = SpeechEvent(
            self.key,
            source_id,
            entry.participant_id if entry else None,
            entry.display_name if entry else None,
            segment,
        )
        if self.speech_sink is not None:
            self.speech_sink(self, event)
        if self.listener is not None and self.call_id is not None:
            self.listener.on_speech(event)

    def _release_held(self, source_id: str) -> None:
        """Pass on what a source said before the roster named it (or before the session closed)."""
        for kind, item in self._held.pop(source_id, []):
            if kind == "segment":
                self._segment(source_id, *item)
            else:
                self._tone(source_id, item)

    def _tone(self, source_id: str, tone: DtmfTone) -> None:
        entry = self._roster.get(source_id)
        if entry is None and source_id != MAIN_SOURCE and not self._closed:
            self._held.setdefault(source_id, []).append(("tone", tone))
            return
        event = ToneEvent(
            self.call_id or self.id,
            source_id,
            entry.participant_id if entry else None,
            tone.digit,
            tone.start_s,
            tone.end_s,
        )
        self.tones.append(event)
        self.event(
            "tone",
            digit=tone.digit,
            source_id=source_id,
            participant_id=event.participant_id,
            start=round(tone.start_s, 3),
            end=round(tone.end_s, 3),
        )
        if self.listener is not None and self.call_id is not None:
            self.listener.on_tone(event)

    def _report_error(self, message: str) -> None:
        self.errors.append(message)
        logger.error("media %s: %s", self.key, message)
        if self.listener is not None and self.call_id is not None:
            self.listener.on_media_error(self.call_id, message)

    # -- recording ---------------------------------------------------------------------------------------------------

    @property
    def folder(self) -> Any:
        """The folder this session's outputs go to."""
        return self._paths().dir

    def _paths(self) -> CallPaths:
        return CallPaths(self.options.output_dir, self.key)

    def _recording(self) -> CallRecorder:
        if self._recorder is None:
            # A source's frames reach the recorder a few hundred ms after they were due (the pipeline's first 100 ms,
            # the jitter buffer, a stalled peer): stalled tracks are padded only behind that, with a wide margin,
            # so a late joiner's start is kept.
            self._recorder = CallRecorder(
                self._paths(),
                self._io,
                hold_s=RECORDER_HOLD_S,
                on_error=self._report_error,
                ogg=self.options.record_ogg,
            )
            self._write_metadata(final=False)
        return self._recorder

    def _has_track(self, entry: RosterEntry) -> bool:
        return any(
            (analysis := self._analysis.get(source)) is not None and analysis.track is not None
            for source in entry.source_ids
        )

    def _open_track(self, source_id: str) -> TrackWriter:
        entry = self._roster.get(source_id)
        name = entry.participant_id if entry else (MAIN_SOURCE if source_id == MAIN_SOURCE else f"source-{source_id}")
        return self._recording().open_track(source_id, name)

    def _flush_events(self) -> None:
        origin = self.clock.origin
        events, self._pending_events = self._pending_events, []
        paths = self._paths()
        recorder = self._recording()
        for stamp, record in events:
            t = round(stamp - origin, 3) if origin is not None else None
            recorder.append_jsonl(paths.events, {"t": t, **record})

    def _write_metadata(self, *, final: bool, summary: dict[str, Any] | None = None) -> None:
        self._io.submit(write_json_atomic, self._paths().call_json, self._metadata(final=final, summary=summary))

    def _metadata(self, *, final: bool, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        participants = {entry.participant_id: entry for entry in self._roster.values()} | self._present
        data: dict[str, Any] = {
            "call_id": self.call_id,
            "session_id": self.id,
            "created": self.created,
            "ended": _wall() if final else None,
            "complete": final,
            "sample_rate": SAMPLE_RATE,
            "receive": self.options.receive,
            "participants": [
                {
                    "id": entry.participant_id,
                    "display_name": entry.display_name,
                    "source_ids": list(entry.source_ids),
                    "file": f"audio/{entry.participant_id}.wav" if self._has_track(entry) else None,
                }
                for entry in participants.values()
            ],
            "unattributed_sources": sorted(
                source for source in self._analysis if source not in self._roster and source != MAIN_SOURCE
            ),
        }
        if summary is not None:
            data["recording"] = summary
        if self.errors:
            data["errors"] = list(self.errors)
        return data

    async def _ticker(self) -> None:
        ticks = 0
        while not self._closed:
            await asyncio.sleep(TICK_S)
            ticks += 1
            for connection in self._connections.values():
                if connection.inline is not None:
                    connection.inline.expire()
            if ticks % RTP_POLL_TICKS == 0:
                now = self.clock.now()
                for connection in list(self._connections.values()):
                    # A report only: a connection's transport failing must not stop the ticks the recorder needs.
                    with contextlib.suppress(Exception):
                        await connection.poll_rtp(now)
                self._check_vanished(now)
            if self._recorder is not None and self.clock.origin is not None:
                self._recorder.tick(self.clock.position())
            if self._pending_events and self._gate and self.clock.origin is not None:
                self._flush_events()

    def _check_vanished(self, now: float) -> None:
        """End the connections whose peer sent nothing for the idle timeout; give up on publishers that are gone."""
        timeout = self.options.media_idle_timeout
        if timeout <= 0 or self._closed:
            return
        for connection in list(self._connections.values()):
            if connection.receives and now - connection.heard_at >= timeout:
                logger.warning(
                    "media %s: source %s sent nothing for %.1f s; its connection is ended as vanished",
                    self.key,
                    connection.source_id,
                    now - connection.heard_at,
                )
                self._background(self.remove_connection(connection.resource_id, EndReason.MEDIA_TIMEOUT))
        lost_at = self._lost_at
        if lost_at is None or self._lost_told or now - lost_at < timeout:
            return
        if self.call_id is None and not self.standalone:
            return  # a call being placed has no id for the call plane yet: it is told once the call is bound
        self._lost_told = True
        reason = self._lost_reason
        logger.warning("media %s: every publisher is gone (%s) and none came back in %.0f s", self.key, reason, timeout)
        self.event("media_lost", reason=str(reason), waited_s=timeout)
        if self.on_media_lost is not None:
            self.on_media_lost(self, reason)

    # -- the end -----------------------------------------------------------------------------------------------------

    async def close(self) -> dict[str, Any]:
        """End every connection, finish the analysis and the files (all tracks the same length); idempotent."""
        if self._closed:
            return self._summary or {}
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for resource_id in list(self._connections):
            await self.remove_connection(resource_id, EndReason.SESSION_CLOSED)
        self.prompt_track.stop()
        end = max((a.end_position for a in self._analysis.values()), default=0)
        self._closed = True
        # Whatever the roster never named is written unattributed rather than lost.
        for source_id in list(self._held):
            self._release_held(source_id)
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
        summary: dict[str, Any] = {"segments": self.segments, "tones": [t.digit for t in self.tones]}
        # A call's folder is kept even without media (its events); a standalone session nobody joined leaves none.
        if self._gate and (self._analysis or not self.standalone):
            self._note("media_ended", {})
            if self._pending_events:
                self._flush_events()
            recording = await self._recording().close(end)
            summary["files"] = recording.to_json()
            try:  # awaited, so that a full disk here is reported like any other recording error
                await self._io.run(
                    write_json_atomic, self._paths().call_json, self._metadata(final=True, summary=summary)
                )
            except OSError as exc:
                self._report_error(f"call.json could not be written: {exc.strerror or exc}")
        self._summary = summary
        return summary


def _stats(connection: SourceConnection) -> dict[str, Any]:
    stats = connection.pipeline.stats
    counts: dict[str, Any] = {
        "frames_in": stats.frames_in,
        "frames_out": stats.frames_out,
        "first_position": stats.first_position,
        "realigned_samples": stats.realigned_samples,
        "gap_s": round(stats.gap_samples / SAMPLE_RATE, 3),
        "late_frames": stats.late_frames,
        "discontinuities": stats.discontinuities,
    }
    if connection.inline is not None:
        received = connection.inline.stats
        counts["rtp"] = {
            "packets": received.packets,
            "lost": received.lost,
            "reordered": received.reordered,
            "late": received.late,
            "undecodable": received.undecodable,
        }
    if connection.direct is not None:
        counts.setdefault("rtp", {})
        counts["rtp"]["direct"] = connection.direct.datagrams
        counts["rtp"]["unprotect_failed"] = connection.direct.unprotect_failed
        counts["rtp"]["malformed"] = connection.direct.malformed
    if connection.guard is not None:
        counts.setdefault("rtp", {})
        counts["rtp"]["foreign_ssrc"] = connection.guard.foreign
        counts["rtp"]["rtcp_unsent"] = connection.guard.rtcp_unsent
    return counts


def _wall() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
