"""A call longer than WAV's 4 GiB limit, through :class:`CallRecorder`: RF64 files, exact sizes, samples and timeline.

Two tracks (one joins late, mid-frame, and stops before the end) and the mix are recorded time-compressed: 20 ms
frames written as fast as the recorder's IO thread takes them, a tick every 0.5 s of audio. Then: every file is
``WAV_HEADER_BYTES`` + 2 bytes a sample long with the header the writer gives that size (RF64 past the limit, the
ds64 sizes exact); our reader and ffmpeg (PyAV) read the samples around the 4 GiB crossing and at the end exactly as
written, and ffmpeg's duration is the sample count; the duration of the call (summary, index, timeline picture) is
the sample count over 16 kHz; a kill -9 that tore the mix's tail is repaired by recovery, RF64 again, exact sizes.

* ``test_a_call_past_the_riff_limit`` (part of ``make test``): ``RIFF_LIMIT`` lowered to 64 kB (2 s of audio), 6 s
  recorded: the same code path and checks, and ffmpeg decodes every sample of every file.
* ``test_a_call_past_4_gib`` (``@pytest.mark.soak``, ``make soak``): the real limit and 38 hours of audio (4.4 GB a
  file, 13.1 GB in all). Skipped, saying why, when the disk has not that much room; the files are deleted afterwards.
  It prints how long recording and checking took.

Environment (the soak run only):

* ``MEDIABOT_SOAK_WAV_HOURS``: hours of audio to record (default 38; the 32-bit sizes run out at 37.28 hours).
* ``MEDIABOT_SOAK_WAV_DIR``: the folder the call is written to (default: pytest's ``tmp_path``); it needs
  3 x 115.2 MB per hour free, plus 1 GiB.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.media.recorder import CallRecorder, RecorderIO
from mediabot.store import layout
from mediabot.store.index import INDEX_FILE, RecordingsIndex
from mediabot.store.layout import WAV_HEADER_BYTES, CallPaths, wav_header, wav_info
from mediabot.store.recovery import repair_call
from mediabot.store.timeline import timeline_lanes

Int16Array = npt.NDArray[np.int16]

PERIOD_A, PERIOD_B = 16001, 15991  # prime periods: no chunk or frame ever lines up with a repeat
JOIN = 12345  # b's first sample: not on a frame boundary
CHECK = SAMPLE_RATE  # samples compared at each place checked
SYNC_EVERY = 10 * SAMPLE_RATE  # the writer waits for the IO thread at most this far behind


def _pattern(period: int, step: int) -> Int16Array:
    """One period of a loud sawtooth, plus a frame more, so that every frame is one slice (a view, no copy)."""
    p = np.arange(period + FRAME_SAMPLES, dtype=np.int64) % period
    return ((p * step) % 50000 - 25000).astype(np.int16)


PATTERN_A = _pattern(PERIOD_A, 7)
PATTERN_B = _pattern(PERIOD_B, 13)


class Call:
    """What the recorded call holds: track a from 0 to ``total``, track b from :data:`JOIN` to ``b_end``."""

    def __init__(self, total: int) -> None:
        self.total = total
        frames_b = (total - JOIN) // FRAME_SAMPLES
        self.b_end = JOIN + frames_b * FRAME_SAMPLES

    def a(self, start: int, count: int) -> Int16Array:
        p = np.arange(start, start + count, dtype=np.int64)
        return PATTERN_A[p % PERIOD_A]

    def b(self, start: int, count: int) -> Int16Array:
        p = np.arange(start, start + count, dtype=np.int64)
        return np.where((p >= JOIN) & (p < self.b_end), PATTERN_B[p % PERIOD_B], 0).astype(np.int16)

    def mixed(self, start: int, count: int) -> Int16Array:
        total = self.a(start, count).astype(np.int32) + self.b(start, count)
        return np.clip(total, -32768, 32767).astype(np.int16)

    def expected(self, name: str, start: int, count: int) -> Int16Array:
        return {"a": self.a, "b": self.b, "mixed": self.mixed}[name](start, count)


async def record(paths: CallPaths, call: Call) -> float:
    """Record the call as fast as the IO thread takes it; returns the seconds it took."""
    began = time.perf_counter()
    async with RecorderIO() as io:
        rec = CallRecorder(paths, io)
        a, b = rec.open_track("a", "a"), rec.open_track("b", "b")
        position, b_position = 0, JOIN
        pending: asyncio.Future[None] | None = None
        while position < call.total:
            at = position % PERIOD_A
            a.write(position, PATTERN_A[at : at + FRAME_SAMPLES])
            position += FRAME_SAMPLES
            if b_position + FRAME_SAMPLES <= min(position, call.b_end):
                at = b_position % PERIOD_B
                b.write(b_position, PATTERN_B[at : at + FRAME_SAMPLES])
                b_position += FRAME_SAMPLES
            if position % 8000 == 0:
                rec.tick(position)
            if position % SYNC_EVERY == 0:
                # At most SYNC_EVERY of audio queued: wait for the last sync, start the next.
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(rec.sync())
        if pending is not None:
            await pending
        summary = await rec.close()
    seconds = time.perf_counter() - began
    assert summary.errors == ()
    assert summary.samples == call.total and summary.seconds == call.total / SAMPLE_RATE
    assert summary.mixed is not None and summary.mixed.samples == call.total
    assert {key: track.samples for key, track in summary.tracks.items()} == {"a": call.total, "b": call.total}
    assert summary.late_samples == summary.dropped_samples == 0
    return seconds


def read(path: Path, start: int, count: int) -> Int16Array:
    """Samples ``[start, start + count)`` through our reader (``wav_info``) and a plain positioned read."""
    info = wav_info(path)
    assert info.is_recording
    count = max(0, min(count, info.frames - start))
    return np.fromfile(path, "<i2", count, offset=info.data_offset + 2 * start).astype(np.int16)


def head(path: Path) -> bytes:
    with path.open("rb") as raw:
        return raw.read(WAV_HEADER_BYTES)


def ffmpeg_tail(path: Path, start: int) -> tuple[int | None, int, Int16Array]:
    """ffmpeg's duration (in samples), and what it decodes from about ``start`` to the end: (first sample, samples)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate) == ("pcm_s16le", SAMPLE_RATE)
        if start:
            container.seek(start, stream=stream)
        first: int | None = None
        got: list[Int16Array] = []
        for frame in container.decode(stream):
            if first is None:
                assert frame.pts is not None
                first = frame.pts
            got.append(frame.to_ndarray().reshape(-1).astype(np.int16))
        return stream.duration, first or 0, np.concatenate(got)


def check_files(paths: CallPaths, call: Call, *, decode_all: bool) -> None:
    total = call.total
    crossing = (layout.RIFF_LIMIT - (WAV_HEADER_BYTES - 8)) // 2  # the first sample the RIFF sizes cannot hold
    assert 0 < crossing < total, "the call must cross the limit"
    for name, path in [("a", paths.track("a")), ("b", paths.track("b")), ("mixed", paths.mixed)]:
        assert path.stat().st_size == WAV_HEADER_BYTES + 2 * total, name
        header = head(path)
        assert header == wav_header(2 * total), name
        assert header[:12] == b"RF64\xff\xff\xff\xffWAVE" and header[76:80] == b"\xff\xff\xff\xff"
        assert struct.unpack_from("<4sIQQQI", header, 12) == (b"ds64", 28, 72 + 2 * total, 2 * total, total, 0)
        info = wav_info(path)
        assert (info.rf64, info.data_offset, info.frames, info.seconds) == (True, 80, total, total / SAMPLE_RATE)
        for start in (0, JOIN - CHECK // 2, crossing - CHECK // 2, call.b_end - CHECK // 2, total - CHECK):
            start = min(max(0, start), total - CHECK)
            np.testing.assert_array_equal(read(path, start, CHECK), call.expected(name, start, CHECK), name)
        duration, first, decoded = ffmpeg_tail(path, 0 if decode_all else total - 2 * SAMPLE_RATE)
        assert duration == total, "ffmpeg reads the sample count from ds64"
        assert first + decoded.size == total, "ffmpeg decodes up to the last sample, and no further"
        np.testing.assert_array_equal(decoded, call.expected(name, first, decoded.size), name)


def check_timeline(paths: CallPaths, call: Call) -> None:
    """No summary in call.json (as a crash leaves it): the index and the timeline take the duration from the mix."""
    (paths.call_json).write_text(json.dumps({"call_id": paths.call_id, "complete": False, "participants": []}))
    with RecordingsIndex(paths.root / INDEX_FILE) as index:
        index.reindex(paths.root)
        row = index.list_calls()[0]
    assert row.duration_s == call.total / SAMPLE_RATE
    assert timeline_lanes(paths.dir).duration == call.total / SAMPLE_RATE


def check_kill_9_repair(paths: CallPaths, call: Call) -> None:
    """The mix's last second and a half sample torn off and its header a write behind: recovery puts it back."""
    total = call.total
    with paths.mixed.open("r+b") as raw:
        raw.truncate(WAV_HEADER_BYTES + 2 * (total - SAMPLE_RATE) + 1)
        raw.write(wav_header(2 * (total - SAMPLE_RATE - 8000)))
    report = repair_call(paths.dir)
    assert report.headers_fixed == ["mixed.wav"] and report.problems == []
    assert report.mixed_rebuilt == SAMPLE_RATE and report.samples == total and report.padded == {}
    assert paths.mixed.stat().st_size == WAV_HEADER_BYTES + 2 * total
    assert head(paths.mixed) == wav_header(2 * total) and head(paths.mixed)[:4] == b"RF64"
    start = total - 2 * SAMPLE_RATE
    np.testing.assert_array_equal(read(paths.mixed, start, 2 * SAMPLE_RATE), call.mixed(start, 2 * SAMPLE_RATE))
    assert not repair_call(paths.dir).changed


async def run(paths: CallPaths, call: Call, *, decode_all: bool) -> tuple[float, float]:
    recorded = await record(paths, call)
    began = time.perf_counter()
    check_files(paths, call, decode_all=decode_all)
    check_timeline(paths, call)
    check_kill_9_repair(paths, call)
    return recorded, time.perf_counter() - began


async def test_a_call_past_the_riff_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer reads layout.RIFF_LIMIT at every header rewrite: lowered, 2 s of audio cross it.
    monkeypatch.setattr(layout, "RIFF_LIMIT", 64000)
    call = Call(6 * SAMPLE_RATE)
    await run(CallPaths(tmp_path / "out", "long-call"), call, decode_all=True)


@pytest.fixture
def soak_root(tmp_path: Path) -> Iterator[Path]:
    """Where the soak call goes; removed afterwards (pytest keeps its last temp folders, 13 GB would stay)."""
    base = Path(os.environ.get("MEDIABOT_SOAK_WAV_DIR") or tmp_path)
    root = base / f"mediabot-soak-{os.getpid()}"
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.soak
async def test_a_call_past_4_gib(soak_root: Path) -> None:
    hours = float(os.environ.get("MEDIABOT_SOAK_WAV_HOURS", "38"))
    total = int(hours * 3600 * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES
    call = Call(total)
    needed = 3 * (WAV_HEADER_BYTES + 2 * total) + 2**30
    soak_root.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(soak_root.parent).free
    if free < needed:
        pytest.skip(f"{soak_root.parent} has {free / 1e9:.1f} GB free; {hours} h of audio needs {needed / 1e9:.1f} GB")
    recorded, checked = await run(CallPaths(soak_root, "long-call"), call, decode_all=False)
    written = 3 * 2 * total / 1e9
    print(
        f"\n{hours} h of audio ({total} samples a file, {written:.1f} GB in 3 files) recorded in {recorded:.0f} s "
        f"({hours * 3600 / recorded:.0f}x real time, {written * 1000 / recorded:.0f} MB/s); checks took {checked:.1f} s"
    )
