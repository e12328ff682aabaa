"""The call folder layout, private files and folders, atomic JSON, the WAV header."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import wave
from pathlib import Path

import pytest

from mediabot.store.layout import (
    WAV_HEADER_BYTES,
    CallPaths,
    ensure_private_dir,
    open_private,
    safe_name,
    wav_header,
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


def test_wav_header_is_standard_pcm() -> None:
    samples = struct.pack("<3h", 1, -2, 32767)
    header = wav_header(len(samples))
    assert len(header) == WAV_HEADER_BYTES
    assert struct.unpack_from("<4sI4s4sIHHIIHH4sI", header) == (
        b"RIFF",
        36 + len(samples),
        b"WAVE",
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
    with wave.open(io.BytesIO(header + samples)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 16000)
        assert reader.readframes(10) == samples
