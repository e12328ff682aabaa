"""The numpy twin of the audio kernels: plain synchronous functions over int16/float arrays, vectorised, no asyncio.

:mod:`mediabot.audio.kernels` picks this module or the native one once at import; both expose the same names and
agree on every result documented here (rounding included), so callers never see which one runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "FULL_SCALE",
    "LEVEL_FLOOR_DBFS",
    "Decimator",
    "GoertzelBank",
    "downmix",
    "goertzel_power",
    "level_dbfs",
    "mix_saturating",
    "to_float",
    "to_int16",
]

Int16Array = npt.NDArray[np.int16]
Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]

FULL_SCALE = 32768.0
"""int16 full scale: float samples are ``int16 / FULL_SCALE``, so -32768 ↔ -1.0 and 32767 ↔ 1 - 2**-15."""

LEVEL_FLOOR_DBFS = -120.0
"""What :func:`level_dbfs` returns for silence (and empty frames): a finite floor below any 20 ms int16 signal."""

_INT16_MIN = -32768
_INT16_MAX = 32767


def _check_int16(name: str, array: npt.NDArray[np.generic]) -> None:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a 1-D int16 array, got {type(array).__name__}")
    if array.dtype != np.int16 or array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D int16 array, got {array.ndim}-D {array.dtype}")


def _check_out(out: npt.NDArray[np.generic], length: int, dtype: type[np.generic]) -> None:
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a 1-D {np.dtype(dtype)} array of {length} samples, got {type(out).__name__}")
    if out.dtype != dtype or out.ndim != 1 or out.shape[0] != length:
        raise ValueError(f"out must be a 1-D {np.dtype(dtype)} array of {length} samples, got {out.shape} {out.dtype}")


def downmix(interleaved: Int16Array, channels: int, out: Int16Array | None = None) -> Int16Array:
    """Interleaved int16 → mono, each frame ``floor((sum + channels // 2) / channels)`` (ties up), into ``out``."""
    _check_int16("interleaved", interleaved)
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if interleaved.shape[0] % channels:
        raise ValueError(f"{interleaved.shape[0]} samples is not a whole number of {channels}-channel frames")
    length = interleaved.shape[0] // channels
    if out is None:
        out = np.empty(length, np.int16)
    else:
        _check_out(out, length, np.int16)
    if channels == 1:
        out[...] = interleaved
        return out
    # Sums fit int32 for any realistic channel count; the result is within int16 by construction (a mean).
    total = interleaved.reshape(length, channels).sum(axis=1, dtype=np.int32)
    total += channels // 2
    np.floor_divide(total, channels, out=total)
    out[...] = total
    return out


def mix_saturating(tracks: Sequence[Int16Array], out: Int16Array) -> Int16Array:
    """Sum equal-length int16 tracks into ``out`` (int32 accumulator, clipped to int16); no tracks gives silence."""
    _check_int16("out", out)
    length = out.shape[0]
    for track in tracks:
        _check_int16("track", track)
        if track.shape[0] != length:
            raise ValueError(f"every track must have {length} samples like out, got {track.shape[0]}")
    if not tracks:
        out.fill(0)
        return out
    if len(tracks) == 1:
        out[...] = tracks[0]
        return out
    total = np.add(tracks[0], tracks[1], dtype=np.int32)
    for track in tracks[2:]:
        total += track
    np.clip(total, _INT16_MIN, _INT16_MAX, out=total)
    out[...] = total
    return out


def level_dbfs(frame: Int16Array) -> float:
    """RMS level in dBFS relative to :data:`FULL_SCALE` (full-scale sine ≈ -3.01); :data:`LEVEL_FLOOR_DBFS` at least."""
    _check_int16("frame", frame)
    if frame.shape[0] == 0:
        return LEVEL_FLOOR_DBFS
    samples = frame.astype(np.float64)
    mean_square = float(np.dot(samples, samples)) / (frame.shape[0] * FULL_SCALE * FULL_SCALE)
    if mean_square <= 0.0:
        return LEVEL_FLOOR_DBFS
    return max(10.0 * math.log10(mean_square), LEVEL_FLOOR_DBFS)


class GoertzelBank:
    """A bank of single-frequency DFT detectors over ``block``-sample frames, precomputed as one matrix.

    ``goertzel_power`` gives the same powers as running the Goertzel recurrence per frequency, as a single
    matrix-vector product. Each power is the mean square (full scale = 1.0) of the component at that frequency:
    a sine of peak amplitude ``a`` (full scale 1.0) at a bank frequency gives ``a**2 / 2`` (0.5 for a full-scale
    sine, the same units as ``10 ** (level_dbfs / 10)``), within the rectangular window's leakage.
    """

    def __init__(self, frequencies: Sequence[float], sample_rate: int, block: int) -> None:
        if not frequencies:
            raise ValueError("a Goertzel bank needs at least one frequency")
        if sample_rate <= 0 or block <= 0:
            raise ValueError(f"sample_rate and block must be positive, got {sample_rate} and {block}")
        nyquist = sample_rate / 2
        for frequency in frequencies:
            if not 0 < frequency < nyquist:
                raise ValueError(f"frequency {frequency} Hz is outside (0, {nyquist}) Hz")
        self.frequencies: tuple[float, ...] = tuple(float(f) for f in frequencies)
        self.sample_rate = sample_rate
        self.block = block
        omega = 2.0 * np.pi * np.asarray(self.frequencies, np.float64) / sample_rate
        phase = np.outer(omega, np.arange(block, dtype=np.float64))
        # |C + iS| of a sine of peak a over `block` samples is a * block / 2; this scale makes C**2 + S**2 = a**2 / 2.
        scale = math.sqrt(2.0) / (block * FULL_SCALE)
        matrix = np.concatenate([np.cos(phase), np.sin(phase)]) * scale
        matrix.setflags(write=False)
        self.matrix: Float64Array = matrix
        """Rows ``0..F-1`` are the scaled cosines, rows ``F..2F-1`` the scaled sines (read-only)."""


def goertzel_power(frame: Int16Array, bank: GoertzelBank, out: Float64Array | None = None) -> Float64Array:
    """Power of ``frame`` at each of ``bank``'s frequencies (mean-square units, full-scale sine → 0.5)."""
    _check_int16("frame", frame)
    if frame.shape[0] != bank.block:
        raise ValueError(f"the bank works on {bank.block}-sample frames, got {frame.shape[0]}")
    count = len(bank.frequencies)
    if out is None:
        out = np.empty(count, np.float64)
    else:
        _check_out(out, count, np.float64)
    projection = bank.matrix @ frame.astype(np.float64)
    np.square(projection, out=projection)
    np.add(projection[:count], projection[count:], out=out)
    return out


def to_float(frame: Int16Array, out: Float32Array | None = None) -> Float32Array:
    """int16 → float32 in [-1, 1): ``sample / 32768`` (exact), into ``out`` if given."""
    _check_int16("frame", frame)
    if out is None:
        out = np.empty(frame.shape[0], np.float32)
    else:
        _check_out(out, frame.shape[0], np.float32)
    np.multiply(frame, np.float32(1.0 / FULL_SCALE), out=out)
    return out


def to_int16(samples: Float32Array, out: Int16Array | None = None) -> Int16Array:
    """float32 → int16: ``round(sample * 32768)`` (half to even), saturated to int16 (NaN → 0); into ``out``."""
    if not isinstance(samples, np.ndarray):
        raise ValueError(f"samples must be a 1-D float32 array, got {type(samples).__name__}")
    if samples.dtype != np.float32 or samples.ndim != 1:
        raise ValueError(f"samples must be a 1-D float32 array, got {samples.ndim}-D {samples.dtype}")
    if out is None:
        out = np.empty(samples.shape[0], np.int16)
    else:
        _check_out(out, samples.shape[0], np.int16)
    scaled = np.multiply(samples, np.float32(FULL_SCALE))
    np.rint(scaled, out=scaled)
    np.nan_to_num(scaled, copy=False, nan=0.0)
    np.clip(scaled, _INT16_MIN, _INT16_MAX, out=scaled)
    out[...] = scaled
    return out


# -- the 48 kHz → 16 kHz decimator -------------------------------------------------------------------------------------

DECIMATOR_TAP_COUNT = 229
"""Taps of the decimator's FIR: ``6 * delay + 1``, so its group delay is a whole number of 16 kHz samples."""

_DECIMATOR_CUTOFF_HZ = 7450.0
_DECIMATOR_KAISER_BETA = 8.2
_DECIMATOR_INPUT_RATE = 48_000
_TAP_GRID = 2.0**-30


def _bessel_i0(x: float) -> float:
    term = total = 1.0
    k = 0
    while term > 1e-17 * total:
        k += 1
        term *= (x / (2 * k)) ** 2
        total += term
    return total


def decimator_taps() -> Float32Array:
    """The decimator's FIR taps, designed here once for both implementations (the C header is generated from this).

    A Kaiser-windowed sinc (``DECIMATOR_TAP_COUNT`` taps, cutoff 7450 Hz at 48 kHz, β = 8.2), normalised to unit DC
    gain: 0-7 kHz ripple 0.042 dB peak to peak, ≥ 82.5 dB attenuation from 8 kHz up (everything that would alias at
    16 kHz). Symmetric (linear phase). Pure ``math`` (no numpy SIMD transcendental), so the same numbers everywhere.

    Each tap is a float32 that is also a multiple of 2**-30, and the taps' absolute sum is 2.22. With int16 input (or
    the half-integer stereo mean) every product and partial sum of the filter is then a multiple of 2**-31 below
    2**17 (fewer than 53 bits), exact in float64: the filter output before rounding is exact in any summation order.
    """
    count = DECIMATOR_TAP_COUNT
    centre = (count - 1) / 2
    cutoff = 2.0 * _DECIMATOR_CUTOFF_HZ / _DECIMATOR_INPUT_RATE  # as a fraction of the input Nyquist frequency
    window_norm = _bessel_i0(_DECIMATOR_KAISER_BETA)
    taps = []
    for n in range(count):
        m = abs(n - centre)  # symmetric by construction: taps n and count-1-n see the same m
        ideal = cutoff if m == 0 else math.sin(math.pi * cutoff * m) / (math.pi * m)
        window = _bessel_i0(_DECIMATOR_KAISER_BETA * math.sqrt(1.0 - (m / centre) ** 2)) / window_norm
        taps.append(ideal * window)
    total = math.fsum(taps)
    gridded = np.round(np.array(taps, np.float64) / total / _TAP_GRID) * _TAP_GRID
    # float32 rounds the large taps to 24 bits, which keeps them on the grid (their ulp is a multiple of 2**-30).
    return gridded.astype(np.float32)


class Decimator:
    """48 kHz interleaved int16 (1 or 2 channels) → 16 kHz mono int16: a linear-phase FIR decimate-by-3, streaming.

    Output sample ``k`` is the filter at input sample ``3k`` (before the first call the history is zero):
    ``y[k] = round_half_even(sum_j taps[j] * x[3k - j])`` saturated to int16, where ``x`` is the input, or for stereo
    the exact mean ``(L + R) / 2`` (the downmix happens inside the filter: no rounded mono intermediate). The output
    lags the input by :attr:`delay` 16 kHz samples (the FIR's group delay). Filter history and the decimation phase
    carry across calls, so any split of the input into chunks (any lengths, not only multiples of 3) gives the same
    output as one call. Only the kept outputs are computed (polyphase).

    This twin computes the sums exactly (see :func:`decimator_taps`), so its output is the exactly rounded filter
    value; the native one accumulates in float32 and is within 1 LSB of it.
    """

    delay: int = (DECIMATOR_TAP_COUNT - 1) // 6
    """Group delay in 16 kHz output samples: output ``k + delay`` is aligned with input sample ``3k``."""

    def __init__(self, channels: int) -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}")
        self.channels = channels
        self._tail = np.zeros(DECIMATOR_TAP_COUNT - 1, np.float64)

    @staticmethod
    def max_output(frames: int) -> int:
        """The most output samples :meth:`process` can return for ``frames`` input samples per channel."""
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        return (frames + 2) // 3

    def process(self, samples: Int16Array, out: Int16Array | None = None) -> Int16Array:
        """Filter the next interleaved samples and return the new output samples (any count of whole frames).

        With ``out`` (at least :meth:`max_output` samples) the result is ``out[:count]`` (``out`` itself when it has
        exactly ``count`` samples), else a new array.
        """
        _check_int16("samples", samples)
        channels = self.channels
        if samples.shape[0] % channels:
            raise ValueError(f"{samples.shape[0]} samples is not a whole number of {channels}-channel frames")
        frames = samples.shape[0] // channels
        if out is not None:
            _check_int16("out", out)
            if out.shape[0] < self.max_output(frames):
                raise ValueError(
                    f"out must hold at least {self.max_output(frames)} samples for {frames} frames, got {out.shape[0]}"
                )
        if channels == 1:
            new = samples.astype(np.float64)
        else:
            new = np.add(samples[0::2], samples[1::2], dtype=np.float64)
            new *= 0.5
        # x holds the input from the next output's window start (3k - taps + 1) to the newest sample.
        x = np.concatenate((self._tail, new))
        count = (x.shape[0] - DECIMATOR_TAP_COUNT) // 3 + 1 if x.shape[0] >= DECIMATOR_TAP_COUNT else 0
        if out is None:
            out = np.empty(count, np.int16)
        result = out if out.shape[0] == count else out[:count]
        if count:
            filtered = np.zeros(count, np.float64)
            for taps, offset in _DECIMATOR_PHASES:
                # Exact in any summation order: products and partial sums are small multiples of 2**-31.
                filtered += np.convolve(x[offset::3], taps, "valid")[:count]
            np.rint(filtered, out=filtered)
            np.clip(filtered, _INT16_MIN, _INT16_MAX, out=filtered)
            result[...] = filtered
        self._tail = x[3 * count :].copy()
        return result

    def flush(self, out: Int16Array | None = None) -> Int16Array:
        """End of stream: push ``3 * delay`` zero frames through, return the last ``delay`` outputs, then reset."""
        tail = self.process(np.zeros(3 * self.delay * self.channels, np.int16), out)
        self.reset()
        return tail

    def reset(self) -> None:
        """Forget the history and the phase: the next sample is input sample 0 again."""
        self._tail = np.zeros(DECIMATOR_TAP_COUNT - 1, np.float64)


def _polyphase(taps: Float32Array) -> tuple[tuple[Float64Array, int], ...]:
    # Phase p holds taps p, p+3, …; convolving x[offset::3] with them gives that phase's share of every kept output.
    count = taps.shape[0]
    phases = []
    for phase in range(3):
        sub = taps[phase::3].astype(np.float64)
        phases.append((sub, count - 1 - phase - 3 * (sub.shape[0] - 1)))
    return tuple(phases)


_DECIMATOR_PHASES = _polyphase(decimator_taps())
