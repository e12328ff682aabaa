"""Voice activity: VAD backends that score 20 ms frames, and the one state machine that turns scores into segments.

A backend (:class:`VoiceActivityDetector`) only answers "how likely is this frame speech" (0..1). The
:class:`SpeechSegmenter` owns everything else, the same whichever backend scores: the threshold, how much speech
opens a segment and how much silence closes it, the padding kept around it, the longest segment, and the audio.

Backends: :class:`WebRtcVad` (webrtcvad, a GMM per 20 ms frame; always installed) and :class:`SileroVad` (the Silero
ONNX model on onnxruntime; the optional ``silero`` extra).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
import webrtcvad

from mediabot._errors import MediaError
from mediabot.audio import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from mediabot.audio.kernels import to_float

__all__ = [
    "SegmenterParams",
    "SileroVad",
    "SpeechSegment",
    "SpeechSegmenter",
    "VadUnavailableError",
    "VoiceActivityDetector",
    "WebRtcVad",
    "create_vad",
]

logger = logging.getLogger(__name__)

Int16Array = npt.NDArray[np.int16]

SILERO_INSTALL_HINT = "pip install 'mediabot[silero]' && pip install --no-deps silero-vad"


class VadUnavailableError(MediaError, ImportError):
    """A VAD backend's optional dependency (onnxruntime, the Silero model) is not installed."""


def _check_frame(frame: npt.NDArray[Any]) -> None:
    if frame.dtype != np.int16 or frame.ndim != 1 or frame.shape[0] != FRAME_SAMPLES:
        raise ValueError(f"a VAD frame is {FRAME_SAMPLES} int16 samples (1-D), got {frame.shape} {frame.dtype}")


class VoiceActivityDetector(Protocol):
    """A VAD backend: the speech confidence of one 20 ms frame (:data:`FRAME_SAMPLES` int16 samples at 16 kHz)."""

    name: str

    def speech_confidence(self, frame: Int16Array) -> float:
        """How likely ``frame`` is speech, 0..1; frames come in stream order (backends may keep state)."""
        ...


class WebRtcVad:
    """The WebRTC VAD (webrtcvad-wheels): a hard 1.0/0.0 per frame; ``aggressiveness`` 0 (lenient) to 3 (strict).

    The first :attr:`WARMUP_FRAMES` frames of a stream score 0.0: webrtcvad starts from fixed noise estimates and
    calls the first 80-140 ms of any steady background (white, pink or brown noise, hum) speech while it adapts.
    Speech that starts a stream is not lost: the segmenter's pre-roll reaches back over the warm-up. Like webrtcvad
    itself, this backend keeps saying speech for a few frames after speech ends (its "overhang", up to 100 ms at
    aggressiveness 2).
    """

    name = "webrtc"

    WARMUP_FRAMES = 10

    def __init__(self, aggressiveness: int = 2) -> None:
        if not isinstance(aggressiveness, int) or isinstance(aggressiveness, bool) or not 0 <= aggressiveness <= 3:
            raise ValueError(f"webrtc VAD aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        self.aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)
        self._frames = 0

    def speech_confidence(self, frame: Int16Array) -> float:
        """1.0 if webrtcvad calls the frame speech (and the warm-up is over), else 0.0."""
        _check_frame(frame)
        # webrtcvad reads any buffer (counting its length in bytes): a byte view of the frame, no copy unless strided.
        data = np.ascontiguousarray(frame).data.cast("B")
        speech = self._vad.is_speech(data, SAMPLE_RATE)
        if self._frames < self.WARMUP_FRAMES:
            self._frames += 1
            return 0.0
        return 1.0 if speech else 0.0


def _silero_model_path() -> Path:
    # importlib.resources would import silero_vad (its __init__ imports torch); find_spec only locates the package.
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VadUnavailableError(f"the silero VAD needs the silero-vad model package: {SILERO_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "silero_vad.onnx"
        if path.is_file():
            return path
    raise VadUnavailableError(f"silero_vad/data/silero_vad.onnx is missing: {SILERO_INSTALL_HINT}")


class SileroVad:
    """Silero VAD (v5+ ONNX model) on onnxruntime: buffers 20 ms frames into its 512-sample (32 ms) windows.

    Each window is fed with the previous window's last 64 samples prepended (the context the v5 model expects), and
    the recurrent state is carried from window to window. :meth:`speech_confidence` returns the probability of the
    latest complete window (0.0 before the first). One single-threaded onnxruntime session per instance.
    """

    name = "silero"

    WINDOW = 512
    CONTEXT = 64

    def __init__(self, model_path: str | Path | None = None) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise VadUnavailableError(f"the silero VAD needs onnxruntime: {SILERO_INSTALL_HINT}") from exc
        path = Path(model_path) if model_path is not None else _silero_model_path()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for missing or corrupt models
            raise VadUnavailableError(f"cannot load the silero model {path}: {exc}; {SILERO_INSTALL_HINT}") from exc
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        if set(inputs) != {"input", "state", "sr"}:
            raise MediaError(f"{path} is not a Silero v5+ VAD model (inputs {sorted(inputs)})")
        self._state = np.zeros((2, 1, 128), np.float32)
        self._sr = np.array(SAMPLE_RATE, np.int64)
        self._input = np.zeros((1, self.CONTEXT + self.WINDOW), np.float32)
        self._filled = self.CONTEXT
        self._probability = 0.0

    def speech_confidence(self, frame: Int16Array) -> float:
        """The speech probability of the latest complete 512-sample window, after adding ``frame``."""
        _check_frame(frame)
        buffer = self._input[0]
        done = 0
        while done < FRAME_SAMPLES:  # at most two rounds: a 320-sample frame straddles at most one window end
            take = min(buffer.shape[0] - self._filled, FRAME_SAMPLES - done)
            to_float(frame[done : done + take], out=buffer[self._filled : self._filled + take])
            self._filled += take
            done += take
            if self._filled == buffer.shape[0]:
                self._run()
        return self._probability

    def reset(self) -> None:
        """Forget the stream: recurrent state, context and partial window."""
        self._state.fill(0.0)
        self._input.fill(0.0)
        self._filled = self.CONTEXT
        self._probability = 0.0

    def _run(self) -> None:
        output, state = self._session.run(None, {"input": self._input, "state": self._state, "sr": self._sr})
        self._state = state
        self._probability = float(output.reshape(-1)[0])
        buffer = self._input[0]
        buffer[: self.CONTEXT] = buffer[-self.CONTEXT :]
        self._filled = self.CONTEXT


def create_vad(backend: Literal["webrtc", "silero"], aggressiveness: int = 2) -> VoiceActivityDetector:
    """A new VAD backend instance (one per stream: backends keep state); ``aggressiveness`` is webrtc's."""
    if backend == "webrtc":
        return WebRtcVad(aggressiveness)
    if backend == "silero":
        return SileroVad()
    raise ValueError(f"unknown VAD backend {backend!r} (webrtc or silero)")


@dataclass
class SegmenterParams:
    """How confidences become segments (durations in ms unless named ``_s``).

    - ``threshold``: a frame whose confidence is at least this is speech.
    - ``start_ms``: consecutive speech this long opens a segment.
    - ``stop_ms``: silence this long closes it.
    - ``pad_ms``: pre-roll kept before the first speech frame, and silence kept after the last (at most ``stop_ms``).
    - ``max_segment_s``: a segment reaching this length is cut; if speech goes on, the next starts at the cut (if it
      is reached in a pause, the segment ends there, trailing silence trimmed to ``pad_ms``).
    """

    threshold: float = 0.5
    start_ms: int = 60
    stop_ms: int = 600
    pad_ms: int = 300
    max_segment_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.start_ms < 0:
            raise ValueError(f"start_ms must be >= 0, got {self.start_ms}")
        if self.stop_ms <= 0:
            raise ValueError(f"stop_ms must be > 0, got {self.stop_ms}")
        if not 0 <= self.pad_ms <= self.stop_ms:
            raise ValueError(f"pad_ms must be in [0, stop_ms={self.stop_ms}], got {self.pad_ms}")
        shortest = self.pad_ms + self.start_ms + 2 * FRAME_MS
        if not (math.isfinite(self.max_segment_s) and self.max_segment_s * 1000 >= shortest):
            raise ValueError(f"max_segment_s must be at least pad + start + 2 frames ({shortest} ms)")


@dataclass(frozen=True, eq=False)
class SpeechSegment:
    """A closed speech segment: call-timeline samples ``[start, end)`` and its audio (a copy the consumer may keep).

    ``reason`` says what closed it: ``silence`` (``stop_ms`` of silence, trimmed to ``pad_ms``), ``max_length``
    (``max_segment_s`` reached: cut there while speech goes on, or in a pause ended like ``silence`` would) or
    ``flush`` (the stream ended). Compared by identity (it holds an array).
    """

    start: int
    end: int
    audio: Int16Array = field(repr=False)
    reason: Literal["silence", "max_length", "flush"]

    @property
    def start_s(self) -> float:
        """Start in call-timeline seconds."""
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        """End (exclusive) in call-timeline seconds."""
        return self.end / SAMPLE_RATE

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return (self.end - self.start) / SAMPLE_RATE


def _samples(ms: float) -> int:
    return round(ms * SAMPLE_RATE / 1000)


class SpeechSegmenter:
    """Turns one stream's frames into :class:`SpeechSegment` s with a VAD backend and :class:`SegmenterParams`.

    Frames come in timeline order; a jump in position is silence (the VAD is not asked about it). Audio is kept in
    one preallocated ring of ``pad + max_segment + 1 frame`` samples indexed by timeline position; the only
    allocation per segment is the copy it carries.
    """

    def __init__(self, vad: VoiceActivityDetector, params: SegmenterParams | None = None) -> None:
        self.vad = vad
        self.params = params if params is not None else SegmenterParams()
        self._start_samples = _samples(self.params.start_ms)
        self._stop_samples = _samples(self.params.stop_ms)
        self._pad_samples = _samples(self.params.pad_ms)
        self._max_samples = _samples(self.params.max_segment_s * 1000)
        self._ring = np.zeros(self._pad_samples + self._max_samples + FRAME_SAMPLES, np.int16)
        self._started = False
        self._next = 0  # timeline position of the next expected sample
        self._floor = 0  # no segment starts before this: the first sample seen, then the last segment's end
        self._speaking = False
        self._run_start = 0  # idle: where the current run of speech frames began
        self._speech_run = 0  # idle: samples in that run
        self._start = 0  # speaking: the open segment's start
        self._last_speech_end = 0  # speaking: end of the last speech frame
        self._silence_run = 0  # speaking: samples of silence since then
        self.onsets = 0  # speech starts so far (a segment cut at the maximum length and going on is not one)
        self.onset = 0  # the first speech frame of the latest start (its pre-roll pad excluded)

    @property
    def speaking(self) -> bool:
        """Whether a segment is open now."""
        return self._speaking

    def process(self, position: int, frame: Int16Array) -> SpeechSegment | None:
        """Feed one frame whose first sample is at ``position``; returns the segment this frame closed, if any."""
        _check_frame(frame)
        closed = None
        if not self._started:
            self._started = True
            self._next = self._floor = position
        elif position < self._next:
            raise ValueError(f"frame at {position} overlaps the previous one (expected {self._next} or later)")
        elif position > self._next:
            closed = self._silence(position - self._next)
        is_speech = self.vad.speech_confidence(frame) >= self.params.threshold
        self._write(frame)
        if self._speaking:
            if is_speech:
                self._silence_run = 0
                self._last_speech_end = self._next
            else:
                self._silence_run += FRAME_SAMPLES
            # Still speaking means the gap (if any) closed nothing: a segment closed by a gap leaves us idle.
            return self._check() or closed
        if is_speech:
            if self._speech_run == 0:
                self._run_start = position
            self._speech_run += FRAME_SAMPLES
            if self._speech_run >= self._start_samples:
                self.onsets += 1
                self.onset = self._run_start
                self._open(max(self._run_start - self._pad_samples, self._floor))
        else:
            self._speech_run = 0
        return closed

    def flush(self, position: int | None = None) -> SpeechSegment | None:
        """End of stream (at ``position`` if given, silence up to there): close the open segment, trailing pad kept."""
        if not self._started:
            return None
        closed = None
        if position is not None:
            if position < self._next:
                raise ValueError(f"flush position {position} is before the last frame's end {self._next}")
            if position > self._next:
                closed = self._silence(position - self._next)
        if self._speaking:
            end = min(self._last_speech_end + self._pad_samples, self._next, self._start + self._max_samples)
            closed = self._close(end, "flush")
        self._speech_run = 0
        return closed

    def _open(self, start: int) -> None:
        self._speaking = True
        self._start = start
        self._last_speech_end = self._next
        self._silence_run = 0

    def _check(self) -> SpeechSegment | None:
        """Close the open segment on enough silence, or cut it at the maximum length."""
        if self._silence_run >= self._stop_samples:
            end = min(self._last_speech_end + self._pad_samples, self._start + self._max_samples)
            return self._close(end, "silence")
        if self._next - self._start < self._max_samples:
            return None
        cut = self._start + self._max_samples
        if self._silence_run:
            # In a pause: end it as silence would (trailing silence trimmed to the pad); speech must start anew.
            return self._close(min(self._last_speech_end + self._pad_samples, cut), "max_length")
        segment = self._close(cut, "max_length")
        self._open(cut)  # speech goes on: the next segment starts at the cut
        return segment

    def _close(self, end: int, reason: Literal["silence", "max_length", "flush"]) -> SpeechSegment | None:
        # Empty only when a segment opened at a cut on a frame boundary hears no more speech and pad_ms is 0.
        segment = SpeechSegment(self._start, end, self._read(self._start, end), reason) if end > self._start else None
        self._speaking = False
        self._speech_run = 0
        self._floor = end
        return segment

    def _silence(self, length: int) -> SpeechSegment | None:
        """A gap of ``length`` samples: silence the VAD is not asked about."""
        closed = None
        position = self._next
        if self._speaking:
            # Advance only to where the segment would close or be cut, so its audio is still in the ring.
            due = min(self._last_speech_end + self._stop_samples, self._start + self._max_samples) - position
            first = min(length, max(due, 0))
            self._write_zeros(first)
            self._silence_run += first
            length -= first
            closed = self._check()
        self._write_zeros(length)
        if self._speaking:
            self._silence_run += length
        else:
            self._speech_run = 0
        return closed

    def _write(self, samples: Int16Array) -> None:
        position = self._next
        size = self._ring.shape[0]
        index = position % size
        head = min(samples.shape[0], size - index)
        self._ring[index : index + head] = samples[:head]
        self._ring[: samples.shape[0] - head] = samples[head:]
        self._next = position + samples.shape[0]

    def _write_zeros(self, length: int) -> None:
        position = self._next
        size = self._ring.shape[0]
        fill = min(length, size)  # older samples of a long gap would be overwritten anyway
        index = (position + length - fill) % size
        head = min(fill, size - index)
        self._ring[index : index + head] = 0
        self._ring[: fill - head] = 0
        self._next = position + length

    def _read(self, start: int, end: int) -> Int16Array:
        size = self._ring.shape[0]
        index = start % size
        head = min(end - start, size - index)
        audio = np.empty(end - start, np.int16)
        audio[:head] = self._ring[index : index + head]
        audio[head:] = self._ring[: end - start - head]
        return audio
