"""In-band DTMF: a detector of the 16 keypad digits in 20 ms frames of a stream, and a generator of the tones.

A frame is a digit frame when (all in mean-square power; see :class:`mediabot.audio.kernels.GoertzelBank`):

1. its level is at least :data:`MIN_LEVEL_DBFS` (below that the Goertzel bank is not even run);
2. the strongest row frequency and the strongest column frequency each exceed every other frequency of their group
   by :data:`GROUP_MARGIN_DB`;
3. those two carry at least :data:`MIN_TONE_SHARE` of the frame's power (speech and noise spread theirs);
4. the twist is within limits: the column tone at most :data:`MAX_NORMAL_TWIST_DB` weaker than the row tone, or at
   most :data:`MAX_REVERSE_TWIST_DB` stronger.

A digit is reported once it ends, with its start and end on the call timeline: it needs :data:`MIN_TONE_FRAMES`
digit frames (40 ms); it ends after :data:`END_SILENCE_FRAMES` frames without it (40 ms; a single missing frame is
bridged), when another digit starts, at a gap in the stream's positions, or at :meth:`DtmfDetector.flush`. So the same
digit pressed twice needs 40 ms of something else between the presses. Start and end are frame-accurate (20 ms).
Frames are not aligned with key presses, so a tone of 50 ms or more is caught whatever its alignment, a 40 ms one
only when it covers two frames, and a 20 ms one never.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mediabot.audio import FRAME_MS, SAMPLE_RATE
from mediabot.audio.kernels import GoertzelBank, goertzel_power, level_dbfs

__all__ = [
    "COLUMN_FREQUENCIES",
    "DIGITS",
    "ROW_FREQUENCIES",
    "DtmfDetector",
    "DtmfTone",
    "dtmf_frequencies",
    "dtmf_tone",
]

Int16Array = npt.NDArray[np.int16]

ROW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
COLUMN_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
DIGITS = "0123456789*#ABCD"
"""Every digit the detector reports and :func:`dtmf_tone` makes."""

MIN_LEVEL_DBFS = -30.0
GROUP_MARGIN_DB = 6.0
MIN_TONE_SHARE = 0.6
MAX_NORMAL_TWIST_DB = 8.0
MAX_REVERSE_TWIST_DB = 4.0
MIN_TONE_FRAMES = 2
END_SILENCE_FRAMES = 2

_MARGIN = 10.0 ** (GROUP_MARGIN_DB / 10.0)
_NORMAL_TWIST = 10.0 ** (MAX_NORMAL_TWIST_DB / 10.0)
_REVERSE_TWIST = 10.0 ** (MAX_REVERSE_TWIST_DB / 10.0)


def dtmf_frequencies(digit: str) -> tuple[float, float]:
    """The (row, column) frequencies in Hz of a keypad digit (``0-9``, ``*``, ``#``, ``A-D``)."""
    for row, keys in enumerate(_KEYPAD):
        column = keys.find(digit.upper()) if len(digit) == 1 else -1
        if column >= 0:
            return ROW_FREQUENCIES[row], COLUMN_FREQUENCIES[column]
    raise ValueError(f"{digit!r} is not a DTMF digit (one of {DIGITS})")


def dtmf_tone(
    digit: str, duration_s: float, sample_rate: int = SAMPLE_RATE, amplitude_dbfs: float = -8.0
) -> Int16Array:
    """The tone of ``digit``: two sines, each of peak ``amplitude_dbfs`` (re full scale); their sum stays in range."""
    row, column = dtmf_frequencies(digit)
    if not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    if sample_rate <= 2 * COLUMN_FREQUENCIES[-1]:
        raise ValueError(f"sample_rate {sample_rate} Hz cannot carry {COLUMN_FREQUENCIES[-1]} Hz")
    amplitude = 32767.0 * 10.0 ** (amplitude_dbfs / 20.0)
    if 2 * amplitude > 32767.0:
        raise ValueError(f"amplitude_dbfs {amplitude_dbfs} clips: two sines need at most {20 * math.log10(0.5):.2f}")
    t = np.arange(round(duration_s * sample_rate), dtype=np.float64) * (2.0 * np.pi / sample_rate)
    signal: npt.NDArray[np.float64] = amplitude * (np.sin(row * t) + np.sin(column * t))
    return np.rint(signal).astype(np.int16)


@dataclass(frozen=True)
class DtmfTone:
    """One detected digit: timeline samples ``[start, end)`` at ``sample_rate``."""

    digit: str
    start: int
    end: int
    sample_rate: int = SAMPLE_RATE

    @property
    def start_s(self) -> float:
        """Start in seconds."""
        return self.start / self.sample_rate

    @property
    def end_s(self) -> float:
        """End (exclusive) in seconds."""
        return self.end / self.sample_rate

    @property
    def duration_ms(self) -> float:
        """Length in milliseconds."""
        return (self.end - self.start) * 1000.0 / self.sample_rate


class DtmfDetector:
    """Detects DTMF digits in one stream's 20 ms frames (the rules are in the module docstring)."""

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * FRAME_MS // 1000
        self._bank = GoertzelBank(ROW_FREQUENCIES + COLUMN_FREQUENCIES, sample_rate, self.frame_samples)
        self._power = np.zeros(len(self._bank.frequencies), np.float64)
        self._next: int | None = None
        self._digit: str | None = None  # the digit being heard (or just missed)
        self._start = 0
        self._end = 0  # end of its last digit frame
        self._frames = 0  # its digit frames
        self._misses = 0  # frames without it since its last digit frame

    def process(self, position: int, frame: Int16Array) -> DtmfTone | None:
        """Feed one frame whose first sample is at ``position``; returns the digit that ended, if any."""
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"a DTMF frame is {self.frame_samples} samples, got {frame.shape}")
        ended = None
        if self._next is not None and position != self._next:
            if position < self._next:
                raise ValueError(f"frame at {position} overlaps the previous one (expected {self._next} or later)")
            ended = self._finish()
        self._next = position + self.frame_samples
        digit = self._classify(frame)
        if digit is None:
            if self._digit is not None:
                self._misses += 1
                if self._misses >= END_SILENCE_FRAMES:
                    return self._finish()
            return ended
        if digit != self._digit:
            ended = self._finish() or ended  # a gap already finished the old digit, or this change does
            self._digit = digit
            self._start = position
            self._frames = 0
        self._frames += 1
        self._misses = 0
        self._end = position + self.frame_samples
        return ended

    def flush(self) -> DtmfTone | None:
        """End of stream: the digit still sounding, if it lasted long enough."""
        self._next = None
        return self._finish()

    def _finish(self) -> DtmfTone | None:
        tone = None
        if self._digit is not None and self._frames >= MIN_TONE_FRAMES:
            tone = DtmfTone(self._digit, self._start, self._end, self.sample_rate)
        self._digit = None
        self._frames = 0
        self._misses = 0
        return tone

    def _classify(self, frame: Int16Array) -> str | None:
        """The digit this frame carries, or None."""
        level = level_dbfs(frame)
        if level < MIN_LEVEL_DBFS:
            return None
        power = goertzel_power(frame, self._bank, out=self._power)
        rows = power[:4]
        columns = power[4:]
        row = int(np.argmax(rows))
        column = int(np.argmax(columns))
        row_power = float(rows[row])
        column_power = float(columns[column])
        # Every other bin of the group at least GROUP_MARGIN_DB below the peak: the second largest decides.
        if np.partition(rows, 2)[2] * _MARGIN > row_power or np.partition(columns, 2)[2] * _MARGIN > column_power:
            return None
        if row_power + column_power < MIN_TONE_SHARE * 10.0 ** (level / 10.0):
            return None
        if column_power * _NORMAL_TWIST < row_power or column_power > row_power * _REVERSE_TWIST:
            return None
        return _KEYPAD[row][column]
