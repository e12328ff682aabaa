"""Crash repair on hand-made broken call folders, and on a cleanly closed recording (which it must not touch)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from mediabot.media.recorder import CallRecorder, RecorderIO
from mediabot.store import layout
from mediabot.store.layout import WAV_HEADER_BYTES, CallPaths, wav_header, wav_info, write_json_atomic
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


def head(path: Path) -> bytes:
    with path.open("rb") as raw:
        return raw.read(WAV_HEADER_BYTES)


def header_sizes(path: Path) -> tuple[int, int]:
    raw = head(path)
    return struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, WAV_HEADER_BYTES - 4)[0]


def read_samples(path: Path) -> Int16Array:
    """The samples of a RIFF or RF64 recording, through ffmpeg (an independent reader)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
    return np.concatenate(frames).astype(np.int16) if frames else np.zeros(0, np.int16)


def ds64_sizes(path: Path) -> tuple[int, int, int]:
    raw = head(path)
    assert raw[:4] == b"RF64" and raw[12:16] == b"ds64"
    riff, data, count = struct.unpack_from("<QQQ", raw, 20)
    return riff, data, count


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
        assert path.stat().st_size == WAV_HEADER_BYTES + 2 * 20000
        assert header_sizes(path) == (WAV_HEADER_BYTES - 8 + 40000, 40000)
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


def legacy_wav(path: Path, samples: Int16Array, *, claimed: int, extra: bytes = b"") -> None:
    """A recording with the 44-byte header mediabot wrote before the JUNK reserve (fmt right after RIFF/WAVE)."""
    header = (
        b"RIFF" + struct.pack("<I", 36 + claimed * 2) + wav_header(claimed * 2)[8:12] + wav_header(claimed * 2)[48:]
    )
    path.write_bytes(header + samples.astype("<i2").tobytes() + extra)


def test_old_44_byte_recordings_are_still_repaired(tmp_path: Path) -> None:
    audio = tmp_path / "old" / "audio"
    audio.mkdir(parents=True)
    a, b = noise(20, 3000), noise(21, 2000)
    legacy_wav(audio / "a.wav", a, claimed=2500, extra=b"\x07")
    legacy_wav(audio / "b.wav", b, claimed=2000)
    legacy_wav(audio / "mixed.wav", saturating_sum(a[:1000], b[:1000]), claimed=1000)
    (audio / "torn.wav").write_bytes(wav_header(0)[:12] + wav_header(0)[48:60])  # an old header cut short
    report = repair_call(tmp_path / "old")
    assert sorted(report.headers_fixed) == ["a.wav", "torn.wav"] and report.problems == []
    assert report.padded == {"b.wav": 1000, "torn.wav": 3000} and report.mixed_rebuilt == 2000
    for name in ("a", "b", "mixed"):
        raw = (audio / f"{name}.wav").read_bytes()
        assert len(raw) == 44 + 6000, "an old file keeps its layout; only its sizes are rewritten"
        assert struct.unpack_from("<I", raw, 4)[0] == 36 + 6000 and struct.unpack_from("<I", raw, 40)[0] == 6000
    assert wav_info(audio / "torn.wav").data_offset == WAV_HEADER_BYTES, "a file with no samples gets our header"
    np.testing.assert_array_equal(read_wav(audio / "a.wav"), a)
    np.testing.assert_array_equal(read_wav(audio / "mixed.wav"), saturating_sum(a, np.r_[b, np.zeros(1000, np.int16)]))
    assert not repair_call(tmp_path / "old").changed


def test_a_torn_rf64_file_is_repaired_with_exact_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer switches to RF64 at RIFF_LIMIT: lowered, a few thousand samples cross it on the real code path.
    monkeypatch.setattr(layout, "RIFF_LIMIT", 4000)
    audio = tmp_path / "c" / "audio"
    audio.mkdir(parents=True)
    a, b = noise(22, 6000), noise(23, 5000)
    crashed_wav(audio / "a.wav", a, claimed=4000, extra=b"\x01")  # RF64, ds64 sizes behind the file, half a sample
    crashed_wav(audio / "b.wav", b, claimed=1000)  # still RIFF: killed right after the write that crossed the limit
    crashed_wav(audio / "mixed.wav", saturating_sum(a[:3000], b[:3000]), claimed=2500)
    assert head(audio / "a.wav")[:4] == b"RF64" and head(audio / "b.wav")[:4] == b"RIFF"
    report = repair_call(tmp_path / "c")
    assert sorted(report.headers_fixed) == ["a.wav", "b.wav", "mixed.wav"] and report.problems == []
    assert report.padded == {"b.wav": 1000} and report.mixed_rebuilt == 3000
    for path in audio.glob("*.wav"):
        assert path.stat().st_size == WAV_HEADER_BYTES + 12000
        assert head(path) == wav_header(12000)
        assert ds64_sizes(path) == (WAV_HEADER_BYTES - 8 + 12000, 12000, 6000)
        assert wav_info(path).frames == 6000
    tracks = [read_samples(audio / "a.wav"), read_samples(audio / "b.wav")]
    np.testing.assert_array_equal(tracks[0], a)
    np.testing.assert_array_equal(tracks[1], np.r_[b, np.zeros(1000, np.int16)])
    np.testing.assert_array_equal(read_samples(audio / "mixed.wav"), saturating_sum(*tracks))
    assert not repair_call(tmp_path / "c").changed


def test_an_rf64_file_cut_below_the_limit_gets_a_riff_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "RIFF_LIMIT", 4000)
    audio = tmp_path / "c" / "audio"
    audio.mkdir(parents=True)
    a = noise(24, 1500)
    crashed_wav(audio / "a.wav", a, claimed=6000)  # the header says more than the file holds (cut by a disk)
    assert head(audio / "a.wav")[:4] == b"RF64"
    repair_call(tmp_path / "c")
    assert head(audio / "a.wav") == wav_header(3000)
    assert header_sizes(audio / "a.wav") == (WAV_HEADER_BYTES - 8 + 3000, 3000)
    np.testing.assert_array_equal(read_wav(audio / "a.wav"), a)


def test_another_writers_rf64_file_gets_its_ds64_sizes_fixed_in_place(tmp_path: Path) -> None:
    audio = tmp_path / "c" / "audio"
    audio.mkdir(parents=True)
    a = noise(25, 4000)
    path = audio / "a.wav"
    with av.open(str(path), "w", format="wav", options={"rf64": "always"}) as container:  # ds64, fmt, LIST, data
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(a.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    offset = wav_info(path).data_offset
    assert offset != WAV_HEADER_BYTES
    with path.open("r+b") as raw:  # a crash: 1000 more samples and a torn one past what ds64 says
        raw.seek(0, os.SEEK_END)
        raw.write(noise(26, 1000).tobytes() + b"\x05")
    report = repair_call(tmp_path / "c")
    assert "a.wav" in report.headers_fixed and report.problems == []
    assert path.stat().st_size == offset + 10000
    assert ds64_sizes(path) == (offset - 8 + 10000, 10000, 5000)
    np.testing.assert_array_equal(read_samples(path)[:4000], a)
    assert read_samples(path).size == 5000
    assert not repair_call(tmp_path / "c").changed


def test_past_4_gib_a_riff_header_becomes_rf64_and_an_old_one_says_what_it_can(tmp_path: Path) -> None:
    # The real limit without writing 4 GiB: sparse files (only the headers and a few bytes take room on disk).
    # Only the mix: nothing to pad or rebuild, so the repair reads nothing but headers.
    total = 2**31 + 16000  # 4 GiB of samples + 1 s
    ours, old = tmp_path / "ours", tmp_path / "old"
    for call in (ours, old):
        (call / "audio").mkdir(parents=True)
    with (ours / "audio" / "mixed.wav").open("wb") as out:
        out.write(wav_header(2 * (total - 16000) - 2))  # killed after the write that crossed the limit
        out.truncate(WAV_HEADER_BYTES + 2 * total + 1)
    with (old / "audio" / "mixed.wav").open("wb") as out:
        header = wav_header(0)
        out.write(header[:12] + header[48:])
        out.truncate(44 + 2 * total)
    report = repair_call(ours)
    assert report.headers_fixed == ["mixed.wav"] and report.problems == []
    path = ours / "audio" / "mixed.wav"
    assert path.stat().st_size == WAV_HEADER_BYTES + 2 * total
    assert ds64_sizes(path) == (WAV_HEADER_BYTES - 8 + 2 * total, 2 * total, total)
    assert wav_info(path).frames == total
    with av.open(str(path)) as container:
        assert container.streams.audio[0].duration == total
    assert not repair_call(ours).changed

    report = repair_call(old)
    assert report.headers_fixed == ["mixed.wav"]
    assert len(report.problems) == 1 and "4 GiB" in report.problems[0]
    with (old / "audio" / "mixed.wav").open("rb") as raw:
        riff, data = struct.unpack("<I32xI", raw.read(44)[4:])
    assert (riff, data) == (0xFFFFFFFE, 0xFFFFFFFE - 36), "the most a RIFF header can say, in whole samples"
    assert (old / "audio" / "mixed.wav").stat().st_size == 44 + 2 * total, "no sample is thrown away"
    assert not repair_call(old).headers_fixed
