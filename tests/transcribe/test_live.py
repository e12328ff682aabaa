"""Live transcription: every segment transcribed in the background, bounded memory, retries, nothing lost."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from mediabot.transcribe import live as live_module
from mediabot.transcribe.base import TranscriptEntry, Transcription, TranscriptionError, Word
from mediabot.transcribe.live import LiveTranscription, PendingSegment


class FakeTranscriber:
    """Says how long each segment was; can be slow (held by an event) or fail a few times."""

    name = "fake"

    def __init__(self, *, failures: int = 0) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = failures
        self.heard: list[int] = []
        self.closed = False

    async def transcribe(self, audio: npt.NDArray[np.int16], sample_rate: int) -> Transcription:
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise TranscriptionError("the backend is down")
        self.heard.append(int(audio[0]))
        return Transcription(text=f"segment {int(audio[0])}", backend=self.name, words=(Word("segment", 0.1, 0.4),))

    async def aclose(self) -> None:
        self.closed = True


def segment(folder: Path, n: int) -> PendingSegment:
    audio = np.full(1600 + n, n, np.int16)
    return PendingSegment(
        call_id=folder.name,
        folder=folder,
        participant_id=f"p{n % 2}",
        display_name=f"Speaker {n % 2}",
        source_id=str(n % 2),
        start=float(n),
        end=n + 0.5,
        audio=audio,
    )


def transcript(folder: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads((folder / "transcript.json").read_text())["entries"]
    return entries


async def test_segments_are_transcribed_written_and_handed_on(tmp_path: Path) -> None:
    folder = tmp_path / "call-1"
    folder.mkdir()
    seen: list[TranscriptEntry] = []

    async def on_entry(entry: TranscriptEntry) -> None:
        seen.append(entry)

    fake = FakeTranscriber()
    live = LiveTranscription(fake, on_entry=on_entry)
    live.start()
    for n in (3, 1, 2):
        live.submit(segment(folder, n))
    live.call_ended("call-1")
    await live.drained()
    await live.aclose()
    entries = transcript(folder)
    assert [e["start"] for e in entries] == [1.0, 2.0, 3.0]  # in call-timeline order
    assert entries[0]["text"] == "segment 1" and entries[0]["display_name"] == "Speaker 1"
    assert entries[0]["words"] == [{"text": "segment", "start": 1.1, "end": 1.4}]  # moved onto the call timeline
    assert [e.text for e in seen] == ["segment 3", "segment 1", "segment 2"]
    vtt = (folder / "transcript.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "<v Speaker 1>segment 1" in vtt
    assert (folder / "transcript.srt").is_file()
    assert fake.closed


async def test_a_slow_backend_parks_the_backlog_on_disk_and_loses_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "call-2"
    folder.mkdir()
    fake = FakeTranscriber()
    fake.gate.clear()  # the backend is stuck for now
    live = LiveTranscription(fake, max_in_memory=2)
    live.start()
    for n in range(10):
        live.submit(segment(folder, n))
    await asyncio.sleep(0.2)  # let the parking happen
    parked = sorted(p.name for p in (folder / "pending").glob("*.wav"))
    assert len(parked) >= 7  # at most two in memory (plus the one a worker holds)
    assert live.backlog >= 9
    assert live_module.BACKLOG._value.get() == live.backlog
    fake.gate.set()
    await live.drained()
    await live.aclose()
    assert sorted(fake.heard) == list(range(10))
    assert [e["start"] for e in transcript(folder)] == [float(n) for n in range(10)]
    assert not (folder / "pending").exists()  # every parked segment was transcribed and removed


async def test_a_failing_backend_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_module, "RETRY_FIRST_S", 0.01)
    folder = tmp_path / "call-3"
    folder.mkdir()
    fake = FakeTranscriber(failures=3)
    live = LiveTranscription(fake)
    live.start()
    live.submit(segment(folder, 5))
    live.submit(segment(folder, 6))
    await live.drained()
    await live.aclose()
    assert sorted(fake.heard) == [5, 6]
    assert len(transcript(folder)) == 2


async def test_what_waits_at_shutdown_is_transcribed_after_the_next_start(tmp_path: Path) -> None:
    folder = tmp_path / "call-4"
    folder.mkdir()
    stuck = FakeTranscriber()
    stuck.gate.clear()
    first = LiveTranscription(stuck)
    first.start()
    for n in range(3):
        first.submit(segment(folder, n))
    await asyncio.sleep(0.05)
    await first.aclose()  # the process stops: the three wait on disk
    assert len(list((folder / "pending").glob("*.wav"))) == 3

    fake = FakeTranscriber()
    second = LiveTranscription(fake)
    second.start()
    assert await second.resume(tmp_path) == 3
    await second.drained()
    await second.aclose()
    assert sorted(fake.heard) == [0, 1, 2]
    entries = transcript(folder)
    assert [e["participant_id"] for e in entries] == ["p0", "p1", "p0"]
    assert (folder / "transcript.vtt").is_file()  # the call had ended: its subtitles are written
