"""The output layout of a call on disk, private files and folders, and the recordings' WAV header.

::

    <output>/<call_id>/call.json               metadata (written atomically)
    <output>/<call_id>/audio/<participant>.wav one track per participant, 16 kHz mono PCM16, on the call timeline
    <output>/<call_id>/audio/mixed.wav         saturating sum of the tracks, sample by sample
    <output>/<call_id>/audio/<name>.ogg        optional Ogg/Opus copies, written when the call closes
    <output>/<call_id>/segments.jsonl          one JSON object a line
    <output>/<call_id>/events.jsonl            one JSON object a line

Recordings are personal data: every folder this module creates is 0700 and every file 0600, whatever the umask.

A recording's WAV header (:func:`wav_header`, :data:`WAV_HEADER_BYTES` long) is RIFF/WAVE with a ``JUNK`` chunk
that keeps room for an RF64 ``ds64`` chunk, then ``fmt `` and the ``data`` chunk, last, so a file cut short by a crash
is repaired by rewriting its header (see :mod:`mediabot.store.recovery`). Once a file outgrows the 32-bit RIFF sizes
(4 GiB, 37.3 hours of a 16 kHz track) its header becomes RF64 (EBU Tech 3306) in place: ``RF64`` and data sizes
0xFFFFFFFF, the real sizes in the ``ds64`` chunk where the ``JUNK`` was. :func:`wav_info` reads any RIFF, RF64 or
BW64 WAV header.
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

from mediabot._errors import MediaError
from mediabot.audio import SAMPLE_RATE

__all__ = [
    "MAX_NAME_BYTES",
    "MIXED_NAME",
    "RIFF_LIMIT",
    "SAMPLE_BYTES",
    "WAV_HEADER_BYTES",
    "CallPaths",
    "WavFormatError",
    "WavInfo",
    "ensure_private_dir",
    "open_private",
    "read_jsonl",
    "safe_name",
    "wav_header",
    "wav_info",
    "write_bytes_atomic",
    "write_json_atomic",
]

MAX_NAME_BYTES = 200
MIXED_NAME = "mixed"
SAMPLE_BYTES = 2
# RIFF header (12) + JUNK or ds64 chunk (8 + 28) + fmt chunk (8 + 16) + data chunk header (8).
WAV_HEADER_BYTES = 80
# A RIFF size (file size - 8) from here on is written as RF64. 0xFFFFFFFF is what a 32-bit size field holds at most,
# and RF64's "see ds64" marker. Read by wav_header() on every call: tests lower it to reach RF64 with a small file.
RIFF_LIMIT = 0xFFFFFFFF
_FORBIDDEN = ("/", "\\", "\0")
_NO_SIZE = 0xFFFFFFFF
_DS64_BODY = 28  # riffSize, dataSize, sampleCount (64 bits each), tableLength (32 bits), an empty table
_PCM = 1
_EXTENSIBLE = 0xFFFE
_FMT_CHUNK = b"fmt " + struct.pack(
    "<IHHIIHH", 16, _PCM, 1, SAMPLE_RATE, SAMPLE_RATE * SAMPLE_BYTES, SAMPLE_BYTES, 8 * SAMPLE_BYTES
)
_JUNK_CHUNK = b"JUNK" + struct.pack("<I", _DS64_BODY) + bytes(_DS64_BODY)
_MAX_TABLE = 4096  # ds64 table entries read at most (a real file has a handful)


class WavFormatError(MediaError):
    """A file that is not a RIFF/RF64 WAV file, or one whose header is damaged."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    """A WAV file's format and where its samples are, as :func:`wav_info` read them.

    ``format_tag`` is 1 for PCM and 3 for IEEE float (a WAVE_FORMAT_EXTENSIBLE file's sub-format); ``data_bytes``
    is the ``data`` chunk's size (the ``ds64`` one in an RF64 file) clipped to what the file holds, or everything up
    to the end of the file when the size was never written (0 or 0xFFFFFFFF in a plain RIFF file).
    """

    format_tag: int
    channels: int
    rate: int
    bits: int
    block_align: int
    data_offset: int
    data_bytes: int
    rf64: bool

    @property
    def sample_width(self) -> int:
        """Bytes per sample of one channel."""
        return self.block_align // self.channels

    @property
    def frames(self) -> int:
        """Whole sample frames (one sample of every channel) in the data chunk."""
        return self.data_bytes // self.block_align

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate

    @property
    def is_recording(self) -> bool:
        """Whether it is the format of mediabot's recordings: 16 kHz mono PCM16."""
        fields = (self.format_tag, self.channels, self.rate, self.bits, self.block_align)
        return fields == (_PCM, 1, SAMPLE_RATE, 8 * SAMPLE_BYTES, SAMPLE_BYTES)


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


def wav_header(data_bytes: int = 0) -> bytes:
    """The :data:`WAV_HEADER_BYTES` header of a 16 kHz mono PCM16 recording holding ``data_bytes`` of samples.

    RIFF/WAVE with a ``JUNK`` chunk holding room for ``ds64`` while the RIFF size is below :data:`RIFF_LIMIT`,
    RF64 (EBU Tech 3306) from there on; either way ``fmt `` and ``data`` are at the same places.
    """
    riff_size = WAV_HEADER_BYTES - 8 + data_bytes
    if riff_size < RIFF_LIMIT:
        head = struct.pack("<4sI4s", b"RIFF", riff_size, b"WAVE") + _JUNK_CHUNK
        return head + _FMT_CHUNK + struct.pack("<4sI", b"data", data_bytes)
    head = struct.pack("<4sI4s", b"RF64", _NO_SIZE, b"WAVE")
    ds64 = struct.pack("<4sIQQQI", b"ds64", _DS64_BODY, riff_size, data_bytes, data_bytes // SAMPLE_BYTES, 0)
    return head + ds64 + _FMT_CHUNK + struct.pack("<4sI", b"data", _NO_SIZE)


def wav_info(file: os.PathLike[str] | str | int) -> WavInfo:
    """Read the header of a WAV file (a path, or an open file descriptor read with ``os.pread``).

    RIFF, RF64 and BW64, chunks in any order and of any kind (``JUNK``, ``LIST``, ``fact``...) before ``data``;
    ``fmt `` must come before ``data``. :class:`WavFormatError` if it is not such a file, :class:`OSError` if it
    cannot be read.
    """
    if isinstance(file, int):
        return _wav_info(file)
    fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _wav_info(fd)
    finally:
        os.close(fd)


def _wav_info(fd: int) -> WavInfo:
    size = os.fstat(fd).st_size
    head = os.pread(fd, 12, 0)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        raise WavFormatError("not a WAV (RIFF/WAVE or RF64) file")
    rf64 = head[:4] != b"RIFF"
    position = 12
    data_size64 = 0
    table: dict[bytes, int] = {}
    if rf64:
        ds64 = os.pread(fd, 8 + _DS64_BODY, position)
        if len(ds64) < 8 + _DS64_BODY or ds64[:4] != b"ds64":
            raise WavFormatError("an RF64 file without its ds64 chunk")
        length, _riff_size, data_size64, _samples, entries = struct.unpack_from("<IQQQI", ds64, 4)
        if length < _DS64_BODY:
            raise WavFormatError("an RF64 file with a damaged ds64 chunk")
        entries = min(entries, (length - _DS64_BODY) // 12, _MAX_TABLE)
        raw = os.pread(fd, 12 * entries, position + 8 + _DS64_BODY)
        table = {raw[at : at + 4]: struct.unpack_from("<Q", raw, at + 4)[0] for at in range(0, len(raw) - 11, 12)}
        position += 8 + length + (length & 1)
    fmt: bytes | None = None
    while position + 8 <= size:
        chunk_id, length = struct.unpack("<4sI", os.pread(fd, 8, position))
        body = position + 8
        if rf64 and length == _NO_SIZE:
            length = data_size64 if chunk_id == b"data" else table.get(chunk_id, length)
        if chunk_id == b"fmt ":
            fmt = os.pread(fd, min(length, 40), body)
        elif chunk_id == b"data":
            if not rf64 and length in (0, _NO_SIZE):
                length = size - body  # never written: a recording cut short, or a writer that could not seek
            return _info(fmt, body, min(length, size - body), rf64)
        position = body + length + (length & 1)
    raise WavFormatError("a WAV file without a data chunk")


def _info(fmt: bytes | None, data_offset: int, data_bytes: int, rf64: bool) -> WavInfo:
    if fmt is None or len(fmt) < 16:
        raise WavFormatError("a WAV file without a format chunk before its data")
    tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        (tag,) = struct.unpack_from("<H", fmt, 24)  # the sub-format GUID starts with the plain format tag
    if channels < 1 or rate < 1 or block_align < channels:
        raise WavFormatError(f"a damaged WAV format chunk ({channels} channel(s), {rate} Hz, {block_align} bytes)")
    return WavInfo(tag, channels, rate, bits, block_align, data_offset, data_bytes, rf64)
