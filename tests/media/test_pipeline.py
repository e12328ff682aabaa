"""StreamPipeline: decoded frames → 16 kHz mono 20 ms frames on the call timeline (no network needed)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.audio.kernels import Decimator
from mediabot.media.pipeline import (
    MAX_SKEW_S,
    REFINE_FRAMES,
    SETTLE_FRAMES,
    TIMELINE_LEAD,
    StreamPipeline,
    TimelineClock,
)

RATE = 48_000
FRAME_IN = RATE // 50
LEAD = TIMELINE_LEAD  # the first media sits this many samples into the timeline (its filter's warm-up fits before)


class Collector:
    """A sink that lays frames out by position (and checks they arrive in order, whole, without overlap)."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, npt.NDArray[np.int16]]] = []

    def on_frame(self, position: int, frame: npt.NDArray[np.int16]) -> None:
        assert frame.size == FRAME_SAMPLES
        if self.frames:
            assert position == self.frames[-1][0] + FRAME_SAMPLES
        self.frames.append((position, frame.copy()))

    def signal(self, length: int) -> npt.NDArray[np.int16]:
        out = np.zeros(length, np.int16)
        for position, frame in self.frames:
            end = min(length, position + FRAME_SAMPLES)
            if end > position:
                out[position:end] = frame[: end - position]
        return out


def tone(seconds: float, freq: float = 440.0, rate: int = RATE, amplitude: int = 8000) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def stereo(mono: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    return np.repeat(mono, 2)


def feed(
    pipeline: StreamPipeline,
    signal: npt.NDArray[np.int16],
    *,
    start: float,
    pts0: int = 12345,
    drop: set[int] | None = None,
    jitter: npt.NDArray[np.float64] | None = None,
) -> None:
    """Push a mono 48 kHz signal as stereo 20 ms frames sent in real time from ``start``."""
    for k in range(signal.size // FRAME_IN):
        if drop and k in drop:
            continue
        frame = stereo(signal[k * FRAME_IN : (k + 1) * FRAME_IN])
        arrival = start + k * 0.02 + (float(jitter[k]) if jitter is not None else 0.0)
        pipeline.push((pts0 + k * FRAME_IN) % (1 << 32), RATE, 2, frame, arrival)


def expected_16k(signal: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    # The ideal: the same sine sampled at 16 kHz (the test signals are band-limited far below 8 kHz).
    return signal[::3].astype(np.float64)


def correlation(a: npt.NDArray[np.int16], b: npt.NDArray[np.float64]) -> float:
    a64 = a.astype(np.float64)
    return float(np.dot(a64, b) / (np.linalg.norm(a64) * np.linalg.norm(b) + 1e-9))


def test_continuous_audio_is_resampled_and_placed_from_zero() -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    signal = tone(2.0)
    feed(pipeline, signal, start=100.0)
    pipeline.close()
    assert clock.origin == pytest.approx(100.0 - LEAD / SAMPLE_RATE)
    assert pipeline.stats.first_position == LEAD
    assert sink.frames[0][0] == 0  # the first frame starts the filter's delay before the first sample
    out = sink.signal(2 * SAMPLE_RATE + LEAD)
    assert correlation(out[LEAD + 200 : -400], expected_16k(signal)[200:-400]) > 0.999
    # Exactly where it belongs: shifted one sample either way, the match is worse.
    for shift in (-1, 1):
        assert correlation(out[LEAD + shift + 200 : shift - 400], expected_16k(signal)[200:-400]) < correlation(
            out[LEAD + 200 : -400], expected_16k(signal)[200:-400]
        )
    assert pipeline.stats.frames_in == 100
    # No sample gained or lost: the audio ends at LEAD + 2 s (then the last frame is padded).
    assert np.abs(out[LEAD + 2 * SAMPLE_RATE - 100 : LEAD + 2 * SAMPLE_RATE - 50]).max() > 1000
    assert pipeline.position == 2 * SAMPLE_RATE + FRAME_SAMPLES
    assert not sink.signal(pipeline.position)[LEAD + 2 * SAMPLE_RATE + 20 :].any()
    # Each sample's packet arrived at 100.0 + its packet's start: a packet's samples all arrive together.
    assert pipeline.arrival_of(LEAD) == pytest.approx(100.0)
    assert pipeline.arrival_of(LEAD + FRAME_SAMPLES - 1) == pytest.approx(100.0)
    assert pipeline.arrival_of(LEAD + SAMPLE_RATE + 5) == pytest.approx(101.0)


def test_late_join_is_leading_silence_at_the_right_place() -> None:
    clock = TimelineClock(lambda: 0.0)
    first, late = Collector(), Collector()
    a = StreamPipeline(clock, [first])
    b = StreamPipeline(clock, [late])
    feed(a, tone(1.0), start=50.0)
    feed(b, tone(1.0, 660.0), start=53.0, pts0=999)  # joins 3 s after the call's media started
    assert b.stats.first_position == 3 * SAMPLE_RATE + LEAD
    assert late.frames[0][0] == 3 * SAMPLE_RATE + LEAD - Decimator.delay  # its frames start a filter delay before


def test_burst_of_the_jitter_buffer_does_not_delay_the_anchor() -> None:
    clock = TimelineClock(lambda: 0.0)
    ref, burst = Collector(), Collector()
    first = StreamPipeline(clock, [ref])
    first.push(0, RATE, 2, stereo(tone(0.02)), 10.0)
    first.close()  # anchors it: the origin is 10.0
    pipeline = StreamPipeline(clock, [burst])
    signal = tone(1.0)
    # The first frames come out together, 80 ms after the first was due (the jitter buffer's prefetch).
    for k in range(signal.size // FRAME_IN):
        arrival = max(11.0 + k * 0.02, 11.08)
        pipeline.push(k * FRAME_IN, RATE, 2, stereo(signal[k * FRAME_IN : (k + 1) * FRAME_IN]), arrival)
    assert pipeline.stats.first_position == SAMPLE_RATE + LEAD  # 11.0 - 10.0 s, not 11.08


def test_loss_and_gaps_are_silence_and_the_timeline_stays_exact() -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    signal = tone(4.0)
    rng = np.random.default_rng(7)
    lost = {int(k) for k in rng.choice(np.arange(REFINE_FRAMES, 200), size=10, replace=False)}
    # A long silence (3 s, more than the filled-gap limit) between two talk spurts.
    long_gap = set(range(120, 170))
    jitter = rng.uniform(0, 0.04, size=200)
    feed(pipeline, signal, start=0.0, drop=lost | long_gap, jitter=jitter)
    pipeline.close()
    # The provisional anchor (first 100 ms) was late by some of the jitter; refined over the first second, the
    # difference was dropped once, and from then on every sample sits exactly where its timestamp says.
    realigned = pipeline.stats.realigned_samples
    assert 0 < realigned < 0.04 * SAMPLE_RATE
    # (the stream's last partial frame is padded to a whole one)
    end = LEAD + 4 * SAMPLE_RATE - realigned + Decimator.delay  # the filter's tail rings out after the audio
    assert end <= pipeline.position < end + FRAME_SAMPLES
    out = sink.signal(4 * SAMPLE_RATE + LEAD)[LEAD:]
    expected = expected_16k(signal)
    for k in sorted(lost | long_gap):
        lo, hi = k * FRAME_SAMPLES + 40, (k + 1) * FRAME_SAMPLES - 40  # away from the filter's edges
        assert np.abs(out[lo - realigned : hi - realigned]).max() < 400, k
    kept = [k for k in range(REFINE_FRAMES, 200) if k not in lost | long_gap and k - 1 not in lost | long_gap]
    kept = [k for k in kept if k + 1 not in lost | long_gap]
    idx = np.concatenate([np.arange(k * FRAME_SAMPLES + 40, (k + 1) * FRAME_SAMPLES - 40) for k in kept])
    assert correlation(out[idx - realigned], expected[idx]) > 0.99
    assert pipeline.stats.gap_samples == len(lost | long_gap) * FRAME_SAMPLES


def test_a_stream_is_heard_after_100_ms_not_after_its_anchoring_second() -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    signal = tone(0.2)
    for k in range(SETTLE_FRAMES):
        assert not sink.frames
        pipeline.push(k * FRAME_IN, RATE, 2, stereo(signal[k * FRAME_IN : (k + 1) * FRAME_IN]), k * 0.02)
    # The resampler holds back a few ms of its filter: all but the last frame are out.
    assert len(sink.frames) >= SETTLE_FRAMES - 1
    assert pipeline.stats.realigned_samples == 0  # a clean stream needs no correction


def test_rtp_timestamp_wrap_around() -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    signal = tone(1.0)
    feed(pipeline, signal, start=0.0, pts0=(1 << 32) - 10 * FRAME_IN - 7)
    pipeline.close()
    assert pipeline.stats.first_position == LEAD
    assert LEAD + SAMPLE_RATE <= pipeline.position < LEAD + SAMPLE_RATE + FRAME_SAMPLES
    assert correlation(sink.signal(SAMPLE_RATE + LEAD)[LEAD + 200 : -400], expected_16k(signal)[200:-400]) > 0.999


def test_an_hour_places_the_last_frame_exactly() -> None:
    clock = TimelineClock(lambda: 0.0)

    class Last:
        position = -1

        def on_frame(self, position: int, frame: npt.NDArray[np.int16]) -> None:
            self.position = position

    last = Last()
    pipeline = StreamPipeline(clock, [last])
    frame = np.zeros(FRAME_IN, np.int16)
    frames = 3600 * 50
    pts = 77
    for k in range(frames):
        # The arrival clock wanders (a sender whose clock runs 100 ppm fast); placement follows the RTP clock.
        pipeline.push(pts, RATE, 1, frame, k * 0.02 * 1.0001)
        pts = (pts + FRAME_IN) % (1 << 32)
    pipeline.close()
    assert pipeline.stats.first_position == LEAD
    # The hour ends at LEAD + 3600 s exactly: the frame holding the filter's tail starts at 3600 s (from 0, the
    # first frame's start), whatever the arrival clock did.
    assert last.position == frames * FRAME_SAMPLES
    assert pipeline.position == frames * FRAME_SAMPLES + FRAME_SAMPLES


def test_pcmu_rate_and_late_duplicates() -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    signal = tone(1.0, rate=8000)
    for k in range(50):
        chunk = signal[k * 160 : (k + 1) * 160]
        pipeline.push(k * 160, 8000, 1, chunk, k * 0.02)
        if k == 30:
            pipeline.push(20 * 160, 8000, 1, chunk, k * 0.02)  # a stale duplicate: dropped
    pipeline.close()
    assert pipeline.stats.late_frames == 1
    assert pipeline.stats.first_position == LEAD  # soxr aligns its output itself: frames start at the anchor
    assert pipeline.position == SAMPLE_RATE + LEAD


def push_frames(pipeline: StreamPipeline, signal: npt.NDArray[np.int16], pts: list[int], start: float = 0.0) -> None:
    """Push a mono 48 kHz signal as 20 ms frames arriving in real time from ``start``, with the given timestamps."""
    for k, stamp in enumerate(pts):
        pipeline.push(stamp % (1 << 32), RATE, 1, signal[k * FRAME_IN : (k + 1) * FRAME_IN], start + k * 0.02)


@pytest.mark.parametrize("jump", [120 * RATE, (1 << 31) - 1, -(1 << 31), -120 * RATE])
@pytest.mark.parametrize("at_frame", [0, 2, SETTLE_FRAMES + 10, REFINE_FRAMES + 10])
def test_one_wild_timestamp_neither_stretches_nor_shifts_the_stream(jump: int, at_frame: int) -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    signal = tone(3.0)
    pts = [7 + k * FRAME_IN for k in range(150)]
    pts[at_frame] += jump  # one packet (in the settling frames, the refining second, or later)
    push_frames(pipeline, signal, pts)
    pipeline.close()
    stats = pipeline.stats
    # The stream starts where its first frame arrived (a wild first frame is dropped: where the second did)...
    assert stats.first_position == LEAD and stats.realigned_samples == 0
    first = 0.02 if at_frame == 0 else 0.0
    assert clock.origin == pytest.approx(first - LEAD / SAMPLE_RATE)
    # ... and is not stretched: it ends where 3 s of real time end (the wild frame and its return are re-anchored).
    end = LEAD + round((3.0 - first) * SAMPLE_RATE)
    assert end <= pipeline.position < end + 2 * FRAME_SAMPLES
    assert stats.frames_out == pipeline.position // FRAME_SAMPLES
    assert (stats.discontinuities, stats.late_frames) == ((0, 1) if at_frame == 0 else (2, 0))
    # Nothing after it is lost: the audio around it (but for the filter restarts at the two re-anchors) is in place.
    skipped = FRAME_SAMPLES if at_frame == 0 else 0  # the signal's samples before the timeline's first
    out = sink.signal(3 * SAMPLE_RATE + LEAD - skipped)[LEAD:]
    expected = expected_16k(signal)[skipped:]
    idx = np.arange(skipped, 3 * SAMPLE_RATE)
    keep = (idx < at_frame * FRAME_SAMPLES - 100) | (idx > (at_frame + 2) * FRAME_SAMPLES + 100)
    keep[-400:] = False  # the last frame's filter edge
    assert correlation(out[keep], expected[keep]) > 0.999


def test_a_sender_that_restarts_its_timestamps_is_followed_at_its_arrival() -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    signal = tone(2.0)
    # A new timestamp base after 1 s (a restarted sender): far behind the old one, so not "late", not a 2^32 gap.
    pts = [3_000_000_000 + k * FRAME_IN for k in range(50)] + [1000 + k * FRAME_IN for k in range(50)]
    push_frames(pipeline, signal, pts)
    pipeline.close()
    assert pipeline.stats.discontinuities == 1 and pipeline.stats.late_frames == 0
    assert LEAD + 2 * SAMPLE_RATE <= pipeline.position < LEAD + 2 * SAMPLE_RATE + 2 * FRAME_SAMPLES
    out = sink.signal(2 * SAMPLE_RATE + LEAD)[LEAD:]
    expected = expected_16k(signal)
    # The second half sits at its arrival (1 s), after the old filter's tail and the new one's warm-up.
    tail = slice(SAMPLE_RATE + 200, 2 * SAMPLE_RATE - 400)
    assert correlation(out[tail], expected[tail]) > 0.999


def test_a_long_pause_that_arrives_late_is_a_gap_not_a_discontinuity() -> None:
    clock = TimelineClock(lambda: 0.0)
    sink = Collector()
    pipeline = StreamPipeline(clock, [sink])
    frame = tone(0.02)
    pause = 10 * MAX_SKEW_S  # the sender stops sending: its next timestamps and their arrival are both later
    for k in range(100):
        later = pause if k >= 60 else 0.0
        # A slow path after the pause too (just under the bound): still placed by its timestamp.
        delay = MAX_SKEW_S * 0.9 if k >= 80 else 0.0
        pipeline.push(5 + k * FRAME_IN + int(later * RATE), RATE, 1, frame, k * 0.02 + later + delay)
    pipeline.close()
    assert pipeline.stats.discontinuities == 0
    assert pipeline.stats.gap_samples == int(pause * SAMPLE_RATE)
    end = LEAD + int((2 + pause) * SAMPLE_RATE)
    assert end <= pipeline.position < end + 2 * FRAME_SAMPLES


def test_one_early_outlier_does_not_drag_the_anchor_but_two_frames_refine_it() -> None:
    clock = TimelineClock(lambda: 0.0)
    pipeline = StreamPipeline(clock, [Collector()])
    frame = tone(0.02)
    # Within the skew bound, 0.5 s earlier than every other frame says: a refinement would drop 0.5 s of audio.
    for k in range(30):
        ahead = 0.5 if k == 20 else 0.0
        pipeline.push(k * FRAME_IN + int(ahead * RATE), RATE, 1, frame, 0.03 + k * 0.02)
    assert pipeline.stats.realigned_samples == 0 and pipeline.stats.discontinuities == 0
    # Two frames that did arrive 10 ms less delayed than the first ones: the anchor moves by exactly that.
    for k in (30, 31):
        pipeline.push(k * FRAME_IN, RATE, 1, frame, 0.02 + k * 0.02)
    assert pipeline.stats.realigned_samples == SAMPLE_RATE // 100
