"""``CallRecorder``: one WAV per participant track and their mix, written incrementally off the event loop.

Every track is placed on the call timeline: late joins, gaps and a participant who left are silence, so at close all
files of a call have the same length and ``mixed.wav`` is, sample by sample, the saturating sum of the track files.

Two sides, two threads:

* the **loop side** (:class:`TrackWriter`, :meth:`CallRecorder.tick`) runs on the event loop. ``write`` is the hot
  path: it copies a 20 ms frame into a preallocated chunk buffer and, once per chunk (``chunk_s``), hands the buffer to
  the IO thread with one queue put. Buffers come back to a small pool when the IO thread is done with them.
* the **IO side** runs in :class:`RecorderIO`'s single thread: it appends chunks to the track files, sums them into an
  int32 accumulator and writes the mix up to the watermark (the least any track has written). After every data
  write the header is rewritten (one ``pwrite``), so a file is always a valid WAV of what it holds, even after
  kill -9; past 4 GiB (37.3 hours) that rewrite turns it into RF64 (see :func:`mediabot.store.layout.wav_header`).

``tick`` (every 200 to 500 ms) keeps the mix moving: tracks that have not written up to ``position - hold`` are padded
with silence (a stalled source does not hold the mix back), partial chunks older than :data:`FLUSH_AFTER_S` are
flushed (at most about a second is ever held in memory), and the mix advances.

A disk error (ENOSPC, EIO) stops that one file: it is truncated to whole samples with a matching header, reported
once through ``on_error`` and :attr:`CallRecorder.errors`, and the rest of the call goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import av
import numpy as np
import numpy.typing as npt

from mediabot._errors import MediaError
from mediabot.audio import SAMPLE_RATE
from mediabot.store.layout import (
    MIXED_NAME,
    SAMPLE_BYTES,
    WAV_HEADER_BYTES,
    CallPaths,
    WavFormatError,
    WavInfo,
    ensure_private_dir,
    open_private,
    safe_name,
    wav_header,
    wav_info,
)

__all__ = [
    "FLUSH_AFTER_S",
    "CallRecorder",
    "RecordedFile",
    "RecorderError",
    "RecorderIO",
    "RecordingSummary",
    "TrackWriter",
]

logger = logging.getLogger(__name__)

Int16Array = npt.NDArray[np.int16]
T = TypeVar("T")

FLUSH_AFTER_S = 1.0
POOL_MAX = 8
_OGG_BLOCK = SAMPLE_RATE


class RecorderError(MediaError):
    """The recorder cannot take more work: its IO thread or the recorder itself is closed."""


# -- the IO thread ------------------------------------------------------------------------------------------------

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Job = tuple[Callable[..., Any], tuple[Any, ...], _Waiter | None]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _noop() -> None:
    return None


class RecorderIO:
    """The one recorder IO thread of a process ("mediabot-recorder"): runs file jobs in the order they are queued.

    A job that raises does not stop the thread: :meth:`run` re-raises in the awaiting task, :meth:`submit` logs it
    (the recorder catches its own disk errors per file). The thread starts with :meth:`start` or the first job;
    :meth:`close` runs what is queued, then joins the thread.
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (idempotent); :class:`RecorderError` once closed."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._closed:
            raise RecorderError("the recorder IO thread is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="mediabot-recorder", daemon=False)
            self._thread.start()

    def _put(self, job: _Job) -> None:
        # Under the lock, so no job can slip in behind close()'s stop marker and never run.
        with self._lock:
            self._start_locked()
            self._queue.put(job)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Queue ``fn(*args)`` for the IO thread, fire and forget."""
        self._put((fn, args, None))

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Queue ``fn(*args)`` for the IO thread and await its result (or its exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put((fn, args, (loop, future)))
        return await future

    def close(self) -> None:
        """Run every queued job, then stop and join the thread (idempotent; no more jobs afterwards)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._thread is not None:
                    self._queue.put(None)
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop on the queued jobs."""
        if not self._closed and self._thread is not None:
            await self.run(_noop)
        self.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            fn, args, waiter = job
            try:
                result = fn(*args)
            except Exception as exc:
                if waiter is None:
                    logger.exception("recorder job %s failed", getattr(fn, "__qualname__", fn))
                else:
                    self._resolve(waiter, None, exc)
                continue
            if waiter is not None:
                self._resolve(waiter, result, None)

    @staticmethod
    def _resolve(waiter: _Waiter, result: Any, error: BaseException | None) -> None:
        loop, future = waiter
        # The awaiting loop may be gone (closed during shutdown): nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, error)


# -- what close() returns ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordedFile:
    """One file of a recording: where it is, how much audio it holds, what was lost on the way."""

    path: Path
    samples: int
    seconds: float
    late_samples: int = 0
    dropped_samples: int = 0
    error: str | None = None
    ogg: Path | None = None

    def to_json(self, base: Path) -> dict[str, Any]:
        """A JSON object of the file, its paths relative to ``base`` (the call folder)."""
        return {
            "path": _relative(self.path, base),
            "samples": self.samples,
            "seconds": self.seconds,
            "late_samples": self.late_samples,
            "dropped_samples": self.dropped_samples,
            "error": self.error,
            "ogg": None if self.ogg is None else _relative(self.ogg, base),
        }


def _relative(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


@dataclass(frozen=True, slots=True)
class RecordingSummary:
    """A closed recording: its length on the call timeline, each track (by key), the mix, and any disk errors."""

    call_id: str
    directory: Path
    samples: int
    seconds: float
    tracks: dict[str, RecordedFile] = field(default_factory=dict)
    mixed: RecordedFile | None = None
    errors: tuple[str, ...] = ()

    @property
    def late_samples(self) -> int:
        """Samples of all tracks dropped because they arrived for a part of the timeline already written."""
        return sum(track.late_samples for track in self.tracks.values())

    @property
    def dropped_samples(self) -> int:
        """Samples of all tracks written after their track ended or the recorder closed."""
        return sum(track.dropped_samples for track in self.tracks.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON object of the recording (paths relative to the call folder), for call.json."""
        return {
            "samples": self.samples,
            "seconds": self.seconds,
            "tracks": {key: track.to_json(self.directory) for key, track in self.tracks.items()},
            "mixed": None if self.mixed is None else self.mixed.to_json(self.directory),
            "late_samples": self.late_samples,
            "dropped_samples": self.dropped_samples,
            "errors": list(self.errors),
        }


# -- the IO side (touched only by the IO thread) --------------------------------------------------------------------


class _WavFile:
    """A 16 kHz mono PCM16 WAV file appended at the end; the header always describes what was written."""

    __slots__ = ("error", "fd", "path", "report", "samples")

    def __init__(self, path: Path, report: Callable[[str], None]) -> None:
        self.path = path
        self.report = report
        self.fd: int | None = None
        self.samples = 0
        self.error: str | None = None

    def create(self) -> None:
        try:
            self.fd = open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except OSError as exc:
            self._fail(exc, "cannot create")
            return
        self._pwrite(wav_header(0), 0, "cannot write the header of")

    def append(self, data: Int16Array) -> None:
        fd = self.fd
        if fd is None or not data.size:
            return
        view = memoryview(data.data).cast("B")
        offset = WAV_HEADER_BYTES + self.samples * SAMPLE_BYTES
        done = 0
        try:
            while done < len(view):
                done += os.pwrite(fd, view[done:], offset + done)
        except OSError as exc:
            self.samples += done // SAMPLE_BYTES
            self._fail(exc, "cannot write")
            return
        self.samples += done // SAMPLE_BYTES
        self._pwrite(wav_header(self.samples * SAMPLE_BYTES), 0, "cannot update the header of")

    def silence(self, count: int, zeros: Int16Array) -> None:
        while count > 0 and self.fd is not None:
            take = min(count, zeros.size)
            self.append(zeros[:take])
            count -= take

    def finish(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            self.fd = fd
            self._fail(exc, "cannot sync")
            return
        os.close(fd)

    def _pwrite(self, data: bytes, offset: int, what: str) -> bool:
        assert self.fd is not None
        try:
            if os.pwrite(self.fd, data, offset) != len(data):
                raise OSError(errno.EIO, "short write")
        except OSError as exc:
            self._fail(exc, what)
            return False
        return True

    def _fail(self, exc: OSError, what: str) -> None:
        """Stop writing this file, leave it a valid WAV of the whole samples it holds, report once."""
        fd, self.fd = self.fd, None
        if fd is not None:
            # Best effort: the header is overwritten in place, which needs no new blocks even on a full disk.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, WAV_HEADER_BYTES + self.samples * SAMPLE_BYTES)
                os.pwrite(fd, wav_header(self.samples * SAMPLE_BYTES), 0)
            os.close(fd)
        self.error = f"{what} {self.path}: {exc.strerror or exc}"
        self.report(self.error)


class _IOTrack:
    """The IO side of one track: its file and how far it has written on the timeline."""

    __slots__ = ("file", "written")

    def __init__(self, file: _WavFile) -> None:
        self.file = file
        self.written = 0


@dataclass(frozen=True, slots=True)
class _Closed:
    """What the IO thread knows at close: per file (tracks by key, then the mix) its path, samples, error, ogg."""

    tracks: dict[str, tuple[Path, int, str | None, Path | None]]
    mixed: tuple[Path, int, str | None, Path | None] | None


class _Disk:
    """A call's files and the running mix; every method runs in the IO thread."""

    def __init__(self, paths: CallPaths, chunk: int, pool: deque[Int16Array], report: Callable[[str], None]) -> None:
        self.paths = paths
        self.pool = pool
        self.report = report
        self.tracks: dict[str, _IOTrack] = {}
        self.mixed = _WavFile(paths.mixed, report)
        self.zeros = np.zeros(max(chunk, SAMPLE_RATE), np.int16)
        # acc[i] is the int32 sum of every track at timeline position mix_written + i.
        self.acc = np.zeros(4 * chunk, np.int32)
        self.out = np.zeros(chunk, np.int16)
        self.mix_written = 0
        self.dir_failed = False
        self.failed_jsonl: set[Path] = set()

    def create(self) -> None:
        try:
            ensure_private_dir(self.paths.audio_dir)
        except OSError as exc:
            self.dir_failed = True
            self.report(f"cannot create {self.paths.audio_dir}: {exc.strerror or exc}")
            return
        self.mixed.create()

    def add_track(self, key: str, track: _IOTrack, name: str, start: int) -> None:
        self.tracks[key] = track
        track.file.path = self.paths.track(name)
        if not self.dir_failed:
            track.file.create()
        track.file.silence(start, self.zeros)
        track.written = start
        self._reserve(start - self.mix_written)

    def write(self, track: _IOTrack, buf: Int16Array, count: int) -> None:
        data = buf[:count]
        track.file.append(data)
        start = track.written - self.mix_written
        self._reserve(start + count)
        acc = self.acc[start : start + count]
        np.add(acc, data, out=acc)
        track.written += count
        if len(self.pool) < POOL_MAX:
            self.pool.append(buf)

    def silence(self, track: _IOTrack, count: int) -> None:
        track.file.silence(count, self.zeros)
        track.written += count
        self._reserve(track.written - self.mix_written)

    def rename(self, track: _IOTrack, name: str) -> None:
        old, new = track.file.path, self.paths.track(name)
        if not (track.file.fd is not None or old.exists()):
            track.file.path = new
            return
        if new.exists():
            self.report(f"cannot rename {old.name} to {new.name}: {new} exists")
            return
        try:
            os.rename(old, new)
        except OSError as exc:
            self.report(f"cannot rename {old} to {new.name}: {exc.strerror or exc}")
            return
        track.file.path = new

    def mix(self, floor: int) -> None:
        """Write the mix up to ``floor``, and never past what any track has written."""
        end = min(floor, min((track.written for track in self.tracks.values()), default=floor))
        count = end - self.mix_written
        if count <= 0:
            return
        # Past what any track has written the accumulator holds nothing (no tracks: the mix is silence).
        used = max((track.written for track in self.tracks.values()), default=self.mix_written) - self.mix_written
        summed = min(count, used)
        acc, out = self.acc, self.out
        for at in range(0, summed, out.size):
            part = acc[at : min(at + out.size, summed)]
            np.clip(part, -32768, 32767, out=part)
            out[: part.size] = part
            self.mixed.append(out[: part.size])
        self.mixed.silence(count - summed, self.zeros)
        rest = used - summed
        if rest > 0:
            acc[:rest] = acc[summed:used]
        acc[max(rest, 0) : used] = 0
        self.mix_written = end

    def close(self, final: int, ogg: bool) -> _Closed:
        for track in self.tracks.values():
            if track.written < final:
                self.silence(track, final - track.written)
        self.mix(final)
        for track in self.tracks.values():
            track.file.finish()
        self.mixed.finish()
        files = [*(track.file for track in self.tracks.values()), self.mixed]
        oggs = {id(file): self._encode_ogg(file) if ogg else None for file in files}
        return _Closed(
            tracks={
                key: (t.file.path, t.file.samples, t.file.error, oggs[id(t.file)]) for key, t in self.tracks.items()
            },
            mixed=(self.mixed.path, self.mixed.samples, self.mixed.error, oggs[id(self.mixed)]),
        )

    def append_line(self, path: Path, line: bytes) -> None:
        try:
            ensure_private_dir(path.parent)
            fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        except OSError as exc:
            self._jsonl_failed(path, exc)
            return
        try:
            size = os.fstat(fd).st_size
            view = memoryview(line)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError:
                # Never leave half a line behind: the next record would be glued to it.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        except OSError as exc:
            self._jsonl_failed(path, exc)
        finally:
            os.close(fd)

    def _jsonl_failed(self, path: Path, exc: OSError) -> None:
        if path not in self.failed_jsonl:
            self.failed_jsonl.add(path)
            self.report(f"cannot append to {path}: {exc.strerror or exc}")

    def _reserve(self, size: int) -> None:
        if size > self.acc.size:
            grown = np.zeros(max(size, 2 * self.acc.size), np.int32)
            grown[: self.acc.size] = self.acc
            self.acc = grown

    def _encode_ogg(self, file: _WavFile) -> Path | None:
        """Encode a finished WAV to Ogg/Opus beside it (through a temp file, so a crash leaves no half .ogg)."""
        if not file.path.exists():
            return None
        target = self.paths.ogg(file.path.stem)
        temp = target.with_name(f".{target.name}.tmp")
        try:
            source = os.open(file.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                with os.fdopen(fd, "wb") as sink:
                    _encode_opus(source, wav_info(source), sink)
            finally:
                os.close(source)
            os.replace(temp, target)
        except (OSError, WavFormatError, av.FFmpegError) as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            self.report(f"cannot encode {target}: {exc}")
            return None
        return target


def _encode_opus(source: int, info: WavInfo, sink: Any) -> None:
    """Encode the samples of the recording open as ``source`` (its header read as ``info``) to Ogg/Opus."""
    with av.open(sink, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=SAMPLE_RATE, layout="mono")
        pts = 0
        for first in range(0, info.frames, _OGG_BLOCK):
            count = min(_OGG_BLOCK, info.frames - first)
            raw = os.pread(source, count * SAMPLE_BYTES, info.data_offset + first * SAMPLE_BYTES)
            if not raw:
                break
            frame = av.AudioFrame.from_ndarray(np.frombuffer(raw, "<i2").reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = pts
            pts += frame.samples
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


# -- the loop side ---------------------------------------------------------------------------------------------------


class TrackWriter:
    """One track of a call (a participant's source): frames in on the event loop, chunks out to the IO thread.

    Also a :class:`mediabot.media.pipeline.FrameSink` (``on_frame`` is ``write``).
    """

    __slots__ = (
        "_buf",
        "_fill",
        "_io",
        "_name",
        "_open",
        "_rec",
        "_written",
        "dropped_samples",
        "key",
        "late_samples",
    )

    def __init__(self, recorder: CallRecorder, key: str, name: str, start: int) -> None:
        self._rec = recorder
        self.key = key
        self._name = name
        self._io = _IOTrack(_WavFile(recorder.paths.track(name), recorder._report))
        self._buf = recorder._take_buffer()
        self._fill = 0
        self._written = start
        self._open = True
        self.late_samples = 0
        self.dropped_samples = 0

    @property
    def name(self) -> str:
        """The track's file name (without ``.wav``)."""
        return self._name

    @property
    def written(self) -> int:
        """Timeline position up to which the track is decided (held in its buffer or handed to the IO thread)."""
        return self._written

    @property
    def ended(self) -> bool:
        """Whether the track takes no more audio (ended, or the recorder closed)."""
        return not self._open

    def write(self, position: int, frame: Int16Array) -> None:
        """Place an int16 mono frame at ``position``: a gap before it is silence, what is already written is trimmed."""
        count = frame.shape[0]
        if not self._open:
            self.dropped_samples += count
            return
        if frame.dtype != np.int16 or frame.ndim != 1:
            raise TypeError("a track frame is a 1-D int16 array")
        rec = self._rec
        if not rec._live:
            rec._go_live()
        written = self._written
        if position < written:
            skip = written - position
            if skip >= count:
                self.late_samples += count
                return
            self.late_samples += skip
            frame = frame[skip:]
            count -= skip
        elif position > written:
            self._silence(position - written)
        buf = self._buf
        size = buf.size
        fill = self._fill
        offset = 0
        while offset < count:
            take = min(size - fill, count - offset)
            buf[fill : fill + take] = frame[offset : offset + take]
            fill += take
            offset += take
            if fill == size:
                self._fill = size
                self._hand_over()
                buf = self._buf
                fill = 0
        self._fill = fill
        self._written += count

    on_frame = write

    def rename(self, name: str) -> None:
        """Call the track's file ``audio/<name>.wav`` from now on (in order with the writes already queued)."""
        if name == self._name:
            return
        self._rec._claim_name(name, self.key)
        del self._rec._names[self._name]
        self._name = name
        if self._rec._live:
            self._rec._io.submit(self._rec._disk.rename, self._io, name)

    def end(self, position: int | None = None) -> None:
        """The participant left (at ``position``): later frames are dropped, ticks and close pad with silence."""
        if not self._open:
            return
        if position is not None and position > self._written:
            if not self._rec._live:
                self._rec._go_live()
            self._silence(position - self._written)
        self._flush()
        self._open = False

    def _silence(self, count: int) -> None:
        """Advance by ``count`` samples of silence: into the buffer when it fits, else one job without a buffer."""
        buf = self._buf
        fill = self._fill
        if fill:
            take = min(count, buf.size - fill)
            buf[fill : fill + take] = 0
            self._fill = fill + take
            self._written += take
            count -= take
            if self._fill == buf.size:
                self._hand_over()
        if not count:
            return
        if count < buf.size:
            self._buf[:count] = 0
            self._fill = count
        else:
            self._rec._io.submit(self._rec._disk.silence, self._io, count)
        self._written += count

    def _pad_to(self, position: int) -> None:
        if position > self._written:
            self._silence(position - self._written)

    def _flush(self) -> None:
        if self._fill:
            self._hand_over()

    def _hand_over(self) -> None:
        rec = self._rec
        rec._io.submit(rec._disk.write, self._io, self._buf, self._fill)
        self._buf = rec._take_buffer()
        self._fill = 0


class CallRecorder:
    """The recording of one call: a :class:`TrackWriter` per participant source, the mix, the call's JSONL logs.

    Loop-side methods (``open_track``, ``tick``, ``append_jsonl``, the writers') must be called from one thread, the
    event loop's. Nothing is created on disk before the first write, tick or JSONL line. ``on_error`` is called on
    the loop that created the recorder (or in the IO thread if there was none), once per failing file.
    """

    def __init__(
        self,
        paths: CallPaths,
        io: RecorderIO,
        *,
        chunk_s: float = 0.5,
        hold_s: float = 1.0,
        on_error: Callable[[str], None] | None = None,
        ogg: bool = False,
    ) -> None:
        chunk = round(chunk_s * SAMPLE_RATE)
        if chunk <= 0 or hold_s < 0:
            raise ValueError("chunk_s must be positive and hold_s not negative")
        self.paths = paths
        self.ogg = ogg
        self.errors: list[str] = []
        self.allocations = 0
        self._io = io
        self._chunk = chunk
        self._hold = round(hold_s * SAMPLE_RATE)
        self._flush_after = round(FLUSH_AFTER_S * SAMPLE_RATE)
        self._on_error = on_error
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._pool: deque[Int16Array] = deque()
        self._disk = _Disk(paths, chunk, self._pool, self._report)
        self._tracks: dict[str, TrackWriter] = {}
        self._names: dict[str, str] = {}
        self._floor = 0
        self._live = False
        self._closed = False
        self._closing: asyncio.Future[RecordingSummary] | None = None

    @property
    def tracks(self) -> dict[str, TrackWriter]:
        """The tracks by key (a copy)."""
        return dict(self._tracks)

    @property
    def pool_size(self) -> int:
        """Chunk buffers waiting in the pool for reuse."""
        return len(self._pool)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def open_track(self, key: str, name: str) -> TrackWriter:
        """A new track ``key`` written to ``audio/<name>.wav``; it starts as silence up to where the mix may be."""
        if self._closed:
            raise RecorderError(f"the recording of {self.paths.call_id} is closed")
        if key in self._tracks:
            raise ValueError(f"the track {key!r} is already open")
        self._claim_name(name, key)
        # A new track can only hold audio from where the mix may already have been written: earlier is silence.
        # The mix stays ``hold`` behind the timeline, so a source whose first frames arrive late still fits.
        start = self._floor
        track = TrackWriter(self, key, name, start)
        self._tracks[key] = track
        if self._live:
            self._io.submit(self._disk.add_track, key, track._io, name, start)
        return track

    def tick(self, position: int) -> None:
        """The timeline is at ``position``: pad lagging tracks to ``position - hold``, flush old chunks, mix."""
        if self._closed:
            return
        if not self._live:
            self._go_live()
        target = position - self._hold
        oldest = position - self._flush_after
        if self._tracks and not any(track._open for track in self._tracks.values()):
            # Everyone left: the recording ends with the last audio, not wherever a tick happens to fall.
            target = min(target, max(track._written for track in self._tracks.values()))
        for track in self._tracks.values():
            track._pad_to(target)
            if track._fill and track._written - track._fill <= oldest:
                track._hand_over()
        lowest = min((track._written for track in self._tracks.values()), default=target)
        self._floor = max(self._floor, min(lowest, target))
        self._io.submit(self._disk.mix, self._floor)

    def append_jsonl(self, path: Path, record: Mapping[str, Any]) -> None:
        """Append ``record`` as one JSON line to a ``.jsonl`` file of the call (in the IO thread, in order)."""
        if path.parent != self.paths.dir or path.suffix != ".jsonl":
            raise ValueError(f"{path} is not a .jsonl file of the call folder {self.paths.dir}")
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        self._io.submit(self._disk.append_line, path, line)

    async def sync(self) -> None:
        """Wait until everything handed to the IO thread so far is on disk (buffered partial chunks stay buffered)."""
        await self._io.run(_noop)

    async def close(self, end: int | None = None) -> RecordingSummary:
        """Flush, pad every file to the same length (``end`` or the longest track), finish the files (and .ogg).

        Idempotent: later calls return the first call's summary. A recorder never written leaves nothing on disk.
        """
        if self._closing is None:
            self._closed = True
            for track in self._tracks.values():
                track._open = False
            self._closing = asyncio.ensure_future(self._finish(end))
        # Shielded: a caller cancelled while waiting must not leave the files half finished.
        return await asyncio.shield(self._closing)

    async def _finish(self, end: int | None) -> RecordingSummary:
        if not self._live:
            return self._summarize(0, None)
        final = max(self._floor, end or 0, *(track._written for track in self._tracks.values()))
        for track in self._tracks.values():
            track._pad_to(final)
            track._flush()
        closed = await self._io.run(self._disk.close, final, self.ogg)
        return self._summarize(final, closed)

    # -- internals ------------------------------------------------------------------------------------------------

    def _go_live(self) -> None:
        """First write, tick or close: create the folder and every file, in the IO thread."""
        self._live = True
        self._io.submit(self._disk.create)
        for key, track in self._tracks.items():
            self._io.submit(self._disk.add_track, key, track._io, track._name, 0)

    def _claim_name(self, name: str, key: str) -> None:
        safe_name(name, "track name")
        if name == MIXED_NAME:
            raise ValueError(f"{MIXED_NAME!r} is the mix's name, not a track's")
        if name in self._names:
            raise ValueError(f"the track name {name!r} is taken by {self._names[name]!r}")
        self._names[name] = key

    def _take_buffer(self) -> Int16Array:
        try:
            return self._pool.pop()
        except IndexError:
            self.allocations += 1
            return np.zeros(self._chunk, np.int16)

    def _report(self, message: str) -> None:
        """A disk error (IO thread): keep it, log it once, tell ``on_error`` on the loop."""
        self.errors.append(message)
        logger.error("recording %s: %s", self.paths.call_id, message)
        callback = self._on_error
        if callback is None:
            return
        loop = self._loop
        if loop is None:
            callback(message)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, message)

    def _summarize(self, final: int, closed: _Closed | None) -> RecordingSummary:
        tracks: dict[str, RecordedFile] = {}
        for key, track in self._tracks.items():
            path, samples, error, ogg = (
                closed.tracks[key] if closed is not None else (self.paths.track(track._name), 0, None, None)
            )
            tracks[key] = RecordedFile(
                path, samples, samples / SAMPLE_RATE, track.late_samples, track.dropped_samples, error, ogg
            )
        mixed = None
        if closed is not None and closed.mixed is not None:
            path, samples, error, ogg = closed.mixed
            mixed = RecordedFile(path, samples, samples / SAMPLE_RATE, error=error, ogg=ogg)
        return RecordingSummary(
            call_id=self.paths.call_id,
            directory=self.paths.dir,
            samples=final,
            seconds=final / SAMPLE_RATE,
            tracks=tracks,
            mixed=mixed,
            errors=tuple(self.errors),
        )
