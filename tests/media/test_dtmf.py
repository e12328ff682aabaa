"""The DTMF detector on generated key sequences, in noise and speech, and the tone generator."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.audio.kernels import level_dbfs
from mediabot.media.dtmf import DIGITS, DtmfDetector, DtmfTone, dtmf_frequencies, dtmf_tone

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
F = FRAME_SAMPLES


def load_wav(name: str) -> np.ndarray:
    with wave.open(str(FIXTURES / name)) as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), np.int16)


def speech() -> np.ndarray:
    return np.concatenate([load_wav("speech_fox.wav"), load_wav("speech_message.wav")])


def key_sequence(
    digits: str, on_s: float, off_s: float, offset: int, amplitude_dbfs: float = -13.0
) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """Tones separated by silence, starting ``offset`` samples in; each sine at ``amplitude_dbfs`` peak (-10 dBFS
    RMS for the pair at the default)."""
    parts: list[np.ndarray] = [np.zeros(offset, np.int16)]
    truth = []
    position = offset
    for digit in digits:
        tone = dtmf_tone(digit, on_s, SAMPLE_RATE, amplitude_dbfs)
        truth.append((digit, position, position + len(tone)))
        parts += [tone, np.zeros(round(off_s * SAMPLE_RATE), np.int16)]
        position += len(tone) + len(parts[-1])
    parts.append(np.zeros(5 * F, np.int16))
    signal = np.concatenate(parts)
    return np.concatenate([signal, np.zeros(-len(signal) % F, np.int16)]), truth


def mix(signal: np.ndarray, other: np.ndarray) -> np.ndarray:
    mixed: np.ndarray = np.clip(signal.astype(np.float64) + other, -32768, 32767)
    return mixed.astype(np.int16)


def noise(length: int, level_dbfs: float, seed: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 32768 * 10 ** (level_dbfs / 20), length)


def speech_at(length: int, level: float) -> np.ndarray:
    voice = np.resize(speech(), length).astype(np.float64)
    scaled: np.ndarray = voice * 10 ** ((level - level_dbfs(speech())) / 20)
    return scaled


def detect(signal: np.ndarray, detector: DtmfDetector | None = None, origin: int = 0) -> list[DtmfTone]:
    detector = detector or DtmfDetector()
    size = detector.frame_samples
    tones = [detector.process(origin + i, signal[i : i + size]) for i in range(0, len(signal) - size + 1, size)]
    tones.append(detector.flush())
    return [tone for tone in tones if tone is not None]


def assert_matches(tones: list[DtmfTone], truth: list[tuple[str, int, int]]) -> None:
    assert "".join(t.digit for t in tones) == "".join(d for d, _, _ in truth)
    for tone, (_, start, end) in zip(tones, truth, strict=True):
        assert abs(tone.start - start) <= F
        assert abs(tone.end - end) <= F


# -- sequences ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("on_s", "off_s"), [(0.05, 0.05), (0.1, 0.1)])
@pytest.mark.parametrize("offset", [0, 1, 80, 160, 240, 319])
def test_all_digits_in_noise(on_s: float, off_s: float, offset: int) -> None:
    signal, truth = key_sequence(DIGITS, on_s, off_s, offset)
    tones = detect(mix(signal, noise(len(signal), -30.0)))
    assert_matches(tones, truth)


@pytest.mark.parametrize(("on_s", "off_s"), [(0.05, 0.05), (0.1, 0.1)])
@pytest.mark.parametrize("offset", [0, 100, 200])
def test_all_digits_over_speech(on_s: float, off_s: float, offset: int) -> None:
    signal, truth = key_sequence(DIGITS, on_s, off_s, offset)
    tones = detect(mix(signal, speech_at(len(signal), -30.0)))
    assert_matches(tones, truth)


def test_tone_positions_are_on_the_call_timeline() -> None:
    signal, truth = key_sequence("159#", 0.1, 0.1, 0)
    origin = 48_000 * 60
    tones = detect(signal, origin=origin)
    assert_matches(tones, [(d, s + origin, e + origin) for d, s, e in truth])
    first = tones[0]
    assert first.start_s == pytest.approx(first.start / SAMPLE_RATE)
    assert first.end_s == pytest.approx(first.end / SAMPLE_RATE)
    assert first.duration_ms == pytest.approx(100.0, abs=20.0)


def test_a_tone_is_reported_when_it_ends() -> None:
    detector = DtmfDetector()
    tone = dtmf_tone("7", 0.2, SAMPLE_RATE, -13.0)
    results = [detector.process(i, tone[i : i + F]) for i in range(0, len(tone), F)]
    assert results == [None] * 10  # still sounding
    silence = np.zeros(F, np.int16)
    assert detector.process(len(tone), silence) is None  # one missing frame is bridged
    ended = detector.process(len(tone) + F, silence)
    assert ended == DtmfTone("7", 0, len(tone))
    assert detector.flush() is None


def test_a_digit_change_ends_the_previous_tone() -> None:
    signal = np.concatenate([dtmf_tone("1", 0.1, SAMPLE_RATE, -13.0), dtmf_tone("2", 0.1, SAMPLE_RATE, -13.0)])
    tones = detect(signal)
    assert [(t.digit, t.start, t.end) for t in tones] == [("1", 0, 1600), ("2", 1600, 3200)]


# -- what is not a digit -----------------------------------------------------------------------------------------------


def test_twenty_ms_tones_are_not_reported() -> None:
    for offset in (0, 100, 160):
        signal, _ = key_sequence("1234567890", 0.02, 0.06, offset)
        assert detect(mix(signal, noise(len(signal), -40.0))) == []


@pytest.mark.parametrize(
    ("row_db", "column_db", "accepted"),
    [
        (-13.0, -13.0, True),
        (-13.0, -20.0, True),  # normal twist 7 dB
        (-13.0, -23.0, False),  # normal twist 10 dB
        (-16.0, -13.0, True),  # reverse twist 3 dB
        (-19.0, -13.0, False),  # reverse twist 6 dB
        (-23.0, -13.0, False),  # reverse twist 10 dB
    ],
)
def test_twist_limits(row_db: float, column_db: float, accepted: bool) -> None:
    row, column = dtmf_frequencies("5")
    t = np.arange(round(0.2 * SAMPLE_RATE)) / SAMPLE_RATE
    pair = 32767 * (
        10 ** (row_db / 20) * np.sin(2 * np.pi * row * t) + 10 ** (column_db / 20) * np.sin(2 * np.pi * column * t)
    )
    signal = np.concatenate([np.zeros(2 * F), np.rint(pair), np.zeros(5 * F)]).astype(np.int16)
    assert [t.digit for t in detect(signal)] == (["5"] if accepted else [])


def test_minimum_level() -> None:
    loud, _ = key_sequence("5", 0.2, 0.0, 0, amplitude_dbfs=-28.0)  # -28 dBFS RMS for the pair
    quiet, _ = key_sequence("5", 0.2, 0.0, 0, amplitude_dbfs=-36.0)  # -33 dBFS RMS
    assert [t.digit for t in detect(loud)] == ["5"]
    assert detect(quiet) == []


def test_speech_alone_gives_no_digits() -> None:
    voice = speech()
    assert detect(voice[: len(voice) // F * F]) == []
    louder = np.clip(voice.astype(np.float64) * 3, -32768, 32767).astype(np.int16)  # peaks clipping
    assert detect(louder[: len(louder) // F * F]) == []


def test_a_single_sine_or_a_chord_of_rows_is_not_a_digit() -> None:
    t = np.arange(10 * F) / SAMPLE_RATE
    single = np.rint(16000 * np.sin(2 * np.pi * 770 * t)).astype(np.int16)
    rows = np.rint(8000 * (np.sin(2 * np.pi * 770 * t) + np.sin(2 * np.pi * 852 * t))).astype(np.int16)
    three = np.rint(6000 * sum(np.sin(2 * np.pi * f * t) for f in (697, 1209, 1336))).astype(np.int16)
    assert detect(single) == []
    assert detect(rows) == []
    assert detect(three) == []


# -- repeats, gaps -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pause_s", [0.05, 0.1])
def test_the_same_digit_twice_with_a_pause_is_two_digits(pause_s: float) -> None:
    for offset in (0, 80, 160, 240):
        signal, truth = key_sequence("55", 0.08, pause_s, offset)
        assert_matches(detect(mix(signal, noise(len(signal), -40.0))), truth)


def test_a_one_frame_dropout_does_not_split_a_tone() -> None:
    signal, _ = key_sequence("8", 0.2, 0.0, 0)
    signal[5 * F : 6 * F] = 0
    tones = detect(signal)
    assert [(t.digit, t.start, t.end) for t in tones] == [("8", 0, 10 * F)]


def test_a_gap_in_positions_ends_the_tone() -> None:
    detector = DtmfDetector()
    tone = dtmf_tone("9", 0.2, SAMPLE_RATE, -13.0)
    assert detector.process(0, tone[:F]) is None
    assert detector.process(F, tone[F : 2 * F]) is None
    assert detector.process(2 * F, tone[2 * F : 3 * F]) is None
    ended = detector.process(10 * F, tone[3 * F : 4 * F])  # 7 frames lost; the tone goes on after the gap
    assert ended == DtmfTone("9", 0, 3 * F)
    assert detector.process(11 * F, tone[4 * F : 5 * F]) is None
    assert detector.flush() == DtmfTone("9", 10 * F, 12 * F)


def test_a_gap_after_a_single_frame_reports_nothing() -> None:
    detector = DtmfDetector()
    tone = dtmf_tone("9", 0.1, SAMPLE_RATE, -13.0)
    assert detector.process(0, tone[:F]) is None
    assert detector.process(5 * F, np.zeros(F, np.int16)) is None
    assert detector.flush() is None


def test_frames_must_be_in_order_and_of_one_frame() -> None:
    detector = DtmfDetector()
    detector.process(F, np.zeros(F, np.int16))
    with pytest.raises(ValueError):
        detector.process(F, np.zeros(F, np.int16))
    with pytest.raises(ValueError):
        detector.process(2 * F, np.zeros(F + 1, np.int16))


def test_eight_khz_streams() -> None:
    digits = "*0#D"
    parts = []
    for digit in digits:
        parts += [dtmf_tone(digit, 0.1, 8000, -13.0), np.zeros(800, np.int16)]
    tones = detect(np.concatenate(parts), DtmfDetector(8000))
    assert "".join(t.digit for t in tones) == digits
    assert tones[1].sample_rate == 8000
    assert tones[1].start_s == pytest.approx(0.2, abs=0.02)


# -- generator ---------------------------------------------------------------------------------------------------------


def test_dtmf_tone_is_the_two_sines() -> None:
    tone = dtmf_tone("#", 1.0, SAMPLE_RATE)
    assert tone.dtype == np.int16
    assert tone.shape == (16000,)
    row, column = dtmf_frequencies("#")
    assert (row, column) == (941.0, 1477.0)
    spectrum = np.abs(np.fft.rfft(tone.astype(np.float64)))
    peaks = sorted(np.argsort(spectrum)[-2:] * SAMPLE_RATE / len(tone))
    assert peaks == [941.0, 1477.0]  # 1 Hz bins
    # -8 dBFS peak each: the pair is -8 dBFS RMS, peaks stay below full scale.
    assert level_dbfs(tone) == pytest.approx(-8.0, abs=0.05)
    assert np.abs(tone.astype(np.int32)).max() <= 2 * 32767 * 10 ** (-8 / 20) + 1


def test_dtmf_keypad() -> None:
    assert dtmf_frequencies("1") == (697.0, 1209.0)
    assert dtmf_frequencies("0") == (941.0, 1336.0)
    assert dtmf_frequencies("d") == (941.0, 1633.0)
    assert sorted(DIGITS) == sorted("0123456789*#ABCD")
    for bad in ("E", "", "12", "+"):
        with pytest.raises(ValueError):
            dtmf_frequencies(bad)


def test_dtmf_tone_validates() -> None:
    assert dtmf_tone("1", 0.0, SAMPLE_RATE).shape == (0,)
    with pytest.raises(ValueError):
        dtmf_tone("1", -0.1, SAMPLE_RATE)
    with pytest.raises(ValueError):
        dtmf_tone("1", 0.1, SAMPLE_RATE, amplitude_dbfs=-3.0)  # the sum would clip
    with pytest.raises(ValueError):
        dtmf_tone("1", 0.1, 3000)
