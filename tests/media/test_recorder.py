"""The call recorder on real files: alignment, mix, chunks and buffer reuse, modes, headers, crashes, disk full."""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import threading
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from mediabot.media.recorder import POOL_MAX, CallRecorder, RecorderError, RecorderIO
from mediabot.store import layout
from mediabot.store.layout import WAV_HEADER_BYTES, CallPaths, wav_header, wav_info
from mediabot.store.recovery import repair_call

REPO = Path(__file__).resolve().parents[2]
SR = 16000
FRAME = 320
Int16Array = npt.NDArray[np.int16]


@pytest.fixture
def io() -> Iterator[RecorderIO]:
    recorder_io = RecorderIO()
    recorder_io.start()
    yield recorder_io
    recorder_io.close()
    assert not recorder_io.running


@pytest.fixture
def paths(tmp_path: Path) -> CallPaths:
    return CallPaths(tmp_path / "out", "call-1")


def noise(seed: int, count: int, level: int = 12000) -> Int16Array:
    return np.random.default_rng(seed).integers(-level, level, count, dtype=np.int16)


def read_wav(path: Path) -> Int16Array:
    with wave.open(str(path), "rb") as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, SR)
        assert reader.getcomptype() == "NONE"
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def decode(path: Path) -> Int16Array:
    """Every sample ffmpeg decodes from a recording (RIFF or RF64): a reader independent of ours."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate) == ("pcm_s16le", SR)
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
    return np.concatenate(frames).astype(np.int16) if frames else np.zeros(0, np.int16)


def head(path: Path) -> bytes:
    with path.open("rb") as raw:
        return raw.read(WAV_HEADER_BYTES)


def saturating_sum(*tracks: Int16Array) -> Int16Array:
    total = np.sum([t.astype(np.int32) for t in tracks], axis=0)
    return np.clip(total, -32768, 32767).astype(np.int16)


class Reference:
    """What a track file must hold: a plain, per-frame model of placement (gaps are silence, the past is trimmed)."""

    def __init__(self, length: int) -> None:
        self.samples = np.zeros(length, np.int16)
        self.written = 0
        self.late = 0

    def write(self, position: int, frame: Int16Array) -> None:
        end = position + frame.size
        if end <= self.written:
            self.late += frame.size
            return
        skip = max(0, self.written - position)
        self.late += skip
        self.samples[position + skip : end] = frame[skip:]
        self.written = end


async def test_tracks_are_aligned_exact_and_mixed_is_their_sum(io: RecorderIO, paths: CallPaths) -> None:
    seconds = 6
    total = seconds * SR
    rec = CallRecorder(paths, io)
    sources = {name: noise(i, total) for i, name in enumerate(["steady", "late", "gappy", "jittery", "leaver"])}
    tracks = {name: rec.open_track(name, name) for name in sources}
    refs = {name: Reference(total) for name in sources}

    def write(name: str, position: int, frame: Int16Array) -> None:
        tracks[name].write(position, frame)
        refs[name].write(position, frame)

    for position in range(0, total, FRAME):
        frames = {name: src[position : position + FRAME] for name, src in sources.items()}
        write("steady", position, frames["steady"])
        if position >= 48000:  # joins 3 s in
            write("late", position, frames["late"])
        if not (SR <= position < 2 * SR + 4000):  # a 1.25 s hole
            write("gappy", position, frames["gappy"])
        if position < 2 * SR:
            write("leaver", position, frames["leaver"])
        elif position == 2 * SR:
            tracks["leaver"].end(position)
        else:
            tracks["leaver"].write(position, frames["leaver"])  # after end(): dropped
        # Jitter: every 7th frame arrives 100 samples early (overlapping what is written), every 11th is repeated.
        shift = 100 if (position // FRAME) % 7 == 3 else 0
        write("jittery", position - shift, sources["jittery"][position - shift : position - shift + FRAME])
        if (position // FRAME) % 11 == 5:
            write("jittery", position, frames["jittery"])
        if (position // FRAME) % 15 == 14:
            rec.tick(position + FRAME)
    summary = await rec.close()

    files = {name: read_wav(paths.track(name)) for name in sources}
    mixed = read_wav(paths.mixed)
    assert {f.size for f in files.values()} == {mixed.size} == {total}
    for name in sources:
        np.testing.assert_array_equal(files[name], refs[name].samples, err_msg=name)
    assert not files["late"][:48000].any()
    assert not files["gappy"][SR : 2 * SR + 4000].any()
    assert not files["leaver"][2 * SR :].any()
    np.testing.assert_array_equal(mixed, saturating_sum(*files.values()))

    assert summary.samples == total
    assert summary.tracks["jittery"].late_samples == refs["jittery"].late > 0
    assert summary.tracks["steady"].late_samples == 0
    assert summary.tracks["leaver"].dropped_samples == total - 2 * SR - FRAME
    assert summary.mixed is not None and summary.mixed.samples == total
    assert summary.tracks["late"].path == paths.track("late")
    assert summary.tracks["late"].seconds == seconds
    assert summary.errors == ()
    as_json = json.loads(json.dumps(summary.to_json()))
    assert as_json["tracks"]["late"]["path"] == "audio/late.wav"
    assert as_json["mixed"]["samples"] == total


async def test_the_mix_saturates(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    loud = np.array([30000, -30000, 20000, -20000, 16384, 0] * 800, np.int16)
    a, b, c = (rec.open_track(k, k) for k in "abc")
    for position in range(0, loud.size, FRAME):
        frame = loud[position : position + FRAME]
        a.write(position, frame)
        b.write(position, frame)
        c.write(position, -frame // 4)
    await rec.close()
    mixed = read_wav(paths.mixed)
    expected = saturating_sum(loud, loud, -loud // 4)
    np.testing.assert_array_equal(mixed, expected)
    assert mixed.max() == 32767 and mixed.min() == -32768
    assert expected[0] == 32767 and expected[4] == 16384 * 2 - 4096


async def test_close_pads_every_file_to_end(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    track = rec.open_track("a", "a")
    track.write(0, noise(1, 3200))
    summary = await rec.close(end=5 * SR)
    assert summary.samples == 5 * SR
    assert read_wav(paths.track("a")).size == read_wav(paths.mixed).size == 5 * SR
    assert await rec.close() is summary, "close is idempotent"


class CountingIO(RecorderIO):
    """A real RecorderIO that counts the jobs it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.submitted: list[str] = []

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self.submitted.append(getattr(fn, "__name__", "?"))
        super().submit(fn, *args)


async def test_one_job_per_chunk_not_per_frame(paths: CallPaths) -> None:
    counting = CountingIO()
    try:
        rec = CallRecorder(paths, counting, chunk_s=0.5)
        track = rec.open_track("a", "a")
        source = noise(2, 2 * SR)
        for position in range(0, source.size, FRAME):  # 100 frames = 4 chunks
            track.write(position, source[position : position + FRAME])
        assert counting.submitted.count("write") == 4
        assert len(counting.submitted) == 6  # + create the files, + add the track
        await rec.close()
    finally:
        counting.close()


async def test_no_buffer_is_allocated_in_steady_state(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io, chunk_s=0.1)
    tracks = [rec.open_track(k, k) for k in "abc"]
    source = noise(3, 400 * FRAME)
    chunk = 1600
    for n, position in enumerate(range(0, source.size, FRAME)):
        for track in tracks:
            track.write(position, source[position : position + FRAME])
        if (position + FRAME) % chunk == 0:
            rec.tick(position + FRAME)
            await rec.sync()
        if n == 40:
            warmed = rec.allocations
    assert rec.allocations == warmed <= 2 * len(tracks)
    assert 0 < rec.pool_size <= POOL_MAX
    await rec.close()
    np.testing.assert_array_equal(read_wav(paths.track("b")), source)


async def test_modes_are_private_even_with_umask_000(io: RecorderIO, tmp_path: Path, open_umask: None) -> None:
    paths = CallPaths(tmp_path / "out", "c")
    rec = CallRecorder(paths, io, ogg=True)
    rec.open_track("a", "alice").write(0, noise(4, SR))
    rec.append_jsonl(paths.events, {"event": "joined"})
    await rec.close()
    for folder in (tmp_path / "out", paths.dir, paths.audio_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = [*paths.audio_dir.iterdir(), paths.events]
    assert sorted(p.name for p in paths.audio_dir.iterdir()) == ["alice.ogg", "alice.wav", "mixed.ogg", "mixed.wav"]
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


async def test_nothing_on_disk_before_the_first_write(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    rec.open_track("a", "a")
    await rec.sync()
    assert not paths.root.exists()
    summary = await rec.close()
    assert not paths.root.exists()
    assert summary.mixed is None and summary.samples == 0

    second = CallRecorder(CallPaths(paths.root, "call-2"), io)
    second.open_track("a", "a").write(0, noise(5, FRAME))
    await second.sync()
    assert (paths.root / "call-2" / "audio" / "a.wav").is_file()
    await second.close()


async def test_headers_are_valid_while_the_call_is_open(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    a, b = rec.open_track("a", "a"), rec.open_track("b", "b")
    src_a, src_b = noise(6, 3 * SR), noise(7, 3 * SR)
    for position in range(0, 2 * SR, FRAME):
        a.write(position, src_a[position : position + FRAME])
        b.write(position, src_b[position : position + FRAME])
    rec.tick(2 * SR)
    await rec.sync()
    so_far_a, so_far_mixed = read_wav(paths.track("a")), read_wav(paths.mixed)
    assert so_far_a.size >= SR
    np.testing.assert_array_equal(so_far_a, src_a[: so_far_a.size])
    assert so_far_mixed.size >= SR
    np.testing.assert_array_equal(so_far_mixed, saturating_sum(src_a, src_b)[: so_far_mixed.size])
    await rec.close()


async def test_a_file_turns_rf64_in_place_when_it_passes_the_riff_limit(
    io: RecorderIO, paths: CallPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The header is rewritten by the IO thread after every data write; it reads layout.RIFF_LIMIT each time, so a
    # lowered limit (1.25 s of audio) takes a short call down the same path a 37.3-hour one takes at 4 GiB.
    monkeypatch.setattr(layout, "RIFF_LIMIT", 40000)
    rec = CallRecorder(paths, io, ogg=True)
    a, b = rec.open_track("a", "a"), rec.open_track("b", "b")
    src_a, src_b = noise(16, 3 * SR), noise(17, 3 * SR)

    async def record(start: int, end: int) -> None:
        for position in range(start, end, FRAME):
            a.write(position, src_a[position : position + FRAME])
            b.write(position, src_b[position : position + FRAME])
        rec.tick(end)
        await rec.sync()

    await record(0, SR)
    assert head(paths.track("a"))[:4] == b"RIFF"
    np.testing.assert_array_equal(read_wav(paths.track("a")), src_a[: read_wav(paths.track("a")).size])
    await record(SR, 3 * SR)
    for path in (paths.track("a"), paths.mixed):  # while the call is open: RF64, sizes of what is on disk
        size = path.stat().st_size
        assert head(path) == wav_header(size - WAV_HEADER_BYTES)
        assert head(path)[:4] == b"RF64"
    assert wav_info(paths.track("a")).frames == (paths.track("a").stat().st_size - WAV_HEADER_BYTES) // 2 >= 2 * SR
    summary = await rec.close()

    assert summary.samples == 3 * SR
    for path, expected in [
        (paths.track("a"), src_a),
        (paths.track("b"), src_b),
        (paths.mixed, saturating_sum(src_a, src_b)),
    ]:
        assert head(path) == wav_header(2 * 3 * SR)
        assert struct.unpack_from("<QQQ", head(path), 20) == (WAV_HEADER_BYTES - 8 + 6 * SR, 6 * SR, 3 * SR)
        np.testing.assert_array_equal(decode(path), expected)
    assert summary.mixed is not None and summary.mixed.ogg is not None
    with av.open(str(summary.mixed.ogg)) as container:  # the Opus copy is made from the RF64 file
        seconds = sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))
    assert abs(seconds - 3.0) < 0.05


async def test_a_stalled_source_does_not_hold_the_mix_back(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io, hold_s=1.0)
    talker, stalled = rec.open_track("t", "t"), rec.open_track("s", "s")
    source = noise(8, 5 * SR)
    stalled.write(0, source[:FRAME])
    for position in range(0, 4 * SR, FRAME):
        talker.write(position, source[position : position + FRAME])
        if (position + FRAME) % 3200 == 0:
            rec.tick(position + FRAME)
    await rec.sync()
    assert read_wav(paths.mixed).size >= 3 * SR - 8000
    assert read_wav(paths.track("s")).size >= 3 * SR - 8000
    stalled.write(2 * SR, source[2 * SR : 2 * SR + FRAME])  # its jitter buffer catches up: too late
    assert stalled.late_samples == FRAME
    await rec.close()
    assert not read_wav(paths.track("s"))[FRAME:].any()


async def test_once_everyone_left_the_recording_ends_with_the_last_audio(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io, hold_s=0.5)
    early, late = rec.open_track("e", "early"), rec.open_track("l", "late")
    source = noise(21, 3 * SR)
    for position in range(0, 3 * SR, FRAME):
        late.write(position, source[position : position + FRAME])
        if position < SR:
            early.write(position, source[position : position + FRAME])
        if (position + FRAME) % 3200 == 0:
            rec.tick(position + FRAME)
    early.end(SR)
    late.end()
    for position in range(3 * SR, 10 * SR, 3200):  # the call goes on with nobody in it: ticks do not grow the files
        rec.tick(position)
    summary = await rec.close()
    assert summary.samples == 3 * SR
    for name in ("early", "late"):
        assert read_wav(paths.track(name)).size == 3 * SR
    assert read_wav(paths.mixed).size == 3 * SR


async def test_a_track_opened_mid_call_starts_where_the_mix_may_be(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    first = rec.open_track("a", "a")
    src = noise(9, 4 * SR)
    for position in range(0, 3 * SR, FRAME):
        first.write(position, src[position : position + FRAME])
        if (position + FRAME) % 3200 == 0:
            rec.tick(position + FRAME)
    late = rec.open_track("b", "b")
    # The mix stays `hold` (1 s) behind the timeline: a source whose first frames arrive late still fits.
    assert late.written == 2 * SR
    late.write(2 * SR - FRAME, src[:FRAME])  # stamped before the mix point: trimmed
    late.write(2 * SR, src[:FRAME])  # a second in the past, behind the timeline but not the mix: kept
    await rec.close()
    b = read_wav(paths.track("b"))
    assert late.late_samples == FRAME
    assert not b[: 2 * SR].any()
    np.testing.assert_array_equal(b[2 * SR : 2 * SR + FRAME], src[:FRAME])
    np.testing.assert_array_equal(read_wav(paths.mixed), saturating_sum(read_wav(paths.track("a")), b))


async def test_rename_moves_the_file_in_order_with_writes(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    track = rec.open_track("src-1", "source-src-1")
    src = noise(10, 2 * SR)
    for position in range(0, SR, FRAME):
        track.write(position, src[position : position + FRAME])
    track.rename("alice")
    for position in range(SR, 2 * SR, FRAME):
        track.write(position, src[position : position + FRAME])
    summary = await rec.close()
    assert not paths.track("source-src-1").exists()
    np.testing.assert_array_equal(read_wav(paths.track("alice")), src)
    assert summary.tracks["src-1"].path == paths.track("alice")
    assert track.name == "alice"


async def test_track_names_are_checked(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    track = rec.open_track("a", "alice")
    with pytest.raises(ValueError):
        rec.open_track("b", "alice")
    with pytest.raises(ValueError):
        rec.open_track("a", "other")
    with pytest.raises(ValueError):
        rec.open_track("m", "mixed")
    with pytest.raises(ValueError):
        rec.open_track("x", "../x")
    with pytest.raises(ValueError):
        track.rename("mixed")
    with pytest.raises(TypeError):
        track.write(0, np.zeros(FRAME, np.float32))  # type: ignore[arg-type]
    await rec.close()
    with pytest.raises(RecorderError):
        rec.open_track("c", "c")


async def test_jsonl_lines_in_order_and_after_close(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io)
    rec.open_track("a", "a").write(0, noise(11, FRAME))
    for n in range(50):
        rec.append_jsonl(paths.segments, {"n": n, "text": "ça va\nbien"})
    await rec.close()
    rec.append_jsonl(paths.segments, {"n": 50})
    await rec.sync()
    lines = paths.segments.read_text("utf-8").splitlines()
    assert [json.loads(line)["n"] for line in lines] == list(range(51))
    assert json.loads(lines[0])["text"] == "ça va\nbien"
    with pytest.raises(ValueError):
        rec.append_jsonl(paths.root / "elsewhere.jsonl", {})


async def test_ogg_copies_decode_to_the_same_duration(io: RecorderIO, paths: CallPaths) -> None:
    rec = CallRecorder(paths, io, ogg=True)
    a, b = rec.open_track("a", "a"), rec.open_track("b", "b")
    t = np.arange(int(1.5 * SR)) / SR
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    for position in range(0, tone.size, FRAME):
        a.write(position, tone[position : position + FRAME])
        if position >= SR // 2:
            b.write(position, tone[position : position + FRAME])
    summary = await rec.close()
    for name, file in [("a", summary.tracks["a"]), ("b", summary.tracks["b"]), ("mixed", summary.mixed)]:
        assert file is not None and file.ogg == paths.ogg(name)
        with av.open(str(paths.ogg(name))) as container:
            stream = container.streams.audio[0]
            assert stream.codec_context.name == "opus"
            decoded = 0
            rate = 0
            for frame in container.decode(stream):
                decoded += frame.samples
                rate = frame.sample_rate
        assert abs(decoded / rate - 1.5) < 0.05, name
    assert not list(paths.audio_dir.glob(".*"))


async def test_disk_full_stops_one_file_reports_once_and_keeps_it_valid(
    io: RecorderIO, paths: CallPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No small filesystem to fill here: the disk "fills" for bob.wav alone, one odd byte past 1 s of audio, with the
    # kernel's behaviour (a short write, then ENOSPC). Everything else goes through the real os.pwrite.
    real_pwrite = os.pwrite
    limit = WAV_HEADER_BYTES + 2 * SR + 1

    def pwrite(fd: int, data: Any, offset: int) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/bob.wav") and offset + len(data) > limit:
            room = limit - offset
            if room > 0:
                return real_pwrite(fd, memoryview(data)[:room], offset)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    reported: list[str] = []
    rec = CallRecorder(paths, io, on_error=reported.append)
    alice, bob = rec.open_track("a", "alice"), rec.open_track("b", "bob")
    src_a, src_b = noise(12, 3 * SR), noise(13, 3 * SR)
    for position in range(0, 3 * SR, FRAME):
        alice.write(position, src_a[position : position + FRAME])
        bob.write(position, src_b[position : position + FRAME])
        if (position + FRAME) % 4800 == 0:
            rec.tick(position + FRAME)
    summary = await rec.close()

    assert len(reported) == 1 and "bob.wav" in reported[0] and os.strerror(errno.ENOSPC) in reported[0]
    assert rec.errors == reported and summary.errors == tuple(reported)
    assert summary.tracks["b"].error == reported[0]
    assert summary.tracks["b"].samples == SR
    np.testing.assert_array_equal(read_wav(paths.track("bob")), src_b[:SR])
    assert paths.track("bob").stat().st_size == WAV_HEADER_BYTES + 2 * SR, "cut back to whole samples"
    np.testing.assert_array_equal(read_wav(paths.track("alice")), src_a)
    np.testing.assert_array_equal(read_wav(paths.mixed), saturating_sum(src_a, src_b))
    assert summary.tracks["a"].error is None


async def test_a_file_that_cannot_be_created_is_reported(io: RecorderIO, paths: CallPaths) -> None:
    paths.audio_dir.mkdir(parents=True)
    paths.track("alice").write_bytes(b"someone else's")
    reported: list[str] = []
    rec = CallRecorder(paths, io, on_error=reported.append)
    rec.open_track("a", "alice").write(0, noise(14, SR))
    rec.open_track("b", "bob").write(0, noise(15, SR))
    summary = await rec.close()
    assert len(reported) == 1 and "alice.wav" in reported[0]
    assert paths.track("alice").read_bytes() == b"someone else's"
    assert read_wav(paths.track("bob")).size == SR == summary.samples


def test_recorder_io_runs_jobs_in_order_and_joins() -> None:
    recorder_io = RecorderIO()
    seen: list[int] = []
    with recorder_io:
        thread = next(t for t in threading.enumerate() if t.name == "mediabot-recorder")
        assert not thread.daemon
        for n in range(100):
            recorder_io.submit(seen.append, n)
        recorder_io.submit(_fail)  # logged, the thread goes on
        recorder_io.submit(seen.append, 100)
    assert seen == list(range(101))
    assert not thread.is_alive()
    assert not recorder_io.running
    with pytest.raises(RecorderError):
        recorder_io.submit(seen.append, 1)


def _fail() -> None:
    raise OSError(errno.EIO, "boom")


async def test_recorder_io_run_returns_results_and_raises_errors() -> None:
    async with RecorderIO() as recorder_io:
        assert await recorder_io.run(sum, [1, 2, 3]) == 6
        with pytest.raises(OSError, match="boom"):
            await recorder_io.run(_fail)
        assert await recorder_io.run(threading.current_thread) is not threading.current_thread()
        thread = next(t for t in threading.enumerate() if t.name == "mediabot-recorder")
    assert not thread.is_alive()


CHILD = r"""
import asyncio, sys
from pathlib import Path
import numpy as np
from mediabot.media.recorder import CallRecorder, RecorderIO
from mediabot.store import layout
from mediabot.store.layout import CallPaths

layout.RIFF_LIMIT = int(sys.argv[3])

def source(track, start, count):
    p = np.arange(start, start + count, dtype=np.int64)
    return (((p * (7 + track) + 1000 * track) % 16001) - 8000).astype(np.int16)

async def main(out, ready_at):
    io = RecorderIO()
    io.start()
    rec = CallRecorder(CallPaths(Path(out), "call"), io)
    a, b, c = rec.open_track("a", "a"), rec.open_track("b", "b"), None
    position = 0
    while True:
        a.write(position, source(0, position, 320))
        if position < 48000:
            b.write(position, source(1, position, 320))
        elif c is None:
            b.end(position)
            c = rec.open_track("c", "c")
        if c is not None:
            c.write(position, source(2, position, 320))
        position += 320
        if position % 3200 == 0:
            rec.tick(position)
            if position == ready_at:
                await rec.sync()
                print("ready", position, flush=True)
            elif position > ready_at:
                await asyncio.sleep(0.002)
            if position >= 120 * 16000:
                await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def child_source(track: int, start: int, count: int) -> Int16Array:
    p = np.arange(start, start + count, dtype=np.int64)
    return (((p * (7 + track) + 1000 * track) % 16001) - 8000).astype(np.int16)


@pytest.mark.parametrize("riff_limit", [layout.RIFF_LIMIT, 2 * SR * 2], ids=["riff", "rf64-after-2s"])
def test_kill_9_loses_at_most_a_second_and_repairs(tmp_path: Path, riff_limit: int) -> None:
    ready_at = 5 * SR
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(ready_at), str(riff_limit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        readable, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if readable else b""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert line == f"ready {ready_at}\n".encode(), proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == -signal.SIGKILL

    audio = tmp_path / "call" / "audio"
    names = ["a", "b", "c"]
    on_disk = {name: (os.path.getsize(audio / f"{name}.wav") - WAV_HEADER_BYTES) // 2 for name in names}
    assert min(on_disk.values()) >= ready_at - SR, on_disk
    rf64 = riff_limit < 2 * ready_at
    for name in [*names, "mixed"]:  # before any repair, every header already describes audio that is really there
        assert head(audio / f"{name}.wav")[:4] == (b"RF64" if rf64 else b"RIFF")
        as_is = decode(audio / f"{name}.wav")
        assert wav_info(audio / f"{name}.wav").frames == as_is.size
        if name != "mixed":
            assert ready_at - SR <= as_is.size <= on_disk[name]
    assert decode(audio / "mixed.wav").size >= ready_at - 2 * SR

    report = repair_call(tmp_path / "call")
    assert report.marked_recovered and report.call_json_created
    files = {name: decode(audio / f"{name}.wav") for name in names}
    mixed = decode(audio / "mixed.wav")
    length = mixed.size
    for name in [*names, "mixed"]:
        assert os.path.getsize(audio / f"{name}.wav") == WAV_HEADER_BYTES + 2 * length
        assert head(audio / f"{name}.wav") == wav_header(2 * length), "RIFF or RF64 with the exact sizes"
    assert {f.size for f in files.values()} == {length} and length >= ready_at
    np.testing.assert_array_equal(mixed, saturating_sum(*files.values()))
    expected = {
        "a": child_source(0, 0, length),
        "b": np.where(np.arange(length) < 48000, child_source(1, 0, length), 0).astype(np.int16),
        "c": np.where(np.arange(length) >= 48000, child_source(2, 0, length), 0).astype(np.int16),
    }
    for name in names:
        had = min(on_disk[name], length)
        np.testing.assert_array_equal(files[name][:had], expected[name][:had], err_msg=name)
        assert not files[name][had:].any(), "what was never written is silence"
    meta = json.loads((tmp_path / "call" / "call.json").read_text())
    assert meta["recovered"] is True and meta["call_id"] == "call"
    assert not repair_call(tmp_path / "call").changed
