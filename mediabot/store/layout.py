"""The output layout of a call on disk, private files and folders, and the recordings' WAV header.

::

    <output>/<call_id>/call.json               metadata (written atomically)
    <output>/<call_id>/audio/<participant>.wav one track per participant, 16 kHz mono PCM16, on the call timeline
    <output>/<call_id>/audio/mixed.wav         saturating sum of the tracks, sample by sample
    <output>/<call_id>/audio/<name>.ogg        optional Ogg/Opus copies, written when the call closes
    <output>/<call_id>/segments.jsonl          one JSON object a line
    <output>/<call_id>/events.jsonl            one JSON object a line

Recordings are personal data: every folder this module creates is 0700 and every file 0600, whatever the umask.
The WAV files are the canonical 44-byte-header PCM layout, the ``data`` chunk last, so a file cut short by a crash
is repaired by rewriting two size fields (see :mod:`mediabot.store.recovery`).
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediabot.audio import SAMPLE_RATE

__all__ = [
    "DATA_SIZE_OFFSET",
    "MAX_NAME_BYTES",
    "MIXED_NAME",
    "RIFF_SIZE_OFFSET",
    "SAMPLE_BYTES",
    "WAV_HEADER_BYTES",
    "CallPaths",
    "ensure_private_dir",
    "open_private",
    "read_jsonl",
    "safe_name",
    "wav_header",
    "wav_sizes",
    "write_bytes_atomic",
    "write_json_atomic",
]

MAX_NAME_BYTES = 200
MIXED_NAME = "mixed"
SAMPLE_BYTES = 2
WAV_HEADER_BYTES = 44
RIFF_SIZE_OFFSET = 4
DATA_SIZE_OFFSET = 40
_MAX_DATA_BYTES = 0xFFFFFFFF - (WAV_HEADER_BYTES - 8)
_FORBIDDEN = ("/", "\\", "\0")


def safe_name(name: str, what: str = "name") -> str:
    """``name`` if it is a safe single file-name component, else :class:`ValueError` naming ``what``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"the {what} is empty")
    if name in (".", "..") or any(char in name for char in _FORBIDDEN):
        raise ValueError(f"the {what} {name!r} is not a single file-name component")
    if len(os.fsencode(name)) > MAX_NAME_BYTES:
        raise ValueError(f"the {what} is longer than {MAX_NAME_BYTES} bytes")
    return name


@dataclass(frozen=True, slots=True)
class CallPaths:
    """Where the files of one call live under the output folder ``root``."""

    root: Path
    call_id: str

    def __post_init__(self) -> None:
        safe_name(self.call_id, "call id")

    @property
    def dir(self) -> Path:
        """The call's folder."""
        return self.root / self.call_id

    @property
    def audio_dir(self) -> Path:
        """The folder of the call's audio files."""
        return self.dir / "audio"

    @property
    def call_json(self) -> Path:
        """The call's metadata."""
        return self.dir / "call.json"

    @property
    def segments(self) -> Path:
        """Speech segments and transcripts, one JSON object a line."""
        return self.dir / "segments.jsonl"

    @property
    def events(self) -> Path:
        """Call events (roster, DTMF, ...), one JSON object a line."""
        return self.dir / "events.jsonl"

    @property
    def mixed(self) -> Path:
        """The mix of all tracks."""
        return self.audio_dir / f"{MIXED_NAME}.wav"

    def track(self, name: str) -> Path:
        """The WAV file of the track ``name``."""
        return self.audio_dir / f"{safe_name(name, 'track name')}.wav"

    def ogg(self, name: str) -> Path:
        """The Ogg/Opus copy of the track (or mix) ``name``."""
        return self.audio_dir / f"{safe_name(name, 'track name')}.ogg"


def ensure_private_dir(path: Path) -> None:
    """``mkdir -p path``: every folder it creates is 0700 whatever the umask, and ``path`` itself ends up 0700."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)
    os.chmod(path, 0o700)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` a file that is created 0600 whatever the umask (and made 0600 if it existed); returns the fd."""
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_json_atomic(path: Path, data: object) -> None:
    """Replace ``path`` with the JSON of ``data`` atomically: a 0600 temp file beside it, fsync, ``os.replace``.

    A missing parent folder is created (0700).
    """
    write_bytes_atomic(path, (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: a 0600 temp file beside it, fsync, ``os.replace``, fsync the folder.

    A missing parent folder is created (0700).
    """
    if not path.parent.is_dir():
        ensure_private_dir(path.parent)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, in order; a missing file is empty, a torn or foreign line is skipped.

    A killed process can leave a torn last line: what was written whole still counts.
    """
    try:
        raw = path.read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    records: list[dict[str, Any]] = []
    for line in raw.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                records.append(value)
    return records


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the folder's entry is; some filesystems refuse to fsync a folder.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def wav_sizes(data_bytes: int) -> tuple[bytes, bytes]:
    """The RIFF size field and the data size field (4 bytes each) for ``data_bytes`` of samples."""
    data_bytes = min(data_bytes, _MAX_DATA_BYTES)
    return struct.pack("<I", data_bytes + WAV_HEADER_BYTES - 8), struct.pack("<I", data_bytes)


def wav_header(data_bytes: int = 0) -> bytes:
    """The 44-byte header of a 16 kHz mono PCM16 WAV file (WAVE_FORMAT_PCM) holding ``data_bytes`` of samples."""
    riff, data = wav_sizes(data_bytes)
    fmt = struct.pack("<HHIIHH", 1, 1, SAMPLE_RATE, SAMPLE_RATE * SAMPLE_BYTES, SAMPLE_BYTES, 8 * SAMPLE_BYTES)
    return b"RIFF" + riff + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + data
