"""The call folder layout, private files and folders, atomic JSON, the WAV header (RIFF, RF64) and reader."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from mediabot.store import layout
from mediabot.store.layout import (
    WAV_HEADER_BYTES,
    CallPaths,
    WavFormatError,
    ensure_private_dir,
    open_private,
    safe_name,
    wav_header,
    wav_info,
    write_json_atomic,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_call_paths_layout(tmp_path: Path) -> None:
    paths = CallPaths(tmp_path, "call-1")
    assert paths.dir == tmp_path / "call-1"
    assert paths.audio_dir == tmp_path / "call-1" / "audio"
    assert paths.call_json == tmp_path / "call-1" / "call.json"
    assert paths.segments == tmp_path / "call-1" / "segments.jsonl"
    assert paths.events == tmp_path / "call-1" / "events.jsonl"
    assert paths.mixed == tmp_path / "call-1" / "audio" / "mixed.wav"
    assert paths.track("8d9a-participant") == tmp_path / "call-1" / "audio" / "8d9a-participant.wav"
    assert paths.ogg("mixed") == tmp_path / "call-1" / "audio" / "mixed.ogg"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "../etc", "a\\b", "a\0b", "x" * 201, "é" * 101])
def test_unsafe_names_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        CallPaths(tmp_path, bad)
    with pytest.raises(ValueError):
        CallPaths(tmp_path, "ok").track(bad)
    with pytest.raises(ValueError):
        CallPaths(tmp_path, "ok").ogg(bad)


@pytest.mark.parametrize("good", ["x" * 200, "a..b", "19:meeting_abc@thread.v2", "é" * 100, ".hidden-ok"])
def test_safe_names_pass(good: str) -> None:
    assert safe_name(good) == good


def test_ensure_private_dir_creates_every_level_0700(tmp_path: Path, open_umask: None) -> None:
    os.chmod(tmp_path, 0o755)
    leaf = tmp_path / "out" / "call" / "audio"
    ensure_private_dir(leaf)
    assert leaf.is_dir()
    assert [mode(p) for p in (tmp_path / "out", tmp_path / "out" / "call", leaf)] == [0o700] * 3
    assert mode(tmp_path) == 0o755, "a folder it did not create is left alone"


def test_ensure_private_dir_tightens_an_existing_leaf(tmp_path: Path, open_umask: None) -> None:
    leaf = tmp_path / "call"
    leaf.mkdir(mode=0o777)
    ensure_private_dir(leaf)
    assert mode(leaf) == 0o700


def test_open_private_creates_0600_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "f.bin"
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)
    assert mode(path) == 0o600
    assert path.read_bytes() == b"x"


def test_open_private_tightens_an_existing_file_and_refuses_symlinks(tmp_path: Path, open_umask: None) -> None:
    existing = tmp_path / "old.txt"
    existing.write_bytes(b"old")
    existing.chmod(0o644)
    os.close(open_private(existing, os.O_WRONLY | os.O_APPEND))
    assert mode(existing) == 0o600
    link = tmp_path / "link.txt"
    link.symlink_to(existing)
    with pytest.raises(OSError):
        open_private(link, os.O_WRONLY)


def test_write_json_atomic_replaces_and_leaves_no_temp(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "call.json"
    write_json_atomic(path, {"call_id": "c", "n": 1})
    write_json_atomic(path, {"call_id": "c", "n": 2, "name": "Zoë"})
    assert json.loads(path.read_text("utf-8")) == {"call_id": "c", "n": 2, "name": "Zoë"}
    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.json"]


def test_write_json_atomic_keeps_the_old_file_when_it_fails(tmp_path: Path) -> None:
    path = tmp_path / "call.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.json"]


def test_write_json_atomic_creates_a_private_parent(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "new-call" / "call.json"
    write_json_atomic(path, [1, 2])
    assert json.loads(path.read_text()) == [1, 2]
    assert mode(path.parent) == 0o700


def test_wav_header_is_riff_with_room_kept_for_ds64() -> None:
    samples = struct.pack("<3h", 1, -2, 32767)
    header = wav_header(len(samples))
    assert len(header) == WAV_HEADER_BYTES == 80
    assert struct.unpack_from("<4sI4s4sI", header) == (b"RIFF", 72 + len(samples), b"WAVE", b"JUNK", 28)
    assert header[20:48] == bytes(28)
    assert struct.unpack_from("<4sIHHIIHH4sI", header, 48) == (
        b"fmt ",
        16,
        1,  # WAVE_FORMAT_PCM
        1,
        16000,
        32000,
        2,
        16,
        b"data",
        len(samples),
    )
    with wave.open(io.BytesIO(header + samples)) as reader:  # a plain RIFF reader skips the JUNK chunk
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        assert reader.readframes(10) == samples


def ds64_fields(header: bytes) -> tuple[int, int, int, int]:
    """riffSize, dataSize, sampleCount, tableLength of an RF64 header's ds64 chunk."""
    assert header[12:20] == b"ds64" + struct.pack("<I", 28)
    riff, data, count, table = struct.unpack_from("<QQQI", header, 20)
    return riff, data, count, table


def test_wav_header_turns_rf64_exactly_at_the_32_bit_limit() -> None:
    # The real limit, no file needed: the last RIFF size a 32-bit field holds (0xFFFFFFFF is RF64's marker).
    last = 0xFFFFFFFE - 72
    assert wav_header(last)[:8] == b"RIFF" + struct.pack("<I", 0xFFFFFFFE)
    assert wav_header(last)[76:80] == struct.pack("<I", last)
    past = last + 2
    header = wav_header(past)
    assert len(header) == WAV_HEADER_BYTES
    assert header[:12] == b"RF64" + b"\xff" * 4 + b"WAVE"
    assert ds64_fields(header) == (72 + past, past, past // 2, 0)
    assert header[48:76] == wav_header(0)[48:76], "fmt and the data chunk's id stay where they are"
    assert header[76:80] == b"\xff" * 4
    big = 5 * 2**32
    assert ds64_fields(wav_header(big)) == (72 + big, big, big // 2, 0)


def test_riff_limit_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "RIFF_LIMIT", 1000)
    assert wav_header(926)[:4] == b"RIFF"  # RIFF size 998
    assert wav_header(928)[:4] == b"RF64"  # RIFF size 1000
    assert ds64_fields(wav_header(928)) == (1000, 928, 464, 0)


def pattern(count: int) -> npt.NDArray[np.int16]:
    return ((np.arange(count, dtype=np.int64) * 7919) % 65536 - 32768).astype(np.int16)


def decode(path: Path) -> tuple[npt.NDArray[np.int16], int | None]:
    """Every sample ffmpeg decodes from a WAV file, and the duration it reads from the header (in samples)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.rate, stream.time_base) == ("pcm_s16le", 16000, Fraction(1, 16000))
        frames = [frame.to_ndarray().reshape(-1) for frame in container.decode(stream)]
        return np.concatenate(frames).astype(np.int16), stream.duration


@pytest.mark.parametrize("limit", [layout.RIFF_LIMIT, 4096])
def test_ffmpeg_decodes_our_riff_and_rf64_files_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(layout, "RIFF_LIMIT", limit)
    samples = pattern(40000)
    path = tmp_path / "track.wav"
    path.write_bytes(wav_header(samples.nbytes) + samples.tobytes())
    assert path.read_bytes()[:4] == (b"RIFF" if limit > samples.nbytes else b"RF64")
    decoded, duration = decode(path)
    np.testing.assert_array_equal(decoded, samples)
    assert duration == samples.size
    info = wav_info(path)
    assert (info.data_offset, info.data_bytes, info.frames, info.rf64) == (80, 80000, 40000, limit == 4096)


def test_a_sparse_file_past_4_gib_is_rf64_to_ffmpeg_and_to_wav_info(tmp_path: Path) -> None:
    # The real limit on a real file without writing 4 GiB: a sparse file, the header and the last second written.
    total = 2**31 + 16000 * 3600  # 4 GiB of samples + an hour: 38.3 hours of a 16 kHz track
    path = tmp_path / "long.wav"
    tail = pattern(16000)
    with path.open("wb") as out:
        out.write(wav_header(2 * total))
        out.seek(WAV_HEADER_BYTES + 2 * (total - tail.size))
        out.write(tail.tobytes())
    assert path.stat().st_size == WAV_HEADER_BYTES + 2 * total
    info = wav_info(path)
    assert (info.rf64, info.data_offset, info.data_bytes, info.frames) == (True, 80, 2 * total, total)
    assert info.seconds == total / 16000
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.duration == total, "ffmpeg reads the sizes from ds64"
        container.seek(total - 8000, stream=stream)
        got: list[npt.NDArray[np.int16]] = []
        first: int | None = None
        for frame in container.decode(stream):
            first = frame.pts if first is None else first
            got.append(frame.to_ndarray().reshape(-1).astype(np.int16))
    assert first is not None and total - tail.size <= first <= total - 8000
    decoded = np.concatenate(got)
    assert first + decoded.size == total
    np.testing.assert_array_equal(decoded, tail[first - (total - tail.size) :])


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + b"\0" * (len(body) & 1)


def riff(*chunks: bytes, form: bytes = b"RIFF", size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return form + struct.pack("<I", len(body) if size is None else size) + body


FMT_STEREO_24 = struct.pack("<HHIIHH", 1, 2, 48000, 48000 * 6, 6, 24)


def test_wav_info_walks_any_chunk_order(tmp_path: Path) -> None:
    data = bytes(range(60))
    path = tmp_path / "other.wav"
    path.write_bytes(
        riff(
            chunk(b"LIST", b"INFOISFTx"),
            chunk(b"fmt ", FMT_STEREO_24),
            chunk(b"fact", b"\x0a\0\0\0"),
            chunk(b"data", data),
        )
    )
    info = wav_info(path)
    assert (info.format_tag, info.channels, info.rate, info.bits, info.block_align) == (1, 2, 48000, 24, 6)
    assert info.sample_width == 3 and info.frames == 10 and not info.rf64 and not info.is_recording
    raw = path.read_bytes()
    assert raw[info.data_offset : info.data_offset + info.data_bytes] == data
    fd = os.open(path, os.O_RDONLY)
    try:
        assert wav_info(fd) == info, "an open file descriptor reads the same"
    finally:
        os.close(fd)


def test_wav_info_reads_extensible_float_and_the_44_byte_header(tmp_path: Path) -> None:
    guid_float = struct.pack("<H", 3) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 32000, 4, 32, 22, 32, 4) + guid_float
    path = tmp_path / "float.wav"
    path.write_bytes(riff(chunk(b"fmt ", fmt), chunk(b"data", bytes(16))))
    info = wav_info(path)
    assert (info.format_tag, info.bits, info.frames) == (3, 32, 4)

    old = tmp_path / "old.wav"  # a recording from before the JUNK reserve: fmt right after the RIFF header
    samples = pattern(100).tobytes()
    old.write_bytes(wav_header(len(samples))[:12] + wav_header(len(samples))[48:] + samples)
    assert wav_info(old).data_offset == 44 and wav_info(old).frames == 100 and wav_info(old).is_recording


def test_wav_info_data_sizes_never_written_or_past_the_end(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    for declared in (0, 0xFFFFFFFF, 1000):  # never written (a recording cut short, a pipe): up to the end
        path.write_bytes(wav_header(0)[:76] + struct.pack("<I", declared) + bytes(30))
        assert wav_info(path).data_bytes == 30, declared
    path.write_bytes(wav_header(20) + bytes(30))  # a header behind the file (killed before it was rewritten)
    assert wav_info(path).data_bytes == 20


def test_wav_info_reads_ffmpegs_rf64_and_a_ds64_table(tmp_path: Path) -> None:
    samples = pattern(5000)
    path = tmp_path / "ffmpeg.wav"
    with av.open(str(path), "w", format="wav", options={"rf64": "always"}) as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    info = wav_info(path)
    assert info.rf64 and info.is_recording and info.frames == 5000
    raw = path.read_bytes()
    np.testing.assert_array_equal(np.frombuffer(raw, "<i2", 5000, info.data_offset), samples)

    # A ds64 table gives the 64-bit size of a chunk other than data (here a 6-byte "big " chunk marked 0xFFFFFFFF).
    table = b"big " + struct.pack("<Q", 6)
    ds64 = struct.pack("<QQQI", 0, 8, 4, 1) + table
    fmt = chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16))
    big = b"big " + b"\xff" * 4 + bytes(6)
    path.write_bytes(
        riff(chunk(b"ds64", ds64), big, fmt, b"data" + b"\xff" * 4 + bytes(8), form=b"RF64", size=0xFFFFFFFF)
    )
    info = wav_info(path)
    assert (info.rf64, info.data_bytes, info.frames) == (True, 8, 4)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"ID3\x04" + bytes(100), "not a WAV"),
        (b"RIFF\0\0\0\0WAV", "not a WAV"),
        (riff(chunk(b"fmt ", FMT_STEREO_24), form=b"RF64"), "ds64"),
        (riff(chunk(b"fmt ", FMT_STEREO_24)), "without a data chunk"),
        (riff(chunk(b"data", bytes(4)), chunk(b"fmt ", FMT_STEREO_24)), "format chunk before"),
        (riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 0, 8000, 0, 0, 16)), chunk(b"data", bytes(4))), "damaged"),
    ],
    ids=["mp3", "short", "rf64-without-ds64", "no-data", "fmt-after-data", "no-channels"],
)
def test_wav_info_refuses_what_is_not_a_wav(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(raw)
    with pytest.raises(WavFormatError, match=message):
        wav_info(path)
    with pytest.raises(FileNotFoundError):
        wav_info(tmp_path / "missing.wav")
