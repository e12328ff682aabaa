"""Crash repair of the files a call leaves on disk (a process killed mid-call, a power cut).

The recorder keeps every WAV header in step with what it wrote, but a kill between a data write and its header update,
or mid-write, leaves sizes that disagree with the file, tracks of different lengths and a mix that lags the tracks.
:func:`repair_call` puts a call folder back to what a clean close leaves:

1. every ``audio/*.wav`` is cut to whole samples and its header rewritten to match the file: RIFF, or RF64 past
   4 GiB (see :func:`mediabot.store.layout.wav_header`); the 44-byte headers of older recordings and other writers'
   16 kHz mono PCM16 files get their sizes rewritten in place;
2. every track is padded with silence to the longest, and the tail of ``mixed.wav`` that is missing is rebuilt from
   the tracks, so ``mixed`` is again the saturating sum of the tracks, sample by sample;
3. a half-written last line of a ``.jsonl`` file is cut off; temp files of interrupted atomic writes are removed;
4. ``call.json`` says ``"recovered": true`` and ``"recovered_at"`` (a minimal one is created if missing) when
   anything was repaired or the call's metadata says it never completed (``"complete": false``).

Run it on calls that are not being recorded (at start-up, before serving). It is idempotent: a second run changes
nothing. A call that was closed cleanly is left untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from mediabot.audio import SAMPLE_RATE
from mediabot.store.layout import (
    MIXED_NAME,
    SAMPLE_BYTES,
    WAV_HEADER_BYTES,
    WavFormatError,
    open_private,
    wav_header,
    wav_info,
    write_json_atomic,
)

__all__ = ["RepairReport", "log_repairs", "repair_call", "repair_folders", "repair_recordings"]

logger = logging.getLogger(__name__)

_BLOCK = 16 * SAMPLE_RATE
_TAIL_BLOCK = 64 * 1024
# The size fields of our header, and of the 44-byte one older recordings have: masked when matching a torn header.
_SIZE_FIELDS = ((4, 8), (WAV_HEADER_BYTES - 4, WAV_HEADER_BYTES))
_LEGACY_HEADER_BYTES = 44
_LEGACY_SIZE_FIELDS = ((4, 8), (40, 44))
_RESERVE = slice(12, 20)  # the chunk that is JUNK in a RIFF recording, ds64 in an RF64 one
_FMT = slice(48, WAV_HEADER_BYTES - 8)  # our fmt chunk
_DS64_SIZES = 20  # riffSize, dataSize, sampleCount: 64 bits each, at the start of the ds64 body
_NO_SIZE = 0xFFFFFFFF  # RF64's "see ds64"
_MAX_RIFF_SIZE = _NO_SIZE - 1  # the most a plain RIFF header says
_Kind = Literal["ours", "riff", "rf64"]


@dataclass
class RepairReport:
    """What :func:`repair_call` changed in one call folder, and what it could not repair."""

    call_dir: Path
    headers_fixed: list[str] = field(default_factory=list)
    padded: dict[str, int] = field(default_factory=dict)
    mixed_rebuilt: int = 0
    lines_truncated: dict[str, int] = field(default_factory=dict)
    temp_removed: list[str] = field(default_factory=list)
    call_json_created: bool = False
    marked_recovered: bool = False
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether anything on disk was changed."""
        return bool(
            self.headers_fixed
            or self.padded
            or self.mixed_rebuilt
            or self.lines_truncated
            or self.temp_removed
            or self.call_json_created
            or self.marked_recovered
        )


@dataclass
class _Wav:
    """An open 16 kHz mono PCM16 WAV file: where its samples start, how many whole samples it holds, its header kind.

    ``kind`` is ``"ours"`` (our header: rewritten whole, RIFF or RF64 by size), ``"riff"`` (the 44-byte header of an
    older recording, or another writer's chunks: sizes rewritten in place) or ``"rf64"`` (another writer's RF64 file:
    the ds64 sizes rewritten in place).
    """

    path: Path
    fd: int
    data_offset: int
    samples: int
    kind: _Kind = "ours"

    def read(self, start: int, count: int) -> npt.NDArray[np.int16]:
        raw = os.pread(self.fd, count * SAMPLE_BYTES, self.data_offset + start * SAMPLE_BYTES)
        out = np.zeros(count, np.int16)
        got = np.frombuffer(raw, "<i2")
        out[: got.size] = got
        return out

    def append(self, data: npt.NDArray[np.int16]) -> None:
        view = memoryview(np.ascontiguousarray(data, "<i2").data).cast("B")
        offset = self.data_offset + self.samples * SAMPLE_BYTES
        done = 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], offset + done)
        self.samples += data.size

    def header(self) -> list[tuple[int, bytes]]:
        """What the header must say for the samples the file holds: ``(offset, bytes)`` to write."""
        data_bytes = self.samples * SAMPLE_BYTES
        if self.kind == "ours":
            return [(0, wav_header(data_bytes))]
        riff_size = self.data_offset - 8 + data_bytes
        if self.kind == "rf64":
            sizes = struct.pack("<QQQ", riff_size, data_bytes, self.samples)
            return [(_DS64_SIZES, sizes), (self.data_offset - 4, struct.pack("<I", _NO_SIZE))]
        if riff_size > _MAX_RIFF_SIZE:  # no room for ds64: say what a RIFF header can, whole samples
            data_bytes = (_MAX_RIFF_SIZE - (self.data_offset - 8)) // SAMPLE_BYTES * SAMPLE_BYTES
            riff_size = self.data_offset - 8 + data_bytes
        return [(4, struct.pack("<I", riff_size)), (self.data_offset - 4, struct.pack("<I", data_bytes))]

    def header_matches(self) -> bool:
        """Whether the header on disk already says what :meth:`header` would write."""
        return all(os.pread(self.fd, len(data), offset) == data for offset, data in self.header())

    def write_sizes(self) -> None:
        for offset, data in self.header():
            os.pwrite(self.fd, data, offset)


def repair_recordings(output_dir: Path, *, interrupted_only: bool = False) -> list[RepairReport]:
    """:func:`repair_call` on every call folder under ``output_dir`` (in name order); none if it does not exist.

    With ``interrupted_only``, calls whose ``call.json`` says ``"complete": true`` are skipped (a start-up scan).
    """
    if not output_dir.is_dir():
        return []
    entries = [e for e in sorted(output_dir.iterdir()) if not e.name.startswith(".") and not e.is_symlink()]
    return repair_folders(entries, interrupted_only=interrupted_only)


def log_repairs(reports: Iterable[RepairReport]) -> list[Path]:
    """Log each repair that changed something or found a problem; the repaired folders that have a ``call.json``."""
    folders = []
    for report in reports:
        if report.changed or report.problems:
            logger.warning("repaired the interrupted recording %s: %s", report.call_dir.name, report)
        if (report.call_dir / "call.json").is_file():
            folders.append(report.call_dir)
    return folders


def repair_folders(folders: Iterable[Path], *, interrupted_only: bool = False) -> list[RepairReport]:
    """:func:`repair_call` on each of ``folders`` that is a call folder (audio, ``call.json`` or event files).

    A folder that cannot be repaired (a full disk, a permission) gets a report of its problem; the others go on.
    """
    reports = []
    for entry in folders:
        if not entry.is_dir():
            continue
        if not ((entry / "audio").is_dir() or (entry / "call.json").exists() or any(entry.glob("*.jsonl"))):
            continue
        if interrupted_only and _completed(entry):
            continue
        try:
            reports.append(repair_call(entry))
        except OSError as exc:
            # One unrepairable call (a full disk, a permission) must not stop the others from being repaired.
            reports.append(RepairReport(entry, problems=[f"repair failed: {exc.strerror or exc}"]))
    return reports


def _completed(call_dir: Path) -> bool:
    try:
        meta = json.loads((call_dir / "call.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("complete") is True


def repair_call(call_dir: Path) -> RepairReport:
    """Repair one call folder after a crash (see the module docstring); returns what was done."""
    report = RepairReport(call_dir)
    _remove_temp_files(call_dir, report)
    audio = call_dir / "audio"
    if audio.is_dir():
        _repair_audio(audio, report)
    for path in sorted(call_dir.glob("*.jsonl")):
        _repair_jsonl(path, report)
    _mark_recovered(call_dir, report)
    return report


def _remove_temp_files(call_dir: Path, report: RepairReport) -> None:
    folders = [call_dir, call_dir / "audio"]
    for folder in folders:
        if not folder.is_dir():
            continue
        for temp in sorted(folder.glob(".*.tmp")):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
                report.temp_removed.append(str(temp.relative_to(call_dir)))


def _repair_audio(audio: Path, report: RepairReport) -> None:
    opened: list[_Wav] = []
    try:
        tracks: list[_Wav] = []
        mixed: _Wav | None = None
        for path in sorted(audio.glob("*.wav")):
            try:
                wav = _open_wav(path, report)
            except OSError as exc:
                report.problems.append(f"{path.name}: {exc.strerror or exc}, left as it is")
                continue
            if wav is None:
                continue
            opened.append(wav)
            if path.stem == MIXED_NAME:
                mixed = wav
            else:
                tracks.append(wav)
        if not tracks:
            return
        if mixed is None:
            mixed = _create_wav(audio / f"{MIXED_NAME}.wav")
            opened.append(mixed)
        length = max(wav.samples for wav in [*tracks, mixed])
        report.samples = length
        zeros = np.zeros(_BLOCK, np.int16)
        for wav in tracks:
            if wav.samples < length:
                report.padded[wav.path.name] = length - wav.samples
                while wav.samples < length:
                    wav.append(zeros[: min(_BLOCK, length - wav.samples)])
                wav.write_sizes()
        if mixed.samples < length:
            report.mixed_rebuilt = length - mixed.samples
            while mixed.samples < length:
                start = mixed.samples
                count = min(_BLOCK, length - start)
                total = np.zeros(count, np.int32)
                for wav in tracks:
                    total += wav.read(start, count)
                mixed.append(np.clip(total, -32768, 32767).astype(np.int16))
            mixed.write_sizes()
        for wav in opened:
            os.fsync(wav.fd)
    finally:
        for wav in opened:
            os.close(wav.fd)


def _open_wav(path: Path, report: RepairReport) -> _Wav | None:
    """Open a WAV read-write with its sizes made to agree with the file (whole samples); None if it is not ours."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, WAV_HEADER_BYTES, 0)
        if _is_torn_header(head, size):
            # Killed while creating the file: nothing but (part of) the header was written.
            os.ftruncate(fd, 0)
            os.pwrite(fd, wav_header(0), 0)
            report.headers_fixed.append(path.name)
            return _Wav(path, fd, WAV_HEADER_BYTES, 0)
        try:
            info = wav_info(fd)
        except WavFormatError:
            info = None
        if info is None or not info.is_recording:
            report.problems.append(f"{path.name}: not a 16 kHz mono PCM16 WAV file, left as it is")
            os.close(fd)
            return None
        # Our files end with their data chunk: whatever follows the data offset is samples (a torn last one cut).
        samples = (size - info.data_offset) // SAMPLE_BYTES
        wav = _Wav(path, fd, info.data_offset, samples, _kind(head, info.data_offset, info.rf64))
        end = info.data_offset + samples * SAMPLE_BYTES
        if size != end or not wav.header_matches():
            if size != end:
                os.ftruncate(fd, end)
            wav.write_sizes()
            report.headers_fixed.append(path.name)
        if wav.kind == "riff" and wav.data_offset - 8 + samples * SAMPLE_BYTES > _MAX_RIFF_SIZE:
            report.problems.append(f"{path.name}: longer than its RIFF header can say; readers see its first 4 GiB")
        return wav
    except BaseException:
        os.close(fd)
        raise


def _kind(head: bytes, data_offset: int, rf64: bool) -> _Kind:
    ours = wav_header(0)
    reserve = head[_RESERVE] in (ours[_RESERVE], b"ds64" + ours[_RESERVE][4:])
    if data_offset == WAV_HEADER_BYTES and reserve and head[_FMT] == ours[_FMT]:
        return "ours"
    return "rf64" if rf64 else "riff"


def _is_torn_header(head: bytes, size: int) -> bool:
    """Whether the file is a header cut short (ours, or the 44-byte one of older recordings) and nothing else."""
    ours = wav_header(0)
    legacy = ours[:12] + ours[48:]  # the same fmt and data chunks without the JUNK reserve
    return (size < WAV_HEADER_BYTES and _matches(head, ours, _SIZE_FIELDS)) or (
        size < _LEGACY_HEADER_BYTES and _matches(head, legacy, _LEGACY_SIZE_FIELDS)
    )


def _matches(head: bytes, expected: bytes, size_fields: tuple[tuple[int, int], ...]) -> bool:
    masked = bytearray(head[: len(expected)])
    for start, end in size_fields:
        masked[start:end] = expected[start:end][: max(0, len(masked) - start)]
    return bytes(masked) == expected[: len(masked)]


def _create_wav(path: Path) -> _Wav:
    fd = open_private(path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    try:
        os.pwrite(fd, wav_header(0), 0)
    except BaseException:
        os.close(fd)
        raise
    return _Wav(path, fd, WAV_HEADER_BYTES, 0)


def _repair_jsonl(path: Path, report: RepairReport) -> None:
    """Cut a half-written last line (anything after the last newline)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if not size or os.pread(fd, 1, size - 1) == b"\n":
            return
        keep = 0
        end = size
        while end > 0:
            start = max(0, end - _TAIL_BLOCK)
            at = os.pread(fd, end - start, start).rfind(b"\n")
            if at >= 0:
                keep = start + at + 1
                break
            end = start
        os.ftruncate(fd, keep)
        os.fsync(fd)
        report.lines_truncated[path.name] = size - keep
    finally:
        os.close(fd)


def _mark_recovered(call_dir: Path, report: RepairReport) -> None:
    path = call_dir / "call.json"
    meta: dict[str, object] | None = None
    try:
        loaded = json.loads(path.read_bytes())
        if isinstance(loaded, dict):
            meta = loaded
        else:
            report.problems.append("call.json is not a JSON object; kept as call.json.broken")
    except FileNotFoundError:
        pass
    except (ValueError, UnicodeDecodeError):
        report.problems.append("call.json is not valid JSON; kept as call.json.broken")
    if meta is None:
        if path.exists():
            os.replace(path, path.with_name("call.json.broken"))
        meta = {"call_id": call_dir.name}
        report.call_json_created = True
    elif not report.changed and (meta.get("recovered") is True or meta.get("complete") is not False):
        # Nothing to repair and not a call known to be cut short (the session writes "complete": false until
        # it closes), or already marked: leave it as it is.
        return
    meta["recovered"] = True
    meta["recovered_at"] = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    write_json_atomic(path, meta)
    report.marked_recovered = True
