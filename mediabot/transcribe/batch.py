"""Transcription after the fact: a finished call folder, or any WAV file.

:func:`transcribe_call` reads ``call.json`` and ``segments.jsonl`` and transcribes every segment from its
participant's track (or from ``audio/mixed.wav`` when the segment has no participant or the participant no track),
then writes ``transcript.json``, ``transcript.vtt`` and ``transcript.srt``. :func:`transcribe_wav` takes any WAV
(any rate, any channels, PCM or float), downmixes and resamples it to 16 kHz, cuts it into speech segments with the
media plane's VAD segmenter, and writes ``<stem>.transcript.json/.vtt/.srt``.

A few segments are transcribed at a time (``concurrency``); file reads run off the event loop, and only the segments
being transcribed are held in memory for a call. Word times in the entries are on the call's (or file's) timeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
import soxr

from mediabot._errors import MediaError
from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.media.vad import SegmenterParams, SpeechSegmenter, VoiceActivityDetector, create_vad
from mediabot.store.layout import MIXED_NAME, WavFormatError, wav_info
from mediabot.transcribe.base import Transcriber, TranscriptEntry, Word
from mediabot.transcribe.writers import write_subtitles, write_transcript_json

__all__ = ["DEFAULT_CONCURRENCY", "RecordingReadError", "transcribe_call", "transcribe_wav"]

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 2
Progress = Callable[[int, int], None]
T = TypeVar("T")

_BLOCK_S = 10  # seconds of a WAV read (and resampled) at a time by transcribe_wav
_PCM = 1
_FLOAT = 3


class RecordingReadError(MediaError):
    """A call folder or WAV file that cannot be read (missing, damaged, or an audio format we cannot decode)."""


# -- WAV reading -----------------------------------------------------------------------------------------------------


class _WavFile:
    """A WAV file read by position (``os.pread``: safe from several threads), decoded to mono.

    Reads PCM 8/16/24/32-bit and IEEE float 32/64-bit, plain or WAVE_FORMAT_EXTENSIBLE, RIFF or RF64 (through
    :func:`mediabot.store.layout.wav_info`). A data chunk whose size was never written (a recording cut short)
    reaches to the end of the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise RecordingReadError(f"cannot open {path}: {exc.strerror or exc}") from exc
        try:
            self._parse()
        except BaseException:
            os.close(self._fd)
            raise

    def _parse(self) -> None:
        try:
            info = wav_info(self._fd)
        except WavFormatError as exc:
            raise RecordingReadError(f"{self.path}: {exc}") from exc
        tag, channels, rate, bits = info.format_tag, info.channels, info.rate, info.bits
        supported = (tag == _PCM and bits in (8, 16, 24, 32)) or (tag == _FLOAT and bits in (32, 64))
        if not supported or info.block_align != channels * bits // 8:
            raise RecordingReadError(
                f"{self.path}: unsupported WAV format (format {tag:#x}, {bits} bits, {channels} channel(s), {rate} Hz)"
            )
        self.tag, self.channels, self.rate, self.bits, self.block_align = tag, channels, rate, bits, info.block_align
        self._data_start = info.data_offset
        self.frames: int = info.frames

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> _WavFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _raw(self, first: int, count: int) -> bytes:
        first = min(max(first, 0), self.frames)
        count = max(0, min(count, self.frames - first))
        return os.pread(self._fd, count * self.block_align, self._data_start + first * self.block_align)

    def read_int16(self, first: int, count: int) -> npt.NDArray[np.int16]:
        """Frames ``[first, first + count)`` (clipped to the file) as mono int16 at the file's rate."""
        raw = self._raw(first, count)
        if self.tag == _PCM and self.bits == 16 and self.channels == 1:
            return np.frombuffer(raw, "<i2").astype(np.int16)  # the call tracks: exact samples, no float round trip
        return _to_int16(self._mono_float(raw))

    def read_float(self, first: int, count: int) -> npt.NDArray[np.float32]:
        """Frames ``[first, first + count)`` (clipped to the file) as mono float32 in [-1, 1]."""
        return self._mono_float(self._raw(first, count))

    def _mono_float(self, raw: bytes) -> npt.NDArray[np.float32]:
        usable = len(raw) - len(raw) % self.block_align
        data = np.frombuffer(raw[:usable], np.uint8)
        if self.tag == _FLOAT:
            samples = data.view("<f4" if self.bits == 32 else "<f8").astype(np.float32)
        elif self.bits == 8:
            samples = (data.astype(np.float32) - 128.0) / 128.0
        elif self.bits == 16:
            samples = data.view("<i2").astype(np.float32) / 32768.0
        elif self.bits == 24:
            wide = np.zeros((data.size // 3, 4), np.uint8)
            wide[:, 1:] = data.reshape(-1, 3)  # the 3 bytes in the top of an int32 keep the sign
            samples = wide.view("<i4").reshape(-1).astype(np.float32) / 2_147_483_648.0
        else:
            samples = data.view("<i4").astype(np.float32) / 2_147_483_648.0
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return samples


def _to_int16(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    scaled: npt.NDArray[np.float32] = np.rint(samples * np.float32(32768.0))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


# -- a call folder ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Segment:
    participant_id: str | None
    display_name: str | None
    source_id: str | None
    start: float
    end: float
    track: Path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError as exc:
        raise RecordingReadError(f"{path} is missing: is {path.parent} a call folder?") from exc
    except (OSError, ValueError) as exc:
        raise RecordingReadError(f"cannot read {path}: {exc}") from exc


def _plan_call(folder: Path) -> tuple[str, list[_Segment]]:
    """The call's id and its segments, each with the track it is cut from (in ``segments.jsonl`` order)."""
    call = _read_json(folder / "call.json")
    if not isinstance(call, dict):
        raise RecordingReadError(f"{folder / 'call.json'} is not a JSON object")
    call_id = str(call.get("call_id") or folder.name)
    tracks: dict[str, tuple[str | None, Path | None]] = {}
    inside = folder.resolve()
    for person in call.get("participants") or []:
        if not isinstance(person, dict) or not person.get("id"):
            continue
        file = person.get("file")
        track = folder / str(file) if file else None
        if track is not None and not (track.resolve().is_relative_to(inside) and track.is_file()):
            track = None  # no file (the bot itself, a track that failed), or one outside the call's folder
        tracks[str(person["id"])] = (person.get("display_name"), track)
    mixed = folder / "audio" / f"{MIXED_NAME}.wav"
    try:
        lines = (folder / "segments.jsonl").read_text("utf-8").splitlines()
    except FileNotFoundError:
        lines = []  # a call in which nobody spoke
    except OSError as exc:
        raise RecordingReadError(f"cannot read {folder / 'segments.jsonl'}: {exc}") from exc
    segments: list[_Segment] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            start, end = float(record["start"]), float(record["end"])
        except (ValueError, KeyError, TypeError):
            logger.warning("%s line %d is not a segment; skipped", folder / "segments.jsonl", number)
            continue
        participant_id = record.get("participant_id")
        display_name, track = tracks.get(str(participant_id), (None, None)) if participant_id else (None, None)
        if track is None:
            if not mixed.is_file():
                logger.warning("no audio for the segment at %.3f s of %s (no track, no mix); skipped", start, call_id)
                continue
            track = mixed
        segments.append(
            _Segment(
                participant_id=str(participant_id) if participant_id else None,
                display_name=record.get("display_name") or display_name,
                source_id=str(record["source_id"]) if record.get("source_id") is not None else None,
                start=start,
                end=end,
                track=track,
            )
        )
    return call_id, segments


async def transcribe_call(
    folder: Path,
    transcriber: Transcriber,
    *,
    progress: Progress | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[TranscriptEntry]:
    """Transcribe every speech segment of a finished call folder; writes ``transcript.json/.vtt/.srt`` there.

    Returns the entries in start order. ``progress(done, total)`` is called at the start and after each segment.
    A backend failure (:class:`TranscriptionError`) stops the run and propagates; nothing is written then.
    """
    folder = Path(folder)
    call_id, plan = await asyncio.to_thread(_plan_call, folder)
    files: dict[Path, _WavFile] = {}
    try:
        for segment in plan:
            if segment.track not in files:
                files[segment.track] = await asyncio.to_thread(_WavFile, segment.track)

        def cut(segment: _Segment) -> npt.NDArray[np.int16]:
            wav = files[segment.track]
            first = round(segment.start * wav.rate)
            audio = wav.read_int16(first, round(segment.end * wav.rate) - first)
            if wav.rate != SAMPLE_RATE and audio.size:
                audio = _to_int16(soxr.resample(audio.astype(np.float32) / 32768.0, wav.rate, SAMPLE_RATE))
            return audio

        async def one(segment: _Segment) -> TranscriptEntry:
            audio = await asyncio.to_thread(cut, segment)
            return await _entry(
                transcriber,
                audio,
                call_id,
                segment.participant_id,
                segment.display_name,
                segment.source_id,
                segment.start,
                segment.end,
            )

        entries = await _run_all(plan, one, concurrency, progress)
    finally:
        for wav in files.values():
            wav.close()
    entries.sort(key=lambda entry: entry.start)
    await asyncio.to_thread(_write_all, folder, "transcript", call_id, entries)
    return entries


# -- any WAV file ----------------------------------------------------------------------------------------------------


def _find_speech(
    path: Path, vad: VoiceActivityDetector, params: SegmenterParams | None
) -> tuple[list[tuple[int, int, npt.NDArray[np.int16]]], int]:
    """The speech segments of a WAV (16 kHz samples ``[start, end)`` and their audio), and its length in samples."""
    segmenter = SpeechSegmenter(vad, params)
    found: list[tuple[int, int, npt.NDArray[np.int16]]] = []
    with _WavFile(path) as wav:
        resampler = None if wav.rate == SAMPLE_RATE else soxr.ResampleStream(wav.rate, SAMPLE_RATE, 1, "float32")
        carry = np.empty(0, np.int16)
        position = 0
        block = _BLOCK_S * wav.rate
        for first in range(0, wav.frames + 1, block):  # one more round (maybe empty) to drain the resampler
            last = first + block > wav.frames
            samples = wav.read_float(first, block)
            if resampler is not None:
                samples = resampler.resample_chunk(samples, last=last)
            pending = np.concatenate((carry, _to_int16(samples)))
            if last and pending.size % FRAME_SAMPLES:
                pending = np.concatenate((pending, np.zeros(FRAME_SAMPLES - pending.size % FRAME_SAMPLES, np.int16)))
            whole = pending.size - pending.size % FRAME_SAMPLES
            for offset in range(0, whole, FRAME_SAMPLES):
                closed = segmenter.process(position + offset, pending[offset : offset + FRAME_SAMPLES])
                if closed is not None:
                    found.append((closed.start, closed.end, closed.audio))
            position += whole
            carry = pending[whole:]
            if last:
                break
        closed = segmenter.flush(position)
        if closed is not None:
            found.append((closed.start, closed.end, closed.audio))
        total = round(wav.duration_s * SAMPLE_RATE)
    return found, total


async def transcribe_wav(
    path: Path,
    transcriber: Transcriber,
    *,
    vad: Literal["webrtc", "silero"] | VoiceActivityDetector = "webrtc",
    params: SegmenterParams | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[TranscriptEntry]:
    """Transcribe the speech in any WAV file; writes ``<stem>.transcript.json/.vtt/.srt`` beside it (or in ``out``).

    The file is downmixed and resampled to 16 kHz and cut into speech segments by ``vad`` (a backend name or a
    fresh detector) with ``params``. Entries carry ``call_id`` = the file's stem, no participant, file-timeline
    seconds. ``progress(done, total)`` counts segments.
    """
    path = Path(path)
    detector = create_vad(vad) if isinstance(vad, str) else vad
    found, total = await asyncio.to_thread(_find_speech, path, detector, params)
    call_id = path.stem

    async def one(segment: tuple[int, int, npt.NDArray[np.int16]]) -> TranscriptEntry:
        start, end, audio = segment
        end = min(end, total)
        return await _entry(transcriber, audio, call_id, None, None, None, start / SAMPLE_RATE, end / SAMPLE_RATE)

    entries = await _run_all(found, one, concurrency, progress)
    entries.sort(key=lambda entry: entry.start)
    target = Path(out) if out is not None else path.parent
    await asyncio.to_thread(_write_all, target, f"{path.stem}.transcript", call_id, entries)
    return entries


# -- shared ----------------------------------------------------------------------------------------------------------


async def _entry(
    transcriber: Transcriber,
    audio: npt.NDArray[np.int16],
    call_id: str,
    participant_id: str | None,
    display_name: str | None,
    source_id: str | None,
    start: float,
    end: float,
) -> TranscriptEntry:
    if audio.size:
        result = await transcriber.transcribe(audio, SAMPLE_RATE)
        text, backend, words = result.text, result.backend, result.words
    else:
        text, backend, words = "", transcriber.name, ()  # the track ends before the segment: nothing to hear
    return TranscriptEntry(
        call_id=call_id,
        participant_id=participant_id,
        display_name=display_name,
        source_id=source_id,
        start=start,
        end=end,
        text=text,
        backend=backend,
        words=tuple(Word(w.text, start + w.start, start + w.end) for w in words),
    )


async def _run_all(
    items: Sequence[T],
    work: Callable[[T], Awaitable[TranscriptEntry]],
    concurrency: int,
    progress: Progress | None,
) -> list[TranscriptEntry]:
    """``work`` on every item, ``concurrency`` at a time; the first failure cancels the rest and propagates."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    total = len(items)
    results: list[TranscriptEntry | None] = [None] * total
    queue: Iterator[int] = iter(range(total))
    done = 0
    if progress is not None:
        progress(0, total)

    async def worker() -> None:
        nonlocal done
        for index in queue:  # shared: each index is taken by exactly one worker
            results[index] = await work(items[index])
            done += 1
            if progress is not None:
                progress(done, total)

    tasks = [asyncio.create_task(worker()) for _ in range(min(concurrency, total))]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return [entry for entry in results if entry is not None]


def _write_all(folder: Path, stem: str, call_id: str, entries: list[TranscriptEntry]) -> None:
    write_transcript_json(folder / f"{stem}.json", call_id, entries)
    write_subtitles(folder, entries, stem=stem)
