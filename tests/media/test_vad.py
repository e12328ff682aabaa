"""VAD backends and the speech segmenter: a scripted detector for the state machine, real backends on real speech."""

from __future__ import annotations

import importlib.util
import sys
import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import webrtcvad

from mediabot._errors import MediaError
from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.media.vad import (
    SegmenterParams,
    SileroVad,
    SpeechSegment,
    SpeechSegmenter,
    VadUnavailableError,
    VoiceActivityDetector,
    WebRtcVad,
    create_vad,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
F = FRAME_SAMPLES
PAD = 300 * SAMPLE_RATE // 1000
STOP = 600 * SAMPLE_RATE // 1000


def load_wav(name: str) -> np.ndarray:
    with wave.open(str(FIXTURES / name)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


class ScriptedVad:
    """Says what it is told, one confidence per call, and counts the calls."""

    name = "scripted"

    def __init__(self, confidences: Iterable[float]) -> None:
        self.confidences = list(confidences)
        self.calls = 0

    def speech_confidence(self, frame: np.ndarray) -> float:
        assert frame.shape == (F,)
        confidence = self.confidences[self.calls]
        self.calls += 1
        return confidence


def timeline(length: int) -> np.ndarray:
    """Distinct, recognisable samples: the audio of position p is p % 30000."""
    return (np.arange(length) % 30000).astype(np.int16)


def run(
    pattern: str, params: SegmenterParams | None = None, origin: int = 0, flush: bool = False
) -> tuple[list[tuple[int, SpeechSegment]], SpeechSegmenter, ScriptedVad]:
    """Feed frames by pattern ('#' speech, '.' silence) from ``origin``; segments with the index of the frame that
    closed them."""
    vad = ScriptedVad(1.0 if c == "#" else 0.0 for c in pattern)
    segmenter = SpeechSegmenter(vad, params)
    audio = timeline(origin + len(pattern) * F)
    segments = []
    for i in range(len(pattern)):
        position = origin + i * F
        segment = segmenter.process(position, audio[position : position + F])
        if segment is not None:
            segments.append((i, segment))
    if flush:
        segment = segmenter.flush()
        if segment is not None:
            segments.append((len(pattern), segment))
    return segments, segmenter, vad


def assert_audio(segment: SpeechSegment, expected: np.ndarray | None = None) -> None:
    if expected is None:
        expected = timeline(segment.end)[segment.start :]
    assert segment.audio.dtype == np.int16
    assert segment.audio.shape == (segment.end - segment.start,)
    assert np.array_equal(segment.audio, expected)


# -- the state machine -------------------------------------------------------------------------------------------------


def test_segment_boundaries_are_exact() -> None:
    pattern = "." * 50 + "#" * 20 + "." * 40
    segments, segmenter, _ = run(pattern)
    assert len(segments) == 1
    closed_at, segment = segments[0]
    assert segment.start == 50 * F - PAD  # the pre-roll before the first speech frame
    assert segment.end == 70 * F + PAD  # the trailing silence trimmed to the pad
    assert segment.reason == "silence"
    assert closed_at == 70 + 30 - 1  # on the frame that completes stop_ms of silence
    assert_audio(segment)
    assert not segmenter.speaking


def test_speaking_turns_on_after_start_ms_of_speech() -> None:
    vad = ScriptedVad([0.0, 1.0, 1.0, 1.0, 0.9])
    segmenter = SpeechSegmenter(vad)
    audio = timeline(5 * F)
    states = []
    for i in range(5):
        segmenter.process(i * F, audio[i * F : (i + 1) * F])
        states.append(segmenter.speaking)
    assert states == [False, False, False, True, True]


def test_threshold_decides() -> None:
    vad = ScriptedVad([0.69] * 5 + [0.7] * 3)
    segmenter = SpeechSegmenter(vad, SegmenterParams(threshold=0.7))
    audio = timeline(8 * F)
    for i in range(8):
        segmenter.process(i * F, audio[i * F : (i + 1) * F])
        assert segmenter.speaking == (i == 7)


def test_short_bursts_and_broken_runs_do_not_open() -> None:
    segments, segmenter, _ = run(".." + "##." * 20 + "#.#." * 10 + "." * 40)
    assert segments == []
    assert not segmenter.speaking


def test_pre_roll_is_clamped_at_the_first_sample_seen() -> None:
    origin = 123_456
    segments, _, _ = run("...###" + "." * 30, origin=origin)
    ((_, segment),) = segments
    assert segment.start == origin
    assert segment.end == origin + 6 * F + PAD
    assert_audio(segment)


def test_pre_roll_is_clamped_at_the_previous_segment_end() -> None:
    params = SegmenterParams(pad_ms=500, stop_ms=600)
    pad = 500 * SAMPLE_RATE // 1000
    segments, _, _ = run("#" * 10 + "." * 30 + "#" * 10 + "." * 40, params)
    (_, first), (_, second) = segments
    assert first.start == 0
    assert first.end == 10 * F + pad
    # 40 - 3... the second run starts at frame 40; its pre-roll would reach back to 40 * F - pad, before first.end.
    assert 40 * F - pad < first.end
    assert second.start == first.end
    assert second.end == 50 * F + pad
    assert_audio(first)
    assert_audio(second)


def test_a_pause_shorter_than_stop_ms_keeps_the_segment() -> None:
    segments, _, _ = run("." * 20 + "#" * 10 + "." * 29 + "#" * 10 + "." * 40)
    ((_, segment),) = segments
    assert segment.start == 20 * F - PAD
    assert segment.end == 69 * F + PAD
    assert_audio(segment)


def test_max_length_cuts_and_the_next_segment_starts_at_the_cut() -> None:
    params = SegmenterParams(max_segment_s=1.0)
    segments, _, _ = run("." * 10 + "#" * 120 + "." * 40, params)
    reasons = [(i, s.start, s.end, s.reason) for i, s in segments]
    assert reasons == [
        (49, 0, 16000, "max_length"),  # pre-roll clamped at 0; cut as soon as 1 s is buffered
        (99, 16000, 32000, "max_length"),
        (149, 32000, 130 * F + PAD, "max_length"),  # 1 s reached in the pause: trailing silence trimmed
    ]
    for _, segment in segments:
        assert_audio(segment)
    assert segments[0][1].duration_s == 1.0


def test_max_length_reached_during_a_pause_does_not_start_a_new_segment() -> None:
    params = SegmenterParams(max_segment_s=1.0)
    segments, segmenter, _ = run("#" * 45 + "." * 100, params)
    ((_, segment),) = segments
    assert (segment.start, segment.end, segment.reason) == (0, 16000, "max_length")
    assert not segmenter.speaking


def test_no_empty_segment_after_a_cut_on_a_frame_boundary() -> None:
    params = SegmenterParams(pad_ms=0, max_segment_s=1.0)
    segments, segmenter, _ = run("#" * 50 + "." * 40, params)
    assert [(i, s.start, s.end, s.reason) for i, s in segments] == [(49, 0, 16000, "max_length")]
    assert not segmenter.speaking


def test_a_gap_is_silence_and_the_vad_is_not_asked_about_it() -> None:
    vad = ScriptedVad([1.0] * 10 + [1.0] * 5 + [0.0] * 40)
    segmenter = SpeechSegmenter(vad)
    audio = timeline(200 * F)
    expected = audio.copy()
    for i in range(10):
        assert segmenter.process(i * F, audio[i * F : (i + 1) * F]) is None
    # 0.3 s missing (less than stop_ms): the segment goes on, the gap is zeros in its audio.
    expected[10 * F : 25 * F] = 0
    segments = []
    for i in range(25, 25 + 45):
        segment = segmenter.process(i * F, audio[i * F : (i + 1) * F])
        if segment is not None:
            segments.append(segment)
    assert vad.calls == 55
    (segment,) = segments
    assert segment.start == 0
    assert segment.end == 30 * F + PAD
    assert_audio(segment, expected[: segment.end])


def test_a_long_gap_closes_the_segment_on_the_next_frame() -> None:
    vad = ScriptedVad([1.0] * 10 + [1.0] * 3)
    segmenter = SpeechSegmenter(vad)
    audio = timeline(400 * F)
    for i in range(10):
        segmenter.process(i * F, audio[i * F : (i + 1) * F])
    position = 300 * F  # far beyond stop_ms
    segment = segmenter.process(position, audio[position : position + F])
    assert segment is not None
    assert (segment.start, segment.end, segment.reason) == (0, 10 * F + PAD, "silence")
    expected = audio[: segment.end].copy()
    expected[10 * F :] = 0
    assert_audio(segment, expected)
    assert not segmenter.speaking  # the frame after the gap is speech, but a single frame does not open
    for i in (301, 302):
        segmenter.process(i * F, audio[i * F : (i + 1) * F])
    assert segmenter.speaking


def test_a_gap_longer_than_the_ring_keeps_the_closing_segment_intact() -> None:
    vad = ScriptedVad([1.0] * 50 + [0.0])
    segmenter = SpeechSegmenter(vad, SegmenterParams(max_segment_s=1.0))
    audio = timeline(50 * F)
    for i in range(50):
        segmenter.process(i * F, audio[i * F : (i + 1) * F])
    # Speech is being cut at 1 s (frame 49) and goes on; then 100 s of nothing.
    segment = segmenter.process(10_000 * F, np.zeros(F, np.int16))
    assert segment is not None
    assert (segment.start, segment.end, segment.reason) == (16000, 50 * F + PAD, "silence")
    expected = np.zeros(segment.end - segment.start, np.int16)
    expected[: 50 * F - 16000] = audio[16000:]
    assert_audio(segment, expected)


def test_a_gap_resets_a_starting_run() -> None:
    vad = ScriptedVad([1.0] * 4)
    segmenter = SpeechSegmenter(vad)
    frame = np.ones(F, np.int16)
    segmenter.process(0, frame)
    segmenter.process(F, frame)
    segmenter.process(5 * F, frame)  # a 3-frame gap: the run of two is broken
    assert not segmenter.speaking
    segmenter.process(6 * F, frame)
    assert not segmenter.speaking


def test_flush_closes_the_open_segment_with_at_most_the_pad() -> None:
    segments, segmenter, _ = run("." * 20 + "#" * 10 + "." * 5, flush=True)
    ((closed_at, segment),) = segments
    assert closed_at == 35
    assert (segment.start, segment.end, segment.reason) == (20 * F - PAD, 35 * F, "flush")
    assert_audio(segment)
    assert not segmenter.speaking
    assert segmenter.flush() is None

    segments, _, _ = run("#" * 10 + "." * 25, flush=True)
    assert [(s.end, s.reason) for _, s in segments] == [(10 * F + PAD, "flush")]


def test_flush_at_a_later_position_counts_the_silence() -> None:
    vad = ScriptedVad([1.0] * 10)
    segmenter = SpeechSegmenter(vad)
    audio = timeline(10 * F)
    for i in range(10):
        segmenter.process(i * F, audio[i * F : (i + 1) * F])
    segment = segmenter.flush(10 * F + STOP + 1)
    assert segment is not None
    assert (segment.end, segment.reason) == (10 * F + PAD, "silence")
    expected = np.zeros(segment.end, np.int16)
    expected[: 10 * F] = audio
    assert_audio(segment, expected)


def test_flush_without_anything_open() -> None:
    segmenter = SpeechSegmenter(ScriptedVad([0.0]))
    assert segmenter.flush() is None
    assert segmenter.flush(1000) is None
    segmenter.process(0, np.zeros(F, np.int16))
    assert segmenter.flush(F) is None
    with pytest.raises(ValueError):
        segmenter.flush(F - 1)


def test_frames_must_be_in_order_and_of_one_frame() -> None:
    segmenter = SpeechSegmenter(ScriptedVad([0.0] * 3))
    segmenter.process(1000, np.zeros(F, np.int16))
    with pytest.raises(ValueError):
        segmenter.process(1000 + F - 1, np.zeros(F, np.int16))
    with pytest.raises(ValueError):
        segmenter.process(1000 + F, np.zeros(F - 1, np.int16))
    with pytest.raises(ValueError):
        segmenter.process(1000 + F, np.zeros(F, np.float32))


def test_buffers_are_preallocated_and_segments_own_their_audio() -> None:
    vad = ScriptedVad(([1.0] * 20 + [0.0] * 40) * 5)
    segmenter = SpeechSegmenter(vad)
    ring = segmenter._ring
    assert ring.shape == (PAD + 30 * SAMPLE_RATE + F,)
    frame = np.empty(F, np.int16)  # one frame buffer reused by the caller, as the pipeline does
    segments = []
    for i in range(300):
        frame[:] = timeline((i + 1) * F)[i * F :]
        segment = segmenter.process(i * F, frame)
        if segment is not None:
            segments.append(segment)
    assert segmenter._ring is ring
    assert len(segments) == 5
    for segment in segments:
        assert segment.audio.flags.owndata
        assert_audio(segment)


def test_speech_segment_times() -> None:
    segment = SpeechSegment(8000, 24000, np.zeros(16000, np.int16), "silence")
    assert (segment.start_s, segment.end_s, segment.duration_s) == (0.5, 1.5, 1.0)
    assert "audio" not in repr(segment)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"start_ms": -1},
        {"stop_ms": 0},
        {"pad_ms": -1},
        {"pad_ms": 700, "stop_ms": 600},
        {"max_segment_s": 0.3},
        {"max_segment_s": float("inf")},
    ],
)
def test_segmenter_params_are_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SegmenterParams(**kwargs)  # type: ignore[arg-type]


# -- backends ----------------------------------------------------------------------------------------------------------


def test_webrtc_aggressiveness_is_validated() -> None:
    for bad in (-1, 4, True, 2.0):
        with pytest.raises(ValueError):
            WebRtcVad(bad)  # type: ignore[arg-type]
    assert WebRtcVad(0).aggressiveness == 0
    assert create_vad("webrtc", 3).name == "webrtc"
    with pytest.raises(ValueError):
        create_vad("nope")  # type: ignore[arg-type]


def test_webrtc_scores_speech_and_silence() -> None:
    speech = load_wav("speech_fox.wav")
    vad = WebRtcVad()
    silence = [vad.speech_confidence(np.zeros(F, np.int16)) for _ in range(20)]
    scores = [vad.speech_confidence(speech[i : i + F]) for i in range(0, len(speech) - F + 1, F)]
    assert set(silence) == {0.0}
    assert set(scores) <= {0.0, 1.0}
    assert sum(scores) / len(scores) > 0.8


def test_webrtc_warm_up_hides_its_start_up_false_alarms() -> None:
    noise = np.random.default_rng(7).normal(0, 32768 * 10 ** (-50 / 20), 50 * F)
    frames = np.rint(noise).astype(np.int16).reshape(50, F)
    vad = WebRtcVad()
    assert [vad.speech_confidence(frame) for frame in frames] == [0.0] * 50
    raw = webrtcvad.Vad(2)
    assert raw.is_speech(frames[0].tobytes(), SAMPLE_RATE)  # what the warm-up is for


def test_webrtc_reads_strided_frames_correctly() -> None:
    speech = load_wav("speech_fox.wav")
    stereo = np.repeat(speech[: 40 * F], 2)
    contiguous, strided = WebRtcVad(), WebRtcVad()
    for i in range(40):
        frame = speech[i * F : (i + 1) * F]
        view = stereo[2 * i * F : 2 * (i + 1) * F : 2]
        assert not view.flags.c_contiguous
        assert contiguous.speech_confidence(frame) == strided.speech_confidence(view)


def test_silero_scores_speech_and_silence_without_torch() -> None:
    speech = load_wav("speech_fox.wav")
    vad = create_vad("silero")
    assert isinstance(vad, SileroVad)
    assert vad.speech_confidence(np.zeros(F, np.int16)) == 0.0  # no complete window yet
    silence = [vad.speech_confidence(np.zeros(F, np.int16)) for _ in range(30)]
    scores = [vad.speech_confidence(speech[i : i + F]) for i in range(0, len(speech) - F + 1, F)]
    assert max(silence) < 0.1
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert sum(s > 0.5 for s in scores) / len(scores) > 0.8
    assert "torch" not in sys.modules
    assert "silero_vad.model" not in sys.modules


def test_silero_reset_forgets_the_stream() -> None:
    speech = load_wav("speech_message.wav")
    vad = SileroVad()
    for i in range(0, 60 * F, F):
        vad.speech_confidence(speech[i : i + F])
    assert vad.speech_confidence(speech[60 * F : 61 * F]) > 0.5
    vad.reset()
    assert vad.speech_confidence(np.zeros(F, np.int16)) == 0.0


def test_silero_without_onnxruntime_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(VadUnavailableError) as caught:
        SileroVad()
    assert isinstance(caught.value, ImportError)
    assert isinstance(caught.value, MediaError)
    assert "pip install 'mediabot[silero]' && pip install --no-deps silero-vad" in str(caught.value)


def test_silero_without_the_model_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VadUnavailableError, match="pip install --no-deps silero-vad"):
        SileroVad()
    with pytest.raises(VadUnavailableError, match="pip install --no-deps silero-vad"):
        SileroVad(tmp_path / "missing.onnx")


# -- backends + segmenter on speech ------------------------------------------------------------------------------------

# webrtcvad keeps saying speech for up to 5 frames after speech at aggressiveness 2 (kOverHangMax2AGG, 20 ms frames).
OVERHANG = {"webrtc": 5 * F, "silero": 0}
TOLERANCE = PAD + SAMPLE_RATE // 10


def speech_material() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """silence 1 s / speech / silence 1.5 s / speech / silence 1 s, with white noise at -55 dBFS."""
    parts = [
        np.zeros(SAMPLE_RATE, np.int16),
        load_wav("speech_fox.wav"),
        np.zeros(SAMPLE_RATE * 3 // 2, np.int16),
        load_wav("speech_message.wav"),
        np.zeros(SAMPLE_RATE, np.int16),
    ]
    truth, position = [], 0
    for part in parts:
        if part.any():
            truth.append((position, position + len(part)))
        position += len(part)
    signal = np.concatenate(parts).astype(np.float64)
    signal += np.random.default_rng(11).normal(0, 32768 * 10 ** (-55 / 20), len(signal))
    signal = np.concatenate([signal, np.zeros(-len(signal) % F)])
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16), truth


@pytest.mark.parametrize("backend", ["webrtc", "silero"])
def test_backend_and_segmenter_find_the_speech(backend: str) -> None:
    signal, truth = speech_material()
    detector: VoiceActivityDetector = create_vad(backend)  # type: ignore[arg-type]
    segmenter = SpeechSegmenter(detector)
    segments = []
    for position in range(0, len(signal), F):
        segment = segmenter.process(position, signal[position : position + F])
        if segment is not None:
            segments.append(segment)
    last = segmenter.flush()
    if last is not None:
        segments.append(last)
    assert len(segments) == len(truth)
    for segment, (start, end) in zip(segments, truth, strict=True):
        assert segment.reason == "silence"
        assert segment.start <= start and segment.end >= end  # the speech is inside
        assert abs(segment.start - start) <= TOLERANCE
        assert abs(segment.end - end) <= TOLERANCE + OVERHANG[backend]
        assert np.array_equal(segment.audio, signal[segment.start : segment.end])
