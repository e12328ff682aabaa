"""The audio kernels against straightforward references, for each implementation present (numpy; native if built)."""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import subprocess
import sys
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE, _kernels_py, kernels


def _implementations() -> list[ModuleType]:
    found = [_kernels_py]
    with contextlib.suppress(ImportError):
        found.append(importlib.import_module("mediabot.audio._native"))
    return found


@pytest.fixture(params=_implementations(), ids=lambda module: module.__name__.rsplit(".", 1)[-1])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return request.param  # type: ignore[no-any-return]


int16_arrays = hnp.arrays(np.int16, st.integers(0, 64), elements=st.integers(-32768, 32767))


def _sine(frequency: float, amplitude: float, n: int = FRAME_SAMPLES, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * frequency * t + phase)).astype(np.int16)


# -- selection ---------------------------------------------------------------------------------------------------------


def test_selection_is_visible_and_exports_the_twin_without_native() -> None:
    assert kernels.IMPLEMENTATION in ("numpy", "native")
    if kernels.IMPLEMENTATION == "numpy":
        assert kernels.downmix is _kernels_py.downmix
        assert kernels.goertzel_power is _kernels_py.goertzel_power
    assert kernels.GoertzelBank is _kernels_py.GoertzelBank


def test_no_native_switch_forces_numpy() -> None:
    code = "from mediabot.audio import kernels; print(kernels.IMPLEMENTATION)"
    env = {**os.environ, "MEDIABOT_NO_NATIVE": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "numpy"


def test_all_names_exist() -> None:
    for name in kernels.__all__:
        assert hasattr(kernels, name), name


# -- downmix -----------------------------------------------------------------------------------------------------------


def _downmix_reference(interleaved: np.ndarray, channels: int) -> np.ndarray:
    frames = interleaved.astype(np.int64).reshape(-1, channels)
    return np.array([math.floor((sum(f) + channels // 2) / channels) for f in frames], np.int16)


def test_downmix_stereo_rounds_ties_up(impl: ModuleType) -> None:
    stereo = np.array([1, 2, -1, -2, 32767, 32767, -32768, -32768, 32767, -32768, 3, 4], np.int16)
    assert impl.downmix(stereo, 2).tolist() == [2, -1, 32767, -32768, 0, 4]


def test_downmix_mono_is_a_copy(impl: ModuleType) -> None:
    mono = np.array([5, -7, 9], np.int16)
    out = impl.downmix(mono, 1)
    assert out.tolist() == [5, -7, 9]
    out[0] = 0
    assert mono[0] == 5


@settings(max_examples=100, deadline=None)
@given(data=st.data(), channels=st.integers(1, 6))
def test_downmix_matches_reference(data: st.DataObject, channels: int) -> None:
    frames = data.draw(st.integers(0, 40))
    interleaved = data.draw(hnp.arrays(np.int16, frames * channels, elements=st.integers(-32768, 32767)))
    for module in _implementations():
        assert np.array_equal(module.downmix(interleaved, channels), _downmix_reference(interleaved, channels))


def test_downmix_writes_into_reused_out(impl: ModuleType) -> None:
    out = np.full(3, 99, np.int16)
    first = impl.downmix(np.array([0, 2, 4, 6, 8, 10], np.int16), 2, out=out)
    assert first is out
    assert out.tolist() == [1, 5, 9]
    impl.downmix(np.array([-3, -3, 7, 8, 1, 0], np.int16), 2, out=out)
    assert out.tolist() == [-3, 8, 1]


def test_downmix_into_a_view_of_a_larger_buffer(impl: ModuleType) -> None:
    buffer = np.zeros(10, np.int16)
    impl.downmix(np.array([10, 20, 30, 40], np.int16), 2, out=buffer[:2])
    assert buffer.tolist() == [15, 35, 0, 0, 0, 0, 0, 0, 0, 0]


def test_downmix_empty(impl: ModuleType) -> None:
    assert impl.downmix(np.zeros(0, np.int16), 2).shape == (0,)


@pytest.mark.parametrize(
    ("interleaved", "channels", "out"),
    [
        (np.zeros(5, np.int16), 2, None),  # odd length for stereo
        (np.zeros(4, np.int16), 0, None),
        (np.zeros(4, np.int32), 2, None),
        (np.zeros((2, 2), np.int16), 2, None),
        (np.zeros(4, np.int16), 2, np.zeros(3, np.int16)),
        (np.zeros(4, np.int16), 2, np.zeros(2, np.int32)),
    ],
)
def test_downmix_rejects_bad_arguments(
    impl: ModuleType, interleaved: np.ndarray, channels: int, out: np.ndarray | None
) -> None:
    with pytest.raises(ValueError):
        impl.downmix(interleaved, channels, out=out)


# -- mix ---------------------------------------------------------------------------------------------------------------


def test_mix_saturates_both_ways(impl: ModuleType) -> None:
    a = np.array([30000, -30000, 100, 32767, -32768], np.int16)
    b = np.array([30000, -30000, -50, 1, -1], np.int16)
    out = np.empty(5, np.int16)
    assert impl.mix_saturating([a, b], out) is out
    assert out.tolist() == [32767, -32768, 50, 32767, -32768]


def test_mix_sums_in_int32_before_clipping(impl: ModuleType) -> None:
    # 30000 + 30000 - 30000 = 30000: an int16 accumulator clipping at each step would give 2767.
    a = np.array([30000], np.int16)
    b = np.array([30000], np.int16)
    c = np.array([-30000], np.int16)
    assert impl.mix_saturating([a, b, c], np.empty(1, np.int16)).tolist() == [30000]


def test_mix_of_nothing_is_silence_and_one_track_is_a_copy(impl: ModuleType) -> None:
    out = np.full(4, 7, np.int16)
    assert impl.mix_saturating([], out).tolist() == [0, 0, 0, 0]
    track = np.array([1, -2, 3, -4], np.int16)
    assert impl.mix_saturating([track], out).tolist() == [1, -2, 3, -4]
    assert out is not track


def test_mix_rejects_length_mismatch(impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        impl.mix_saturating([np.zeros(3, np.int16)], np.zeros(4, np.int16))
    with pytest.raises(ValueError):
        impl.mix_saturating([np.zeros(4, np.float32)], np.zeros(4, np.int16))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), count=st.integers(0, 5), length=st.integers(0, 50))
def test_mix_matches_reference(data: st.DataObject, count: int, length: int) -> None:
    tracks = [data.draw(hnp.arrays(np.int16, length, elements=st.integers(-32768, 32767))) for _ in range(count)]
    expected = [max(-32768, min(32767, sum(int(t[i]) for t in tracks))) for i in range(length)]
    for module in _implementations():
        assert module.mix_saturating(tracks, np.empty(length, np.int16)).tolist() == expected


# -- level -------------------------------------------------------------------------------------------------------------


def test_level_of_full_scale_sine(impl: ModuleType) -> None:
    sine = _sine(1000.0, 1.0)  # 20 whole cycles in 20 ms
    assert impl.level_dbfs(sine) == pytest.approx(-3.0103, abs=0.01)


def test_level_of_square_wave_and_half_scale(impl: ModuleType) -> None:
    square = np.tile(np.array([-32768, -32768], np.int16), 160)
    assert impl.level_dbfs(square) == pytest.approx(0.0)
    assert impl.level_dbfs(_sine(500.0, 0.5)) == pytest.approx(-3.0103 - 6.0206, abs=0.01)


def test_level_of_silence_and_empty_is_the_floor(impl: ModuleType) -> None:
    assert impl.level_dbfs(np.zeros(FRAME_SAMPLES, np.int16)) == impl.LEVEL_FLOOR_DBFS == -120.0
    assert impl.level_dbfs(np.zeros(0, np.int16)) == -120.0
    one_lsb = np.zeros(FRAME_SAMPLES, np.int16)
    one_lsb[0] = 1
    assert impl.level_dbfs(one_lsb) == pytest.approx(20 * math.log10(1 / 32768) - 10 * math.log10(FRAME_SAMPLES))


@settings(max_examples=100, deadline=None)
@given(frame=int16_arrays)
def test_level_matches_reference(frame: np.ndarray) -> None:
    mean_square = sum(int(s) ** 2 for s in frame) / len(frame) if len(frame) else 0
    expected = 10 * math.log10(mean_square / 32768**2) if mean_square else -120.0
    for module in _implementations():
        assert module.level_dbfs(frame) == pytest.approx(max(expected, -120.0), abs=1e-9)


# -- Goertzel ----------------------------------------------------------------------------------------------------------


def _goertzel_reference(frame: np.ndarray, frequency: float, sample_rate: int) -> float:
    """The classic Goertzel recurrence, one sample at a time, scaled to mean-square units."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / sample_rate)
    s1 = s2 = 0.0
    for sample in frame.tolist():
        s1, s2 = sample / 32768 + coefficient * s1 - s2, s1
    omega = 2 * math.pi * frequency / sample_rate
    real = s1 * math.cos(omega) - s2
    imag = s1 * math.sin(omega)
    return (real * real + imag * imag) * 2 / len(frame) ** 2


def test_goertzel_full_scale_sine_at_a_bank_frequency_is_half(impl: ModuleType) -> None:
    bank = kernels.GoertzelBank([1000.0, 1500.0, 3000.0], SAMPLE_RATE, FRAME_SAMPLES)
    power = impl.goertzel_power(_sine(1500.0, 1.0, phase=0.7), bank)
    assert power.dtype == np.float64
    assert power.shape == (3,)
    assert power[1] == pytest.approx(0.5, rel=1e-3)
    assert power[0] < 1e-6
    assert power[2] < 1e-6


def test_goertzel_dtmf_frequency_and_leakage(impl: ModuleType) -> None:
    bank = kernels.GoertzelBank([697.0, 770.0, 1209.0], SAMPLE_RATE, FRAME_SAMPLES)
    power = impl.goertzel_power(_sine(697.0, 0.5), bank)
    # Not a whole number of cycles in 20 ms: within the rectangular window's image term (a few percent).
    assert power[0] == pytest.approx(0.125, rel=0.05)
    assert power[1] < power[0] / 10  # the neighbouring row frequency leaks at least 10 dB down
    assert power[2] < power[0] / 1000


@settings(max_examples=50, deadline=None)
@given(frame=hnp.arrays(np.int16, 160, elements=st.integers(-32768, 32767)))
def test_goertzel_matches_the_recurrence(frame: np.ndarray) -> None:
    frequencies = [697.0, 941.0, 1633.0, 3999.0]
    bank = kernels.GoertzelBank(frequencies, 8000, 160)
    expected = [_goertzel_reference(frame, f, 8000) for f in frequencies]
    for module in _implementations():
        assert module.goertzel_power(frame, bank) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_goertzel_out_buffer_is_reused(impl: ModuleType) -> None:
    bank = kernels.GoertzelBank([1000.0], SAMPLE_RATE, FRAME_SAMPLES)
    out = np.full(1, -1.0)
    assert impl.goertzel_power(_sine(1000.0, 1.0), bank, out=out) is out
    assert out[0] == pytest.approx(0.5, rel=1e-3)
    impl.goertzel_power(np.zeros(FRAME_SAMPLES, np.int16), bank, out=out)
    assert out[0] == 0.0


def test_goertzel_rejects_wrong_frame_length(impl: ModuleType) -> None:
    bank = kernels.GoertzelBank([1000.0], SAMPLE_RATE, FRAME_SAMPLES)
    with pytest.raises(ValueError):
        impl.goertzel_power(np.zeros(FRAME_SAMPLES + 1, np.int16), bank)


@pytest.mark.parametrize(
    ("frequencies", "sample_rate", "block"),
    [([], 16000, 320), ([8000.0], 16000, 320), ([0.0], 16000, 320), ([100.0], 16000, 0), ([100.0], 0, 320)],
)
def test_goertzel_bank_validates(frequencies: list[float], sample_rate: int, block: int) -> None:
    with pytest.raises(ValueError):
        kernels.GoertzelBank(frequencies, sample_rate, block)


def test_goertzel_bank_matrix_is_read_only() -> None:
    bank = kernels.GoertzelBank([1000.0, 2000.0], SAMPLE_RATE, FRAME_SAMPLES)
    assert bank.matrix.shape == (4, FRAME_SAMPLES)
    with pytest.raises(ValueError):
        bank.matrix[0, 0] = 1.0


# -- float conversion --------------------------------------------------------------------------------------------------


def test_to_float_range_and_exactness(impl: ModuleType) -> None:
    samples = np.array([-32768, -1, 0, 1, 16384, 32767], np.int16)
    floats = impl.to_float(samples)
    assert floats.dtype == np.float32
    assert floats.tolist() == [-1.0, -1 / 32768, 0.0, 1 / 32768, 0.5, 32767 / 32768]


def test_to_int16_saturates_and_rounds(impl: ModuleType) -> None:
    floats = np.array([-2.0, -1.0, 0.99999, 1.0, 5.0, 0.5 / 32768, 1.5 / 32768, np.nan, np.inf, -np.inf], np.float32)
    assert impl.to_int16(floats).tolist() == [-32768, -32768, 32767, 32767, 32767, 0, 2, 0, 32767, -32768]


def test_float_conversions_into_out(impl: ModuleType) -> None:
    samples = np.array([100, -200, 300], np.int16)
    floats = np.empty(3, np.float32)
    assert impl.to_float(samples, out=floats) is floats
    back = np.empty(3, np.int16)
    assert impl.to_int16(floats, out=back) is back
    assert back.tolist() == [100, -200, 300]


def test_float_conversions_reject_wrong_types(impl: ModuleType) -> None:
    with pytest.raises(ValueError):
        impl.to_float(np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        impl.to_int16(np.zeros(3, np.float64))
    with pytest.raises(ValueError):
        impl.to_float(np.zeros(3, np.int16), out=np.zeros(2, np.float32))


@settings(max_examples=100, deadline=None)
@given(frame=int16_arrays)
def test_int16_round_trips_through_float(frame: np.ndarray) -> None:
    for module in _implementations():
        assert np.array_equal(module.to_int16(module.to_float(frame)), frame)


@settings(max_examples=100, deadline=None)
@given(floats=hnp.arrays(np.float32, st.integers(0, 40), elements=st.floats(-4, 4, width=32)))
def test_to_int16_matches_reference(floats: np.ndarray) -> None:
    expected = [max(-32768, min(32767, round(float(x) * 32768))) for x in floats]  # round(): half to even, too
    for module in _implementations():
        assert module.to_int16(floats).tolist() == expected
