"""``LiveTranscription``: every closed speech segment of every call is transcribed, in the background, never lost.

Segments arrive from the media plane as they close (:meth:`LiveTranscription.submit`, which never waits). Workers
transcribe them (the backend runs off the event loop) and each result is appended to ``<call>/transcript.json``,
given to ``on_entry`` (the CallManager's ``Bot.on_transcript``) and to the recordings index.

The backlog is bounded in memory: past ``max_in_memory`` waiting segments, a segment's audio is written to
``<call>/pending/<start_ms>-<source>.wav`` and only its place in the queue stays in memory. A backend that fails
(down, refusing) does not lose a segment either: it is written to ``pending/`` and retried with a growing delay. When
a call has ended and its last segment is transcribed, ``transcript.vtt`` and ``transcript.srt`` are written. At start
:meth:`LiveTranscription.resume` queues whatever ``pending/`` folders a previous process left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import wave
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter, Gauge

from mediabot.audio import SAMPLE_RATE
from mediabot.logs import log_context
from mediabot.store.layout import ensure_private_dir, open_private
from mediabot.transcribe.base import Transcriber, TranscriptEntry, TranscriptionError
from mediabot.transcribe.writers import read_transcript_json, write_subtitles, write_transcript_json

__all__ = ["BACKLOG", "LiveTranscription", "PendingSegment"]

logger = logging.getLogger(__name__)

BACKLOG = Gauge("mediabot_transcription_backlog", "Speech segments waiting to be transcribed (memory and disk).")
SPILLED = Gauge("mediabot_transcription_spilled", "Waiting segments whose audio is parked on disk.")
TRANSCRIBED = Counter("mediabot_segments_transcribed", "Speech segments transcribed.")
FAILURES = Counter("mediabot_transcription_failures", "Transcription attempts that failed (the segment is retried).")

PENDING = "pending"
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 60.0


@dataclass
class PendingSegment:
    """One segment waiting: where it belongs, and its audio (in memory, or parked in ``pending/``)."""

    call_id: str
    folder: Path
    participant_id: str | None
    display_name: str | None
    source_id: str | None
    start: float
    end: float
    audio: npt.NDArray[np.int16] | None = None
    parked: Path | None = None
    attempts: int = 0

    def load(self) -> npt.NDArray[np.int16]:
        """The segment's 16 kHz samples (from memory or from its parked file)."""
        if self.audio is not None:
            return self.audio
        assert self.parked is not None
        with wave.open(str(self.parked), "rb") as reader:
            return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)

    def park(self) -> None:
        """Write the audio to ``pending/`` (with who and when in the name's JSON sidecar) and free the memory."""
        if self.parked is not None or self.audio is None:
            return
        folder = self.folder / PENDING
        ensure_private_dir(folder)
        stem = f"{round(self.start * 1000):010d}-{self.source_id or 'main'}"
        path = folder / f"{stem}.wav"
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(self.audio.astype("<i2").tobytes())
        meta = {
            "call_id": self.call_id,
            "participant_id": self.participant_id,
            "display_name": self.display_name,
            "source_id": self.source_id,
            "start": self.start,
            "end": self.end,
        }
        fd = open_private(folder / f"{stem}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w") as sidecar:
            json.dump(meta, sidecar)
        self.parked = path
        self.audio = None

    def unpark(self) -> None:
        """Done with it: remove its parked files."""
        if self.parked is not None:
            for path in (self.parked, self.parked.with_suffix(".json")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            with contextlib.suppress(OSError):
                self.parked.parent.rmdir()  # only when it is empty


@dataclass
class _Call:
    folder: Path
    entries: list[TranscriptEntry] = field(default_factory=list)
    waiting: int = 0
    ended: bool = False


class LiveTranscription:
    """Transcribes segments as they close, with a bounded in-memory backlog and retries; see the module docstring."""

    def __init__(
        self,
        transcriber: Transcriber,
        *,
        workers: int = 1,
        max_in_memory: int = 32,
        on_entry: Callable[[TranscriptEntry], Awaitable[None]] | None = None,
    ) -> None:
        self.transcriber = transcriber
        self._workers = max(1, workers)
        self._max_in_memory = max_in_memory
        self._on_entry = on_entry
        self._queue: deque[PendingSegment] = deque()
        self._ready = asyncio.Event()
        self._calls: dict[str, _Call] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._holding: dict[int, PendingSegment] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers."""
        if not self._tasks:
            self._tasks = [
                asyncio.get_running_loop().create_task(self._work(), name=f"transcription {n}")
                for n in range(self._workers)
            ]

    async def aclose(self) -> None:
        """Stop the workers: what still waits is parked on disk, for :meth:`resume` after the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await asyncio.gather(*self._background, return_exceptions=True)
        # Segments a worker held when it was stopped are not lost either.
        for segment in [*self._holding.values(), *self._queue]:
            await asyncio.to_thread(segment.park)
        self._holding.clear()
        self._queue.clear()
        BACKLOG.set(0)
        SPILLED.set(0)
        await self.transcriber.aclose()

    @property
    def backlog(self) -> int:
        """Segments waiting (in memory or parked)."""
        return len(self._queue)

    # -- input -------------------------------------------------------------------------------------------------------

    def submit(self, segment: PendingSegment) -> None:
        """Queue a closed segment (never waits; past the memory bound its audio is parked on disk)."""
        call = self._calls.setdefault(segment.call_id, _Call(segment.folder))
        call.waiting += 1
        self._idle.clear()
        self._queue.append(segment)
        in_memory = sum(1 for waiting in self._queue if waiting.audio is not None)
        if segment.audio is not None and in_memory > self._max_in_memory:
            # The newest segment is the one that waits longest: its audio goes to disk until its turn.
            self._spawn(self._park(segment))
        self._update_gauges()
        self._ready.set()

    def call_ended(self, call_id: str) -> None:
        """The call's media ended: once its last segment is transcribed, its subtitles are written."""
        call = self._calls.get(call_id)
        if call is None:
            return
        call.ended = True
        if call.waiting == 0:
            self._spawn(self._finish_call(call_id))

    async def resume(self, output_dir: Path) -> int:
        """Queue the parked segments a previous process left under ``output_dir``; how many."""
        found = await asyncio.to_thread(_find_parked, output_dir)
        for segment in found:
            self._calls.setdefault(segment.call_id, _Call(segment.folder)).ended = True
            self.submit(segment)
        if found:
            logger.info("transcription: resuming %d parked segment(s)", len(found))
        return len(found)

    async def drained(self) -> None:
        """Wait until every segment submitted so far is transcribed and written."""
        await self._idle.wait()

    # -- work --------------------------------------------------------------------------------------------------------

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _park(self, segment: PendingSegment) -> None:
        if segment.audio is None or segment not in self._queue:
            return  # already on disk, or a worker took it meanwhile
        await asyncio.to_thread(segment.park)
        self._update_gauges()

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._ready.clear()
                await self._ready.wait()
            segment = self._queue.popleft()
            self._holding[id(segment)] = segment
            self._update_gauges()
            # The workers serve every call: each segment's lines carry its own call and participant.
            with log_context(call_id=segment.call_id, participant_id=segment.participant_id):
                await self._transcribe(segment)

    async def _transcribe(self, segment: PendingSegment) -> None:
        audio_in_memory = segment.audio
        try:
            audio = audio_in_memory if audio_in_memory is not None else await asyncio.to_thread(segment.load)
            result = await self.transcriber.transcribe(audio, SAMPLE_RATE)
        except (TranscriptionError, OSError) as exc:
            FAILURES.inc()
            segment.attempts += 1
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (segment.attempts - 1))
            logger.warning(
                "transcription of %s at %.2f s failed (%s); retrying in %.0f s",
                segment.call_id,
                segment.start,
                exc,
                delay,
            )
            await asyncio.to_thread(segment.park)
            self._holding.pop(id(segment), None)
            asyncio.get_running_loop().call_later(delay, self._requeue, segment)
            return
        TRANSCRIBED.inc()
        entry = TranscriptEntry(
            call_id=segment.call_id,
            participant_id=segment.participant_id,
            display_name=segment.display_name,
            source_id=segment.source_id,
            start=segment.start,
            end=segment.end,
            text=result.text,
            backend=result.backend,
            words=tuple(type(w)(w.text, segment.start + w.start, segment.start + w.end) for w in result.words),
        )
        await self._record(segment, entry)
        self._holding.pop(id(segment), None)

    def _requeue(self, segment: PendingSegment) -> None:
        self._queue.append(segment)
        self._update_gauges()
        self._ready.set()

    async def _record(self, segment: PendingSegment, entry: TranscriptEntry) -> None:
        call = self._calls.setdefault(segment.call_id, _Call(segment.folder))
        if not call.entries and (segment.folder / "transcript.json").is_file():
            call.entries = await asyncio.to_thread(read_transcript_json, segment.folder / "transcript.json")
        call.entries.append(entry)
        try:
            await asyncio.to_thread(
                write_transcript_json, segment.folder / "transcript.json", entry.call_id, call.entries
            )
            await asyncio.to_thread(segment.unpark)
        except OSError as exc:
            logger.error("cannot write the transcript of %s: %s", entry.call_id, exc)
        if self._on_entry is not None:
            try:
                await self._on_entry(entry)
            except Exception:
                logger.exception("the transcript hook failed for %s", entry.call_id)
        call.waiting -= 1
        if call.waiting == 0 and call.ended:
            await self._finish_call(segment.call_id)
        if not self._queue and not any(c.waiting for c in self._calls.values()):
            self._idle.set()

    async def _finish_call(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is None or not call.entries:
            return
        with log_context(call_id=call_id, participant_id=None):
            try:
                await asyncio.to_thread(write_subtitles, call.folder, sorted(call.entries, key=lambda e: e.start))
            except OSError as exc:
                logger.error("cannot write the subtitles of %s: %s", call_id, exc)

    def _update_gauges(self) -> None:
        BACKLOG.set(len(self._queue))
        SPILLED.set(sum(1 for s in self._queue if s.parked is not None))


def _find_parked(output_dir: Path) -> list[PendingSegment]:
    found: list[PendingSegment] = []
    if not output_dir.is_dir():
        return found
    for pending in sorted(output_dir.glob(f"*/{PENDING}")):
        for sidecar in sorted(pending.glob("*.json")):
            wav = sidecar.with_suffix(".wav")
            try:
                meta = json.loads(sidecar.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if not wav.is_file():
                continue
            found.append(
                PendingSegment(
                    call_id=str(meta["call_id"]),
                    folder=pending.parent,
                    participant_id=meta.get("participant_id"),
                    display_name=meta.get("display_name"),
                    source_id=meta.get("source_id"),
                    start=float(meta["start"]),
                    end=float(meta["end"]),
                    parked=wav,
                )
            )
    return found
