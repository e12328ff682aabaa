"""Crash repair on hand-made broken call folders, and on a cleanly closed recording (which it must not touch)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mediabot.media.recorder import CallRecorder, RecorderIO
from mediabot.store.layout import CallPaths, wav_header, write_json_atomic
from mediabot.store.recovery import repair_call, repair_recordings

Int16Array = npt.NDArray[np.int16]


def noise(seed: int, count: int) -> Int16Array:
    return np.random.default_rng(seed).integers(-25000, 25000, count, dtype=np.int16)


def saturating_sum(*tracks: Int16Array) -> Int16Array:
    total = np.sum([t.astype(np.int32) for t in tracks], axis=0)
    return np.clip(total, -32768, 32767).astype(np.int16)


def read_wav(path: Path) -> Int16Array:
    with wave.open(str(path), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def header_sizes(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()[:44]
    return struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, 40)[0]


def crashed_wav(path: Path, samples: Int16Array, *, claimed: int, extra: bytes = b"") -> None:
    """A WAV whose header claims ``claimed`` samples while the file holds ``samples`` (+ a torn tail)."""
    path.write_bytes(wav_header(claimed * 2) + samples.astype("<i2").tobytes() + extra)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def make_crashed_call(root: Path) -> tuple[Path, dict[str, Int16Array]]:
    call = root / "call-9"
    audio = call / "audio"
    audio.mkdir(parents=True)
    a, b, c = noise(1, 20000), noise(2, 12000), noise(3, 16000)
    crashed_wav(audio / "a.wav", a, claimed=19000, extra=b"\x01")  # sizes behind, a torn half sample
    crashed_wav(audio / "b.wav", b, claimed=12000)  # consistent but short
    crashed_wav(audio / "c.wav", c, claimed=0)
    partial_mix = saturating_sum(a[:9000], b[:9000], c[:9000])
    crashed_wav(audio / "mixed.wav", partial_mix, claimed=8000)
    (call / "segments.jsonl").write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3, "te')
    (call / "events.jsonl").write_bytes(b'{"e": 1}\n')
    return call, {"a": a, "b": b, "c": c}


def test_repair_call_fixes_headers_lengths_mix_lines_and_marks_recovered(tmp_path: Path) -> None:
    call, sources = make_crashed_call(tmp_path)
    report = repair_call(call)

    assert sorted(report.headers_fixed) == ["a.wav", "c.wav", "mixed.wav"]
    assert report.padded == {"b.wav": 8000, "c.wav": 4000}
    assert report.mixed_rebuilt == 11000
    assert report.lines_truncated == {"segments.jsonl": len(b'{"n": 3, "te')}
    assert report.call_json_created and report.marked_recovered and report.changed
    assert report.samples == 20000 and report.problems == []

    tracks = {name: read_wav(call / "audio" / f"{name}.wav") for name in sources}
    for name, data in tracks.items():
        assert data.size == 20000
        np.testing.assert_array_equal(data[: sources[name].size], sources[name])
        assert not data[sources[name].size :].any()
    np.testing.assert_array_equal(read_wav(call / "audio" / "mixed.wav"), saturating_sum(*tracks.values()))
    for path in (call / "audio").glob("*.wav"):
        assert path.stat().st_size == 44 + 2 * 20000
        assert header_sizes(path) == (36 + 40000, 40000)
    assert (call / "segments.jsonl").read_bytes() == b'{"n": 1}\n{"n": 2}\n'
    assert (call / "events.jsonl").read_bytes() == b'{"e": 1}\n'
    meta = json.loads((call / "call.json").read_text())
    assert meta["call_id"] == "call-9" and meta["recovered"] is True and meta["recovered_at"].endswith("Z")
    assert stat.S_IMODE((call / "call.json").stat().st_mode) == 0o600


def test_repair_is_idempotent(tmp_path: Path) -> None:
    call, _ = make_crashed_call(tmp_path)
    repair_call(call)
    before = snapshot(call)
    again = repair_call(call)
    assert not again.changed
    assert snapshot(call) == before


def test_a_missing_mix_is_built_and_an_empty_file_gets_a_header(tmp_path: Path) -> None:
    audio = tmp_path / "c" / "audio"
    audio.mkdir(parents=True)
    a = noise(4, 5000)
    crashed_wav(audio / "a.wav", a, claimed=5000)
    (audio / "b.wav").write_bytes(b"")  # killed between creating the file and writing its header
    (audio / "d.wav").write_bytes(wav_header(0)[:20])  # killed mid-header
    old = os.umask(0)
    try:
        report = repair_call(tmp_path / "c")
    finally:
        os.umask(old)
    assert sorted(report.headers_fixed) == ["b.wav", "d.wav"]
    np.testing.assert_array_equal(read_wav(audio / "b.wav"), np.zeros(5000, np.int16))
    np.testing.assert_array_equal(read_wav(audio / "mixed.wav"), a)
    assert stat.S_IMODE((audio / "mixed.wav").stat().st_mode) == 0o600


def test_a_foreign_file_is_left_alone_and_reported(tmp_path: Path) -> None:
    audio = tmp_path / "c" / "audio"
    audio.mkdir(parents=True)
    crashed_wav(audio / "a.wav", noise(5, 100), claimed=100)
    (audio / "notes.wav").write_bytes(b"this is not audio at all, just some words")
    stereo = audio / "stereo.wav"
    with wave.open(str(stereo), "wb") as writer:
        writer.setnchannels(2)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(b"\0" * 400)
    before = stereo.read_bytes()
    report = repair_call(tmp_path / "c")
    assert len(report.problems) == 2 and all("not a 16 kHz mono PCM16" in p for p in report.problems)
    assert (audio / "notes.wav").read_bytes() == b"this is not audio at all, just some words"
    assert stereo.read_bytes() == before


async def test_a_cleanly_closed_recording_is_not_touched(tmp_path: Path) -> None:
    async with RecorderIO() as io:
        paths = CallPaths(tmp_path, "clean")
        rec = CallRecorder(paths, io)
        a, b = rec.open_track("a", "a"), rec.open_track("b", "b")
        src = noise(6, 3 * 16000)
        for position in range(0, src.size, 320):
            a.write(position, src[position : position + 320])
            if position > 16000:
                b.write(position, -src[position : position + 320])
            if position % 3200 == 0:
                rec.tick(position)
        rec.append_jsonl(paths.events, {"event": "started"})
        await rec.close()
        await io.run(write_json_atomic, paths.call_json, {"call_id": "clean", "complete": True})
    before = snapshot(tmp_path / "clean")
    report = repair_call(tmp_path / "clean")
    assert not report.changed, report
    assert snapshot(tmp_path / "clean") == before


def test_an_incomplete_call_is_marked_even_when_its_files_are_consistent(tmp_path: Path) -> None:
    call = tmp_path / "c"
    call.mkdir()
    write_json_atomic(call / "call.json", {"call_id": "c", "complete": False, "participants": []})
    report = repair_call(call)
    assert report.marked_recovered and not report.call_json_created
    meta = json.loads((call / "call.json").read_text())
    assert meta["participants"] == [] and meta["recovered"] is True
    assert not repair_call(call).changed


def test_a_broken_call_json_is_kept_aside(tmp_path: Path) -> None:
    call = tmp_path / "c"
    call.mkdir()
    (call / "call.json").write_bytes(b'{"call_id": "c", "comp')
    (call / ".call.json.0123abcd.tmp").write_bytes(b"{")
    report = repair_call(call)
    assert report.problems and report.call_json_created
    assert report.temp_removed == [".call.json.0123abcd.tmp"]
    assert (call / "call.json.broken").read_bytes() == b'{"call_id": "c", "comp'
    assert json.loads((call / "call.json").read_text())["recovered"] is True


def test_repair_recordings_walks_every_call(tmp_path: Path) -> None:
    assert repair_recordings(tmp_path / "missing") == []
    make_crashed_call(tmp_path)
    (tmp_path / "other" / "audio").mkdir(parents=True)
    (tmp_path / "not-a-call").mkdir()
    (tmp_path / "stray.txt").write_text("x")
    reports = repair_recordings(tmp_path)
    assert [r.call_dir.name for r in reports] == ["call-9", "other"]
    assert reports[0].mixed_rebuilt == 11000
    assert not (tmp_path / "not-a-call" / "call.json").exists()
