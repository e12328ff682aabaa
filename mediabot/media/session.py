"""``MediaSession``: one call's media — its WHIP connections, a pipeline per source, analysis, recording, prompts.

Each WHIP connection carries one source (``?source=<sourceId>`` or ``main``). Its decoded frames go through a
:class:`~mediabot.media.pipeline.StreamPipeline` onto the call timeline, then to one :class:`SourceAnalysis` per
source: the recorder's track (once the compliance gate is open), the VAD segmenter and the DTMF detector.

Participants: the roster (from the call plane) maps ``sourceId`` → participant. Audio from a source not yet in the
roster is recorded under ``source-<sourceId>`` and renamed, and its segments and tones are held, until the roster
names it. Nothing reaches the disk before the gate opens (``recording_decided(True)``); a refused gate writes nothing.
Events (state, roster, tones, prompts) are stamped on the call timeline (seconds; negative = before the first media).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from av import AudioFrame

from mediabot.audio import SAMPLE_RATE
from mediabot.media.dtmf import DtmfDetector, DtmfTone
from mediabot.media.pipeline import StreamPipeline, TimelineClock
from mediabot.media.prompt import Prompt, PromptTrack
from mediabot.media.recorder import CallRecorder, RecorderIO, TrackWriter
from mediabot.media.vad import SegmenterParams, SpeechSegment, SpeechSegmenter, create_vad
from mediabot.store.layout import CallPaths, write_json_atomic

__all__ = [
    "MAIN_SOURCE",
    "MediaListener",
    "MediaOptions",
    "MediaSession",
    "RosterEntry",
    "SpeechEvent",
    "ToneEvent",
]

logger = logging.getLogger(__name__)

MAIN_SOURCE = "main"
TICK_S = 0.25
RECORDER_HOLD_S = 3.0


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
    prompt_dir: Any = None
    ca_bundle: Any = None


class SourceAnalysis:
    """The sinks of one source in one object (one call per frame): recorder track, VAD segmenter, DTMF detector."""

    def __init__(self, session: MediaSession, source_id: str) -> None:
        self.session = session
        self.source_id = source_id
        options = session.options
        self.segmenter = SpeechSegmenter(create_vad(options.vad_backend, options.vad_aggressiveness), options.segmenter)
        self.dtmf = DtmfDetector(SAMPLE_RATE)
        self.track: TrackWriter | None = None
        self.end_position = 0

    def on_frame(self, position: int, frame: npt.NDArray[np.int16]) -> None:
        """Record, segment and listen for tones in one 20 ms frame."""
        track = self.track
        if track is None and self.session.gate_open:
            track = self.track = self.session._open_track(self.source_id)
        if track is not None:
            track.write(position, frame)
        segment = self.segmenter.process(position, frame)
        if segment is not None:
            self.session._segment(self.source_id, segment)
        tone = self.dtmf.process(position, frame)
        if tone is not None:
            self.session._tone(self.source_id, tone)
        self.end_position = position + frame.size

    def finish(self) -> None:
        """The source's stream ended: close what is open in the segmenter and detector."""
        segment = self.segmenter.flush(self.end_position)
        if segment is not None:
            self.session._segment(self.source_id, segment)
        tone = self.dtmf.flush()
        if tone is not None:
            self.session._tone(self.source_id, tone)
        if self.track is not None:
            self.track.end(self.end_position)


@dataclass
class SourceConnection:
    """One WHIP resource: the peer connection carrying one source, its pipeline and reader task."""

    resource_id: str
    source_id: str
    pc: RTCPeerConnection
    transceiver: RTCRtpTransceiver
    pipeline: StreamPipeline
    codec: str = ""
    task: asyncio.Task[None] | None = None
    ended: bool = False


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
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self.token = secrets.token_urlsafe(32)
        self.options = options
        self.call_id = call_id
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

    def connections(self) -> list[SourceConnection]:
        """The WHIP connections currently open."""
        return list(self._connections.values())

    def participant_of(self, source_id: str) -> RosterEntry | None:
        """The participant sending on ``source_id``, if the roster named it."""
        return self._roster.get(source_id)

    # -- connections -------------------------------------------------------------------------------------------------

    def add_connection(self, connection: SourceConnection) -> None:
        """Start reading a newly answered WHIP connection (a previous one for the same source is replaced)."""
        for old in [c for c in self._connections.values() if c.source_id == connection.source_id]:
            self._background(self.remove_connection(old.resource_id))
        analysis = self._analysis.get(connection.source_id)
        if analysis is None:
            analysis = self._analysis[connection.source_id] = SourceAnalysis(self, connection.source_id)
        connection.pipeline.sinks.append(analysis)
        self._connections[connection.resource_id] = connection
        connection.task = asyncio.get_running_loop().create_task(
            self._read(connection), name=f"media {self.key} {connection.source_id}"
        )

        @connection.pc.on("connectionstatechange")
        async def _state() -> None:
            if connection.pc.connectionState in ("failed", "closed"):
                await self.remove_connection(connection.resource_id)

        if self._tick is None:
            self._tick = asyncio.get_running_loop().create_task(self._ticker(), name=f"media tick {self.key}")
        self.event("source_connected", source_id=connection.source_id, codec=connection.codec)

    def _background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` as a task the session keeps (and awaits when it closes)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def connection(self, resource_id: str) -> SourceConnection | None:
        """The open WHIP connection with that resource id."""
        return self._connections.get(resource_id)

    async def remove_connection(self, resource_id: str) -> bool:
        """End one WHIP connection (DELETE, a failed peer, or the call's end); its source's sinks are finished."""
        connection = self._connections.pop(resource_id, None)
        if connection is None:
            return False
        connection.ended = True
        await connection.pc.close()
        if connection.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await connection.task
        connection.pipeline.close()
        analysis = self._analysis.get(connection.source_id)
        if analysis is not None and not any(c.source_id == connection.source_id for c in self._connections.values()):
            analysis.finish()
        self.event("source_disconnected", source_id=connection.source_id, **_stats(connection))
        return True

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
            self._background(self.remove_connection(connection.resource_id))

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
                for kind, item in self._held.pop(source_id, []):
                    if kind == "segment":
                        self._segment(source_id, item)
                    else:
                        self._tone(source_id, item)

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

    def _segment(self, source_id: str, segment: SpeechSegment) -> None:
        if not self.gate_open:
            return
        entry = self._roster.get(source_id)
        if entry is None and source_id != MAIN_SOURCE and not self._closed:
            self._held.setdefault(source_id, []).append(("segment", segment))
            return
        self.segments += 1
        record = {
            "source_id": source_id,
            "participant_id": entry.participant_id if entry else None,
            "display_name": entry.display_name if entry else None,
            "start": round(segment.start_s, 3),
            "end": round(segment.end_s, 3),
            "duration": round(segment.duration_s, 3),
            "reason": segment.reason,
        }
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
            # A source's frames reach the recorder up to ~1.2 s after they were due (the pipeline's settling second
            # plus the jitter buffer): stalled tracks are padded only behind that, so a late joiner's start is kept.
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
        self._io.submit(write_json_atomic, self._paths().call_json, data)

    async def _ticker(self) -> None:
        while not self._closed:
            await asyncio.sleep(TICK_S)
            if self._recorder is not None and self.clock.origin is not None:
                self._recorder.tick(self.clock.position())
            if self._pending_events and self._gate and self.clock.origin is not None:
                self._flush_events()

    # -- the end -----------------------------------------------------------------------------------------------------

    async def close(self) -> dict[str, Any]:
        """End every connection, finish the analysis and the files (all tracks the same length); idempotent."""
        if self._closed:
            return self._summary or {}
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for resource_id in list(self._connections):
            await self.remove_connection(resource_id)
        self.prompt_track.stop()
        end = max((a.end_position for a in self._analysis.values()), default=0)
        self._closed = True
        # Whatever the roster never named is written unattributed rather than lost.
        for source_id, held in list(self._held.items()):
            self._held.pop(source_id)
            for kind, item in held:
                if kind == "segment":
                    self._segment(source_id, item)
                else:
                    self._tone(source_id, item)
        if self._tick is not None:
            self._tick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick
        summary: dict[str, Any] = {"segments": self.segments, "tones": [t.digit for t in self.tones]}
        if self._gate:
            self._note("media_ended", {})
            if self._pending_events:
                self._flush_events()
            recording = await self._recording().close(end)
            summary["files"] = recording.to_json()
            self._write_metadata(final=True, summary=summary)
            await self._io.run(lambda: None)
        self._summary = summary
        return summary


def _stats(connection: SourceConnection) -> dict[str, Any]:
    stats = connection.pipeline.stats
    return {
        "frames_in": stats.frames_in,
        "frames_out": stats.frames_out,
        "gap_s": round(stats.gap_samples / SAMPLE_RATE, 3),
        "late_frames": stats.late_frames,
    }


def _wall() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
