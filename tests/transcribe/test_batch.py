"""Batch transcription: call folders (fake and real pocketsphinx) and any WAV file (VAD-cut, any format)."""

from __future__ import annotations

import asyncio
import json
import stat
import struct
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
import soxr

from mediabot.media.vad import WebRtcVad
from mediabot.store import layout
from mediabot.store.layout import wav_header
from mediabot.transcribe.base import Transcription, TranscriptionError, Word
from mediabot.transcribe.batch import RecordingReadError, transcribe_call, transcribe_wav
from mediabot.transcribe.sphinx import PocketSphinxTranscriber
from mediabot.transcribe.writers import read_transcript_json

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
RATE = 16000


def load(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SPEECH / f"{name}.wav"), "rb") as reader:
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def recall(reference: str, hypothesis: str) -> float:
    wanted, found = reference.split(), hypothesis.lower().split()
    hits = 0
    for word in wanted:
        if word in found:
            found.remove(word)
            hits += 1
    return hits / len(wanted)


class FakeTranscriber:
    """Keeps every segment's audio; answers with its length and one word 0.1-0.2 s in."""

    name = "fake"

    def __init__(self) -> None:
        self.heard: list[npt.NDArray[np.int16]] = []
        self.rates: list[int] = []

    async def transcribe(self, audio: npt.NDArray[np.int16], sample_rate: int) -> Transcription:
        self.heard.append(audio.copy())
        self.rates.append(sample_rate)
        return Transcription(text=f"heard {audio.size}", backend=self.name, words=(Word("heard", 0.1, 0.2),))

    async def aclose(self) -> None:
        return None


def write_track(path: Path, samples: npt.NDArray[np.int16], *, sizes_written: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = samples.astype("<i2").tobytes()
    path.write_bytes(wav_header(len(data) if sizes_written else 0) + data)


def make_call(
    folder: Path,
    tracks: dict[str, npt.NDArray[np.int16]],
    segments: list[dict[str, Any]],
    *,
    extra_participants: Sequence[dict[str, Any]] = (),
    broken_lines: tuple[str, ...] = (),
) -> None:
    participants = [
        {"id": pid, "display_name": f"Person {pid}", "source_ids": [str(n)], "file": f"audio/{pid}.wav"}
        for n, pid in enumerate(tracks)
    ]
    for pid, samples in tracks.items():
        write_track(folder / "audio" / f"{pid}.wav", samples)
    mixed = np.clip(np.sum([t.astype(np.int32) for t in tracks.values()], axis=0), -32768, 32767).astype(np.int16)
    write_track(folder / "audio" / "mixed.wav", mixed)
    call = {"call_id": folder.name, "sample_rate": RATE, "participants": participants + list(extra_participants)}
    (folder / "call.json").write_text(json.dumps(call))
    lines = [json.dumps(s) for s in segments] + list(broken_lines)
    (folder / "segments.jsonl").write_text("\n".join(lines) + "\n")


def seg(pid: str | None, start: float, end: float, name: str | None = None, source: str | None = "1") -> dict[str, Any]:
    times = {"start": start, "end": end, "duration": round(end - start, 3)}
    return {"source_id": source, "participant_id": pid, "display_name": name, **times, "reason": "silence"}


def ramp(length: int, offset: int) -> npt.NDArray[np.int16]:
    return ((np.arange(length) + offset) % 20000 - 10000).astype(np.int16)


async def test_each_segment_gets_exactly_its_samples_from_the_right_track(tmp_path: Path) -> None:
    folder = tmp_path / "call-a"
    length = 6 * RATE
    tracks = {"alice": ramp(length, 0), "bob": ramp(length, 7777)}
    mixed = np.clip(tracks["alice"].astype(np.int32) + tracks["bob"], -32768, 32767).astype(np.int16)
    segments = [
        seg("bob", 2.5, 4.0, "Bob B."),  # closed first, starts later
        seg("alice", 0.25, 1.5, None),  # no name in the segment: the roster's
        seg(None, 4.125, 5.0, None, source="main"),  # nobody known: from the mix
        seg("ghost", 5.0, 5.5, "Ghost"),  # a participant without a track file: from the mix
        seg("eve", 5.5, 5.75, "Eve"),  # a track outside the call's folder is never read: from the mix
    ]
    make_call(
        folder,
        tracks,
        segments,
        extra_participants=[
            {"id": "ghost", "display_name": "Ghost", "source_ids": ["9"], "file": "audio/ghost.wav"},
            {"id": "eve", "display_name": "Eve", "source_ids": ["8"], "file": "../elsewhere.wav"},
        ],
        broken_lines=("{not json", '{"source_id": "1"}'),
    )
    write_track(tmp_path / "elsewhere.wav", np.full(length, 1234, np.int16))
    fake = FakeTranscriber()
    calls: list[tuple[int, int]] = []
    entries = await transcribe_call(folder, fake, progress=lambda done, total: calls.append((done, total)))

    expected = {
        (2.5, 4.0): tracks["bob"][40000:64000],
        (0.25, 1.5): tracks["alice"][4000:24000],
        (4.125, 5.0): mixed[66000:80000],
        (5.0, 5.5): mixed[80000:88000],
        (5.5, 5.75): mixed[88000:92000],
    }
    assert len(fake.heard) == 5 and set(fake.rates) == {RATE}
    for audio in fake.heard:
        assert any(audio.size == want.size and np.array_equal(audio, want) for want in expected.values())
    assert [(e.start, e.end) for e in entries] == [(0.25, 1.5), (2.5, 4.0), (4.125, 5.0), (5.0, 5.5), (5.5, 5.75)]
    for e in entries:
        assert e.text == f"heard {expected[(e.start, e.end)].size}"
        assert e.words == (Word("heard", e.start + 0.1, e.start + 0.2),)  # on the call timeline
        assert e.call_id == "call-a" and e.backend == "fake"
    assert [(e.participant_id, e.display_name, e.source_id) for e in entries] == [
        ("alice", "Person alice", "1"),
        ("bob", "Bob B.", "1"),
        (None, None, "main"),
        ("ghost", "Ghost", "1"),
        ("eve", "Eve", "1"),
    ]
    assert calls[0] == (0, 5) and calls[-1] == (5, 5) and len(calls) == 6
    assert read_transcript_json(folder / "transcript.json") == entries
    for name in ("transcript.json", "transcript.vtt", "transcript.srt"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    vtt = (folder / "transcript.vtt").read_text()
    assert "<v Person alice>heard 20000" in vtt and "<v Unknown>heard 14000" in vtt


async def test_a_track_cut_short_by_a_crash_is_still_read(tmp_path: Path) -> None:
    folder = tmp_path / "call-b"
    track = ramp(3 * RATE, 5)
    make_call(folder, {"alice": track}, [seg("alice", 1.0, 2.0), seg("alice", 2.5, 3.5)])
    write_track(folder / "audio" / "alice.wav", track, sizes_written=False)  # header sizes never written
    fake = FakeTranscriber()
    entries = await transcribe_call(folder, fake)
    heard = sorted(fake.heard, key=len, reverse=True)  # two at a time: in either order
    assert np.array_equal(heard[0], track[16000:32000])
    assert np.array_equal(heard[1], track[40000:48000])  # what the track has of a segment past its end
    assert [e.text for e in entries] == ["heard 16000", "heard 8000"]


async def test_rf64_tracks_are_cut_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A call past 4 GiB has RF64 files; the RF64 switch is lowered to 1000 bytes so that a short call has them too.
    monkeypatch.setattr(layout, "RIFF_LIMIT", 1000)
    folder = tmp_path / "call-rf64"
    tracks = {"alice": ramp(3 * RATE, 11), "bob": ramp(3 * RATE, 999)}
    make_call(folder, tracks, [seg("alice", 0.5, 1.25), seg("bob", 2.0, 3.0)])
    assert (folder / "audio" / "alice.wav").read_bytes()[:4] == b"RF64"
    fake = FakeTranscriber()
    entries = await transcribe_call(folder, fake)
    heard = sorted(fake.heard, key=len)
    assert np.array_equal(heard[0], tracks["alice"][8000:20000])
    assert np.array_equal(heard[1], tracks["bob"][32000:48000])
    assert [e.text for e in entries] == ["heard 12000", "heard 16000"]


async def test_an_rf64_file_from_ffmpeg_is_transcribed(tmp_path: Path) -> None:
    timeline, _ = speech_timeline()
    samples = np.rint(timeline[: 5 * RATE] * 32767).astype(np.int16)
    path = tmp_path / "broadcast.wav"
    with av.open(str(path), "w", format="wav", options={"rf64": "always"}) as container:
        stream = container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert path.read_bytes()[:4] == b"RF64"
    fake = FakeTranscriber()
    entries = await transcribe_wav(path, fake)
    assert len(entries) == 1
    start, end = round(entries[0].start * RATE), round(entries[0].end * RATE)
    np.testing.assert_array_equal(fake.heard[0], samples[start:end])


class GatedTranscriber:
    """Each segment waits until the test releases it; counts how many run at once."""

    name = "gated"

    def __init__(self, fail_on: int | None = None) -> None:
        self.waiting: list[asyncio.Future[None]] = []
        self.arrived = asyncio.Event()
        self.running = 0
        self.most = 0
        self.fail_on = fail_on
        self.calls = 0
        self.finished: list[int] = []

    async def transcribe(self, audio: npt.NDArray[np.int16], sample_rate: int) -> Transcription:
        self.calls += 1
        if self.calls == self.fail_on:
            raise TranscriptionError("the backend is down")
        self.running += 1
        self.most = max(self.most, self.running)
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(gate)
        self.arrived.set()
        try:
            await gate
        finally:
            self.running -= 1
        self.finished.append(int(audio[0]))
        return Transcription(text=f"from {int(audio[0])}", backend=self.name)

    async def aclose(self) -> None:
        return None

    async def next_gate(self, pending: int = 1) -> asyncio.Future[None]:
        """The newest unreleased gate, once at least `pending` are waiting."""
        while sum(not gate.done() for gate in self.waiting) < pending:
            self.arrived.clear()
            await self.arrived.wait()
        return [gate for gate in self.waiting if not gate.done()][-1]


async def test_a_slow_transcriber_loses_nothing_and_runs_two_at_a_time(tmp_path: Path) -> None:
    folder = tmp_path / "call-c"
    length = 20 * RATE
    track = (np.arange(length) // RATE).astype(np.int16)  # each second's samples say which second it is
    starts = [7, 1, 12, 3, 18, 9, 0, 15]
    make_call(folder, {"alice": track}, [seg("alice", s, s + 0.5) for s in starts])
    gated = GatedTranscriber()
    task = asyncio.create_task(transcribe_call(folder, gated))
    released = 0
    while released < len(starts):
        # two in flight until the last one, and the newest released first: answers come back out of order
        gate = await gated.next_gate(pending=min(2, len(starts) - released))
        gate.set_result(None)
        released += 1
    entries = await task
    assert gated.most == 2
    assert sorted(gated.finished) == sorted(starts) and gated.finished != starts
    assert [e.start for e in entries] == sorted(starts)
    assert [e.text for e in entries] == [f"from {s}" for s in sorted(starts)]
    stored = read_transcript_json(folder / "transcript.json")
    assert [e.start for e in stored] == sorted(starts) and len(stored) == len(starts)


async def test_a_failing_backend_stops_the_run_and_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "call-d"
    make_call(folder, {"alice": ramp(5 * RATE, 0)}, [seg("alice", s, s + 0.5) for s in (0, 1, 2, 3)])
    gated = GatedTranscriber(fail_on=2)
    with pytest.raises(TranscriptionError, match="down"):
        await transcribe_call(folder, gated)
    assert gated.running == 0  # the other worker was cancelled, not left waiting
    assert not (folder / "transcript.json").exists()


async def test_not_a_call_folder(tmp_path: Path) -> None:
    with pytest.raises(RecordingReadError, match=r"call\.json"):
        await transcribe_call(tmp_path, FakeTranscriber())


async def test_a_call_nobody_spoke_in(tmp_path: Path) -> None:
    folder = tmp_path / "call-e"
    make_call(folder, {"alice": np.zeros(RATE, np.int16)}, [])
    (folder / "segments.jsonl").unlink()
    assert await transcribe_call(folder, FakeTranscriber()) == []
    assert read_transcript_json(folder / "transcript.json") == []
    assert (folder / "transcript.vtt").read_text() == "WEBVTT\n"


# -- real speech -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphinx() -> Iterator[PocketSphinxTranscriber]:
    transcriber = PocketSphinxTranscriber(workers=1)
    yield transcriber
    asyncio.run(transcriber.aclose())


async def test_pocketsphinx_transcribes_a_call_of_real_speech(tmp_path: Path, sphinx: PocketSphinxTranscriber) -> None:
    folder = tmp_path / "call-real"
    length = 9 * RATE
    first, second = load("austen_0880"), load("austen_0930")
    alice, bob = np.zeros(length, np.int16), np.zeros(length, np.int16)
    alice[RATE : RATE + first.size] = first  # speech from 1.25 s to 3.77 s
    bob[5 * RATE : 5 * RATE + second.size] = second  # speech from 5.27 s to 8.04 s
    make_call(folder, {"alice": alice, "bob": bob}, [seg("bob", 4.9, 8.4, "Bob"), seg("alice", 0.9, 4.1, "Alice")])
    entries = await transcribe_call(folder, sphinx)
    assert [e.display_name for e in entries] == ["Alice", "Bob"]
    assert recall("he was not an ill disposed young man", entries[0].text) >= 0.5, entries[0].text
    assert recall("he might even have been made amiable himself", entries[1].text) >= 0.5, entries[1].text
    for e in entries:
        assert e.backend == "pocketsphinx"
        assert all(e.start <= w.start < w.end <= e.end + 0.02 for w in e.words)
    # Word times are on the call timeline: the forced alignment's times in the clip, plus where the clip starts.
    aligned = {"might": 0.38, "even": 0.64, "have": 0.92, "been": 1.07, "made": 1.33, "amiable": 1.70, "himself": 2.27}
    matched = [w for w in entries[1].words if w.text in aligned]
    assert len(matched) >= 4, entries[1].words
    for word in matched:
        assert abs(word.start - (5.0 + aligned[word.text])) <= 0.2, word
    vtt = (folder / "transcript.vtt").read_text()
    assert f"<v Alice>{entries[0].text}" in vtt and f"<v Bob>{entries[1].text}" in vtt


# -- any WAV ---------------------------------------------------------------------------------------------------------


def speech_timeline() -> tuple[npt.NDArray[np.float32], list[tuple[float, float]]]:
    """11 s at 16 kHz: the two clips at 1 s and 6 s, quiet elsewhere; and where their speech is (seconds)."""
    timeline = np.zeros(11 * RATE, np.float32)
    first, second = load("austen_0880"), load("austen_0930")
    timeline[RATE : RATE + first.size] = first / 32768.0
    timeline[6 * RATE : 6 * RATE + second.size] = second / 32768.0
    return timeline, [(1.25, 3.77), (6.27, 9.04)]


def write_any_wav(path: Path, samples: npt.NDArray[np.float64], rate: int, kind: str) -> None:
    """``samples`` (frames x channels, -1..1) as PCM16, PCM24, PCM8 or IEEE float32 (format 3)."""
    channels = samples.shape[1]
    if kind == "float32":
        data = samples.astype("<f4").tobytes()
        fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
        body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
        path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        return
    width = {"pcm16": 2, "pcm24": 3, "pcm8": 1}[kind]
    if width == 1:
        raw = np.clip(np.rint(samples * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    else:
        ints = np.clip(np.rint(samples * 2 ** (8 * width - 1)), -(2 ** (8 * width - 1)), 2 ** (8 * width - 1) - 1)
        raw = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :width].tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(raw)


@pytest.mark.parametrize(
    ("kind", "rate", "channels"),
    [("pcm16", 16000, 1), ("pcm16", 44100, 2), ("pcm24", 48000, 1), ("float32", 22050, 2), ("pcm8", 8000, 1)],
)
async def test_any_wav_is_cut_into_its_speech(tmp_path: Path, kind: str, rate: int, channels: int) -> None:
    timeline, speech = speech_timeline()
    resampled = soxr.resample(timeline, RATE, rate) if rate != RATE else timeline.astype(np.float64)
    # Stereo: the speech on the left, half of it on the right (the downmix averages to 3/4 of it).
    stereo = np.stack([resampled, resampled * 0.5], axis=1) if channels == 2 else resampled[:, None]
    path = tmp_path / "talk.wav"
    write_any_wav(path, stereo, rate, kind)
    out = tmp_path / "out"
    fake = FakeTranscriber()
    calls: list[tuple[int, int]] = []
    entries = await transcribe_wav(path, fake, out=out, progress=lambda d, t: calls.append((d, t)))

    assert len(entries) == 2, [(e.start, e.end) for e in entries]
    assert calls[0] == (0, 2) and calls[-1] == (2, 2)
    scale = 0.75 if channels == 2 else 1.0
    for entry, (start, end), audio in zip(entries, speech, fake.heard, strict=True):
        assert entry.call_id == "talk" and entry.participant_id is None and entry.display_name is None
        assert entry.start <= start and entry.end >= end  # the whole utterance is in its segment
        assert entry.end - entry.start < (end - start) + 1.5  # and not much more
        assert audio.size == round((entry.end - entry.start) * RATE)
        # What the backend got is the utterance itself, at 16 kHz (compare where the clip lies).
        offset = round((start - entry.start) * RATE)
        got = audio[offset : offset + int(2.4 * RATE)].astype(np.float64)
        want = timeline[round(start * RATE) : round(start * RATE) + int(2.4 * RATE)] * 32768.0 * scale
        correlation = np.dot(got, want) / (np.linalg.norm(got) * np.linalg.norm(want))
        assert correlation > (0.8 if rate == 8000 else 0.98), correlation  # 8 kHz has lost the top half
        if kind != "pcm8":
            assert np.linalg.norm(got) == pytest.approx(np.linalg.norm(want), rel=0.05)
    assert set(fake.rates) == {RATE}
    assert [e.to_json() for e in read_transcript_json(out / "talk.transcript.json")] == [e.to_json() for e in entries]
    assert (out / "talk.transcript.vtt").read_text().startswith("WEBVTT")
    assert (out / "talk.transcript.srt").read_text().startswith("1\n")


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_wav_outputs_go_beside_it_by_default(tmp_path: Path) -> None:
    timeline, _ = speech_timeline()
    path = tmp_path / "meeting.wav"
    write_any_wav(path, timeline[: 5 * RATE, None].astype(np.float64), RATE, "pcm16")
    entries = await transcribe_wav(path, FakeTranscriber(), vad=WebRtcVad(3))  # a detector of one's own
    assert len(entries) == 1
    assert names(tmp_path) == [
        "meeting.transcript.json",
        "meeting.transcript.srt",
        "meeting.transcript.vtt",
        "meeting.wav",
    ]


async def test_what_is_not_a_wav_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "song.mp3"
    path.write_bytes(b"ID3\x04" + bytes(100))
    with pytest.raises(RecordingReadError, match="not a WAV"):
        await transcribe_wav(path, FakeTranscriber())
    alaw = tmp_path / "alaw.wav"
    fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    alaw.write_bytes(b"RIFF" + struct.pack("<I", 40) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data\0\0\0\0")
    with pytest.raises(RecordingReadError, match="unsupported WAV format"):
        await transcribe_wav(alaw, FakeTranscriber())
