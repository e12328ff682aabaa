"""``StreamPipeline``: one participant source's decoded audio → 16 kHz mono frames placed on the call timeline.

A source's frames arrive decoded (Opus: 48 kHz stereo; PCMU: 8 kHz mono) with their RTP timestamps. The pipeline

1. anchors the source on the call timeline by the earliest ``arrival - media time`` (the least-delayed frame; the
   jitter buffer releases its first frames in a burst and network jitter delays some), so a late join starts at the
   right place (leading silence). It anchors provisionally after its first 100 ms, so that speech at the start of
   a stream is not held back, and keeps refining over the stream's first second: a provisional anchor on a
   jittery stream is late (measured: 6-20 ms behind a clean one with 40 ms of jitter over 10 frames, 1-2 ms over
   50), and when a less-delayed frame shows by how much, that many samples of the upcoming output are dropped, once,
   so the rest of the stream sits exactly where it belongs (``stats.realigned_samples``). One wild timestamp cannot
   drag the anchor: the provisional one is the least-delayed of the first frames that agree with their median
   (within :data:`ANCHOR_SPREAD_S`), and a refinement needs two frames that show the lesser delay;
2. from then on places every frame by its RTP timestamp alone (unwrapped, integer arithmetic): loss and gaps become
   silence, and the position never drifts from the sender's clock, however long the call. A frame whose timestamp
   is more than :data:`MAX_SKEW_S` from where its arrival says it belongs (either way) is a discontinuity: the sender
   restarted its clock, or one packet carries a wild timestamp. The stream is re-anchored at that frame's arrival,
   as a jitter buffer does on a timestamp jump, instead of being padded with silence up to the timestamp (one packet
   could otherwise stretch the call by up to 2^31 samples) or dropping everything behind it as late
   (``stats.discontinuities``). A sender that really pauses sends later timestamps and arrives later: no skew. A jump
   within the bound is placed by its timestamp as before: it costs at most that much audio, and stretches nothing;
3. resamples once to 16 kHz mono: 48 kHz (Opus) through the audio kernels' :class:`~mediabot.audio.kernels.Decimator`
   (a polyphase FIR that downmixes as it filters, ≥ 80 dB alias rejection, native when built), any other rate
   through a downmix and soxr's streaming resampler; filter state is kept across frames and the filter's delay is
   compensated, silence is fed through the filter for short gaps and the filter is restarted after long ones;
4. cuts the output into 20 ms frames and hands each, with its timeline position, to its sinks. The decimator's
   output is placed by its delay instead of trimmed, so a source's frames start 38 samples (2.4 ms) before its packets
   do and each frame is complete when the packet carrying most of it arrives, not 20 ms later when the filter has
   seen the next one; the timeline starts :data:`TIMELINE_LEAD` before the first media so that fits.

The hot path (:meth:`StreamPipeline.push`) reuses preallocated buffers; sinks get a view they must copy to keep.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import soxr

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.audio.kernels import Decimator, downmix

__all__ = ["FrameSink", "PipelineStats", "StreamPipeline", "TimelineClock"]

logger = logging.getLogger(__name__)

Int16Array = npt.NDArray[np.int16]

SETTLE_FRAMES = 5  # the provisional anchor: 100 ms
REFINE_FRAMES = 50  # the anchor is refined over the stream's first second
MIN_REALIGN_SAMPLES = SAMPLE_RATE // 500  # 2 ms: finer corrections are not worth a discontinuity
MAX_FILLED_GAP_S = 1.0
# How far a frame's timestamp may place it from where its arrival says (network delay, clock drift: 0.36 s an hour
# at 100 ppm, a loaded host's stalls: seconds) before it is a discontinuity. Stalls longer than this are re-anchored
# too, which drops what overlaps; a sender's own jump within it costs at most that much of its own audio.
MAX_SKEW_S = 10.0
ANCHOR_SPREAD_S = 0.25  # the provisional anchor's frames that agree (a jitter buffer's burst: 80 ms)
DECIMATED_RATE = 48_000  # the rate the Decimator takes (Opus); others go through soxr
_U32 = 1 << 32


class _Resampler:
    """Interleaved int16 at one rate → 16 kHz mono, streaming; output sample ``k`` is input time ``k - delay``.

    The pipeline places the output by that delay rather than dropping it, so a 20 ms frame is complete as soon as the
    packet carrying its last sample has arrived (dropping it would hold every frame for the filter's look-ahead,
    which on 20 ms packets means until the next packet: 20 ms more before the VAD or the recorder sees it).
    """

    delay = 0

    def chunk(self, samples: Int16Array) -> Int16Array:
        """Resample the next interleaved samples (any count of whole frames)."""
        raise NotImplementedError

    def last(self) -> Int16Array:
        """Drain the filter at the end of the input."""
        raise NotImplementedError


class _Decimate(_Resampler):
    """48 kHz, 1 or 2 channels → 16 kHz mono through the kernels' Decimator (downmix fused into the filter)."""

    def __init__(self, channels: int) -> None:
        self._decimator = Decimator(channels)
        self.delay = self._decimator.delay
        self._out = np.zeros(Decimator.max_output(DECIMATED_RATE // 10), np.int16)

    def chunk(self, samples: Int16Array) -> Int16Array:
        """Decimate into a reused buffer (grown if a frame is longer than 100 ms)."""
        needed = Decimator.max_output(samples.size // self._decimator.channels)
        if needed > self._out.size:
            self._out = np.zeros(needed, np.int16)
        return self._decimator.process(samples, out=self._out[:needed])

    def last(self) -> Int16Array:
        """The filter's tail."""
        return self._decimator.flush()


class _Soxr(_Resampler):
    """Any other rate: downmix, then soxr's HQ streaming resampler (which aligns its output itself)."""

    def __init__(self, rate: int, channels: int) -> None:
        self._channels = channels
        self._stream = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="int16", quality="HQ")
        self._mono = np.zeros(rate // 10, np.int16)

    def chunk(self, samples: Int16Array) -> Int16Array:
        """Downmix (if needed) and resample."""
        if self._channels > 1:
            count = samples.size // self._channels
            if self._mono.size < count:
                self._mono = np.zeros(count, np.int16)
            samples = downmix(samples[: count * self._channels], self._channels, out=self._mono[:count])
        resampled: Int16Array = self._stream.resample_chunk(samples)
        return resampled

    def last(self) -> Int16Array:
        """soxr's tail."""
        tail: Int16Array = self._stream.resample_chunk(np.zeros(0, np.int16), last=True)
        return tail


class _Passthrough(_Resampler):
    """16 kHz mono already (Opus decoded at 16 kHz): no filter, no delay, no tail."""

    _EMPTY = np.zeros(0, np.int16)

    def chunk(self, samples: Int16Array) -> Int16Array:
        """The samples as they are."""
        return samples

    def last(self) -> Int16Array:
        """Nothing held back."""
        return self._EMPTY


def _resampler(rate: int, channels: int) -> _Resampler:
    if rate == SAMPLE_RATE and channels == 1:
        return _Passthrough()
    return _Decimate(channels) if rate == DECIMATED_RATE and channels <= 2 else _Soxr(rate, channels)


TIMELINE_LEAD = Decimator.delay
"""Samples of timeline before the first media (2.4 ms): room for the first source's resampler warm-up."""


class TimelineClock:
    """The call timeline: wall (monotonic) seconds ↔ 16 kHz sample positions; the first media is at
    :data:`TIMELINE_LEAD`, so that every source's frames (which start a filter delay before its first sample) fit."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.origin: float | None = None

    def now(self) -> float:
        """The current monotonic time."""
        return self._now()

    def position_of(self, moment: float) -> int:
        """The timeline sample at ``moment``; the first call fixes the origin (that moment is :data:`TIMELINE_LEAD`)."""
        if self.origin is None:
            self.origin = moment - TIMELINE_LEAD / SAMPLE_RATE
        return round((moment - self.origin) * SAMPLE_RATE)

    def position(self) -> int:
        """The timeline sample now (0 before any media)."""
        return 0 if self.origin is None else round((self._now() - self.origin) * SAMPLE_RATE)


class FrameSink(Protocol):
    """Takes 20 ms frames of one source in timeline order; ``frame`` is reused after the call returns."""

    def on_frame(self, position: int, frame: Int16Array) -> None:
        """One frame whose first sample is at ``position``."""
        ...


@dataclass
class PipelineStats:
    """What a source delivered: frames in and out, silence inserted for loss and gaps, frames dropped as late,
    samples dropped to move onto a refined anchor, where it started, and timestamp discontinuities re-anchored."""

    frames_in: int = 0
    frames_out: int = 0
    gap_samples: int = 0
    late_frames: int = 0
    realigned_samples: int = 0
    first_position: int | None = None
    discontinuities: int = 0


class StreamPipeline:
    """Decoded frames of one source → 16 kHz mono 20 ms frames on the call timeline → sinks."""

    def __init__(self, clock: TimelineClock, sinks: list[FrameSink] | None = None) -> None:
        self.clock = clock
        self.sinks: list[FrameSink] = sinks if sinks is not None else []
        self.stats = PipelineStats()
        self._rate = 0
        self._channels = 0
        self._resampler: _Resampler | None = None
        self._zeros = np.zeros(0, np.int16)
        self._frame = np.zeros(FRAME_SAMPLES, np.int16)
        self._filled = 0
        # Position of the next output sample (start of self._frame), and RTP bookkeeping of the input side.
        self._out_pos = 0
        self._base = 0
        self._rtp_last = 0
        self._rtp_ext = 0
        self._in_next = 0
        self._anchored = False
        self._settle: list[tuple[int | None, float, Int16Array]] = []
        self._start = 0.0  # the anchor: the least-delayed ``arrival - media time`` seen (monotonic seconds)
        self._refining = 0  # frames left in which a less-delayed frame still moves the anchor
        self._least = math.inf  # the two least-delayed estimates seen while refining: a refinement needs both
        self._second = math.inf
        self._drop = 0  # output samples still to drop to move onto a refined anchor
        self._packet = 0  # the last frame's length in output samples (20 ms: 320)
        self._closed = False
        self._closing = False
        self.pushing_arrival: float | None = None
        """While :meth:`push` runs its sinks: when the frame being pushed actually arrived (else None)."""

    @property
    def position(self) -> int:
        """Timeline position of the next sample this source will emit (its end so far)."""
        return self._out_pos + self._filled

    def arrival_of(self, position: int) -> float | None:
        """When the packet carrying timeline sample ``position`` reached us on the least-delayed path (monotonic
        seconds; None before anchoring): a packet's samples all arrive with its first one."""
        if not self._anchored or self._packet <= 0:
            return None
        packet_start = (position - self._base) // self._packet * self._packet
        return self._start + packet_start / SAMPLE_RATE

    @property
    def closing(self) -> bool:
        """Whether the sinks are being given the stream's tail at :meth:`close` (not audio that just arrived)."""
        return self._closing

    @property
    def anchored(self) -> bool:
        """Whether the source has been placed on the timeline."""
        return self._anchored

    def push(self, pts: int | None, rate: int, channels: int, samples: Int16Array, arrival: float) -> None:
        """One decoded frame: interleaved int16 ``samples`` at ``rate``, RTP timestamp ``pts``, arrival time."""
        if self._closed or samples.size == 0:
            return
        self.stats.frames_in += 1
        if rate != self._rate or channels != self._channels:
            self._configure(rate, channels)
        if not self._anchored:
            self._settle.append((pts, arrival, samples.copy()))
            if len(self._settle) >= SETTLE_FRAMES:
                self._anchor()
            return
        self.pushing_arrival = arrival
        try:
            self._take(pts, arrival, samples)
        finally:
            self.pushing_arrival = None

    def close(self) -> None:
        """End of the stream: anchor what is settling, flush the resampler and the last partial frame (padded)."""
        if self._closed:
            return
        self._closing = True
        if not self._anchored and self._settle:
            self._anchor()
        if self._resampler is not None and self._anchored:
            self._emit(self._resampler.last())
        if self._filled:
            self._frame[self._filled :] = 0
            self._filled = FRAME_SAMPLES
            self._flush_frame()
        self._closed = True

    # -- internals ------------------------------------------------------------------------------------------------

    def _configure(self, rate: int, channels: int) -> None:
        if self._anchored and self._resampler is not None:
            # A codec change mid-stream (renegotiation): finish the old filter, continue at the same position.
            self._emit(self._resampler.last())
        self._rate, self._channels = rate, channels
        self._resampler = _resampler(rate, channels)
        if self._anchored:
            self._drop += self._resampler.delay  # the output is already placed: drop the new filter's warm-up
        self._zeros = np.zeros(int(rate * MAX_FILLED_GAP_S) * channels, np.int16)

    def _unwrap(self, pts: int) -> int:
        """RTP timestamp → samples since the source's first frame (32-bit wrap-around handled)."""
        delta = (pts - self._rtp_last) % _U32
        if delta >= _U32 // 2:
            delta -= _U32
        self._rtp_last = (self._rtp_last + delta) % _U32
        self._rtp_ext += delta
        return self._rtp_ext

    def _take(self, pts: int | None, arrival: float, samples: Int16Array) -> None:
        """Place one frame of an anchored stream: by its timestamp, unless that is a discontinuity."""
        at = self._unwrap(pts) if pts is not None else self._in_next
        estimate = arrival - at / self._rate  # when the stream started, by this frame
        if abs(estimate - self._start) > MAX_SKEW_S:
            self._reanchor(arrival)
            at = 0
        elif self._refining:
            self._refining -= 1
            if estimate < self._least:
                self._second, self._least = self._least, estimate
            elif estimate < self._second:
                self._second = estimate
            self._refine(self._second)
        self._place_at(at, samples)

    def _anchor(self) -> None:
        frames, self._settle = self._settle, []
        first_pts = next((p for p, _, _ in frames if p is not None), None)
        # The stream's start by each settling frame (arrival - media time), then the least-delayed estimate among
        # those that agree with their median: one wild timestamp among them does not place the stream. Media time is
        # taken from the first timestamp, not the previous one, so that a wild one does not move the frames after it.
        media: list[int] = []
        estimates: list[float] = []
        expected = 0
        for pts, arrival, samples in frames:
            at = expected
            if pts is not None and first_pts is not None:
                at = (pts - first_pts + _U32 // 2) % _U32 - _U32 // 2
            media.append(at)
            estimates.append(arrival - at / self._rate)
            expected = at + samples.size // self._channels
        middle = sorted(estimates)[len(estimates) // 2]
        inliers = [k for k, e in enumerate(estimates) if abs(e - middle) <= ANCHOR_SPREAD_S]
        # The stream starts at its first agreeing frame; wild ones before it are dropped (counted as late).
        first = inliers[0]
        self.stats.late_frames += first
        origin = media[first]
        start = min(estimates[k] for k in inliers) + origin / self._rate
        self._start = self._least = start
        self._second = math.inf
        self._refining = REFINE_FRAMES  # the settling frames count (they pass through _take below)
        self._base = self.clock.position_of(start)
        assert self._resampler is not None
        self._out_pos = self._base - self._resampler.delay  # the filter's output lags its input by its delay
        self._in_next = 0
        self._anchored = True
        self.stats.first_position = self._base
        self._rtp_last = (first_pts + origin) % _U32 if first_pts is not None else 0
        self._rtp_ext = 0
        for pts, arrival, samples in frames[first:]:
            self._take(pts, arrival, samples)

    def _refine(self, estimate: float) -> None:
        """A frame arrived less delayed than the anchor says: move the anchor earlier, dropping the difference."""
        shift = round((self._start - estimate) * SAMPLE_RATE)
        if shift < MIN_REALIGN_SAMPLES:
            return
        self._start = estimate
        self._base -= shift
        self._drop += shift
        self.stats.realigned_samples += shift

    def _reanchor(self, arrival: float) -> None:
        """A timestamp discontinuity: the frame being taken (media time 0 from now on) belongs at its arrival."""
        self.stats.discontinuities += 1
        if self.stats.discontinuities == 1:  # the first only: a hostile sender can make one of every packet
            logger.info("RTP timestamp discontinuity: the source is re-anchored at its arrival")
        assert self._resampler is not None
        self._emit(self._resampler.last())
        self._resampler = _resampler(self._rate, self._channels)
        self._rtp_ext = 0
        self._in_next = 0
        self._start = self._least = arrival
        self._second = math.inf
        self._refining = REFINE_FRAMES
        self._base = self.clock.position_of(arrival)
        target = self._base - self._resampler.delay
        # Output already past it (the old anchor ran ahead): drop the overlap; behind: silence up to it.
        self._drop = max(self.position - target, 0)
        self._skip_to(target)

    def _place_at(self, at: int, samples: Int16Array) -> None:
        count = samples.size // self._channels
        self._packet = count * SAMPLE_RATE // self._rate
        if at + count <= self._in_next:
            self.stats.late_frames += 1
            return
        channels = self._channels
        samples = samples[: count * channels]
        if at < self._in_next:
            samples = samples[(self._in_next - at) * channels :]
            count -= self._in_next - at
            at = self._in_next
        assert self._resampler is not None
        gap = at - self._in_next
        if gap:
            self.stats.gap_samples += gap * SAMPLE_RATE // self._rate
            if gap * channels <= self._zeros.size:
                self._emit(self._resampler.chunk(self._zeros[: gap * channels]))
            else:
                # A long gap: finish the filter, restart it exactly where the next frame belongs (less its delay).
                self._emit(self._resampler.last())
                self._resampler = _resampler(self._rate, self._channels)
                target = self._base + at * SAMPLE_RATE // self._rate - self._resampler.delay
                # Ahead of it (a refined anchor not yet caught up with): drop; behind: silence up to it.
                self._drop = max(self.position - target, 0)
                self._skip_to(target)
        self._emit(self._resampler.chunk(samples))
        self._in_next = at + count

    def _skip_to(self, position: int) -> None:
        """Move the output to ``position``, padding the partial frame with silence (the gap's sinks see silence)."""
        while self.position < position:
            take = min(FRAME_SAMPLES - self._filled, position - self.position)
            self._frame[self._filled : self._filled + take] = 0
            self._filled += take
            if self._filled == FRAME_SAMPLES:
                self._flush_frame()

    def _emit(self, out: Int16Array) -> None:
        """Append resampler output to the current frame; every full frame goes to the sinks."""
        offset = 0
        total = out.size
        if self._drop:
            offset = min(self._drop, total)
            self._drop -= offset
        while offset < total:
            take = min(FRAME_SAMPLES - self._filled, total - offset)
            self._frame[self._filled : self._filled + take] = out[offset : offset + take]
            self._filled += take
            offset += take
            if self._filled == FRAME_SAMPLES:
                self._flush_frame()

    def _flush_frame(self) -> None:
        position = self._out_pos
        self._out_pos += FRAME_SAMPLES
        self._filled = 0
        self.stats.frames_out += 1
        for sink in self.sinks:
            sink.on_frame(position, self._frame)
