"""The audio kernels against straightforward references, for each implementation (numpy; native if built).

The native module is skipped when it did not build, unless ``MEDIABOT_REQUIRE_NATIVE=1`` (CI), which makes its absence
a failure.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE, _kernels_py, kernels

ROOT = Path(__file__).resolve().parents[2]
REQUIRE_NATIVE = os.environ.get("MEDIABOT_REQUIRE_NATIVE") == "1"


def _load_native() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("mediabot.audio._native"), ""
    except ImportError as exc:
        return None, f"mediabot.audio._native is not built ({exc}): build it with `pip install -e .`"


NATIVE, NATIVE_MISSING = _load_native()


def _native_or_skip() -> ModuleType:
    if NATIVE is None:
        if REQUIRE_NATIVE:
            pytest.fail(f"MEDIABOT_REQUIRE_NATIVE=1 but {NATIVE_MISSING}")
        pytest.skip(NATIVE_MISSING)
    return NATIVE


def _implementations() -> list[ModuleType]:
    return [_kernels_py] if NATIVE is None else [_kernels_py, NATIVE]


@pytest.fixture(params=["numpy", "native"])
def impl(request: pytest.FixtureRequest) -> ModuleType:
    return _kernels_py if request.param == "numpy" else _native_or_skip()


@pytest.fixture(scope="module")
def native() -> ModuleType:
    return _native_or_skip()


int16_arrays = hnp.arrays(np.int16, st.integers(0, 64), elements=st.integers(-32768, 32767))


def _sine(frequency: float, amplitude: float, n: int = FRAME_SAMPLES, phase: float = 0.0) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * frequency * t + phase)).astype(np.int16)


# -- selection ---------------------------------------------------------------------------------------------------------


def test_selection_is_visible_and_exports_the_twin_without_native() -> None:
    assert kernels.IMPLEMENTATION in ("numpy", "native")
    chosen = _kernels_py if kernels.IMPLEMENTATION == "numpy" else NATIVE
    assert chosen is not None
    assert kernels.downmix is chosen.downmix
    assert kernels.goertzel_power is chosen.goertzel_power
    assert kernels.Decimator is chosen.Decimator
    assert kernels.GoertzelBank is _kernels_py.GoertzelBank


def test_native_is_built_when_required() -> None:
    if not REQUIRE_NATIVE:
        pytest.skip("MEDIABOT_REQUIRE_NATIVE is not set")
    assert NATIVE is not None, NATIVE_MISSING


def _import_kernels(env_update: dict[str, str | None], prelude: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    for key, value in env_update.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    code = (
        "import logging\n"
        "logging.basicConfig(format='%(levelname)s %(name)s %(message)s')\n"
        f"{prelude}"
        "from mediabot.audio import kernels\n"
        "print(kernels.IMPLEMENTATION)\n"
    )
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


def test_no_native_switch_forces_numpy_quietly() -> None:
    result = _import_kernels({"MEDIABOT_NO_NATIVE": "1"})
    assert result.stdout.strip() == "numpy"
    assert "WARNING" not in result.stderr


def test_native_is_the_default_when_built() -> None:
    result = _import_kernels({"MEDIABOT_NO_NATIVE": None})
    assert result.stdout.strip() == ("numpy" if NATIVE is None else "native")


_BLOCK_NATIVE = """
import importlib.abc, sys
class _NoNative(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mediabot.audio._native":
            raise ImportError("blocked by the test")
        return None
sys.meta_path.insert(0, _NoNative())
"""


def test_missing_native_falls_back_loudly() -> None:
    result = _import_kernels({"MEDIABOT_NO_NATIVE": None}, prelude=_BLOCK_NATIVE)
    assert result.stdout.strip() == "numpy"
    assert "WARNING mediabot.audio.kernels native audio kernels unavailable (blocked by the test)" in result.stderr
    assert "pip install -e ." in result.stderr


def test_all_names_exist() -> None:
    for name in kernels.__all__:
        assert hasattr(kernels, name), name


def test_native_has_every_kernel_with_the_same_parameters(native: ModuleType) -> None:
    for name in _kernels_py.__all__:
        if name == "GoertzelBank":  # shared: the twin's class is the only one
            continue
        twin, ours = getattr(_kernels_py, name), getattr(native, name)
        if callable(twin) and not isinstance(twin, type):
            assert list(inspect.signature(ours).parameters) == list(inspect.signature(twin).parameters), name
        elif not callable(twin):
            assert ours == twin, name
    for method in ("process", "flush", "reset", "max_output"):
        twin_method = getattr(_kernels_py.Decimator, method)
        ours_method = getattr(native.Decimator, method)
        twin_names = [p for p in inspect.signature(twin_method).parameters if p != "self"]
        ours_names = [p for p in inspect.signature(ours_method).parameters if p != "self"]
        assert ours_names == twin_names, method
    assert native.Decimator.delay == _kernels_py.Decimator.delay


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


# -- strided arrays ----------------------------------------------------------------------------------------------------


def test_strided_views_in_and_out(impl: ModuleType) -> None:
    base = np.arange(-20, 20, dtype=np.int16) * 97
    strided = base[::2]  # not contiguous: the native module copies it
    assert not strided.flags.c_contiguous
    assert np.array_equal(impl.downmix(strided, 2), impl.downmix(strided.copy(), 2))
    assert impl.level_dbfs(strided) == impl.level_dbfs(strided.copy())
    out = np.zeros(40, np.float32)
    impl.to_float(strided, out=out[::2])
    assert np.array_equal(out[::2], strided / np.float32(32768))
    assert not out[1::2].any()
    backwards = np.zeros(20, np.int16)[::-1]
    impl.mix_saturating([strided, strided[::-1]], backwards)
    assert np.array_equal(backwards, strided + strided[::-1])


# -- native vs numpy ---------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), channels=st.integers(1, 6), frames=st.integers(0, 400))
def test_parity_integer_kernels(native: ModuleType, data: st.DataObject, channels: int, frames: int) -> None:
    interleaved = data.draw(hnp.arrays(np.int16, frames * channels, elements=st.integers(-32768, 32767)))
    assert np.array_equal(native.downmix(interleaved, channels), _kernels_py.downmix(interleaved, channels))
    tracks = [interleaved[c::channels] for c in range(channels)]
    assert np.array_equal(
        native.mix_saturating(tracks, np.empty(frames, np.int16)),
        _kernels_py.mix_saturating(tracks, np.empty(frames, np.int16)),
    )
    assert native.level_dbfs(interleaved) == _kernels_py.level_dbfs(interleaved)  # both sum exactly
    assert np.array_equal(native.to_float(interleaved), _kernels_py.to_float(interleaved))


@settings(max_examples=60, deadline=None)
@given(
    floats=hnp.arrays(
        np.float32,
        st.integers(0, 300),
        elements=st.floats(-(2.0**100), 2.0**100, width=32) | st.sampled_from([math.nan, math.inf, -math.inf]),
    )
)
def test_parity_to_int16(native: ModuleType, floats: np.ndarray) -> None:
    assert np.array_equal(native.to_int16(floats), _kernels_py.to_int16(floats))


@settings(max_examples=40, deadline=None)
@given(frame=hnp.arrays(np.int16, FRAME_SAMPLES, elements=st.integers(-32768, 32767)))
def test_parity_goertzel(native: ModuleType, frame: np.ndarray) -> None:
    bank = kernels.GoertzelBank(
        [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0], SAMPLE_RATE, FRAME_SAMPLES
    )
    assert native.goertzel_power(frame, bank) == pytest.approx(
        _kernels_py.goertzel_power(frame, bank), rel=1e-9, abs=1e-14
    )


@settings(max_examples=40, deadline=None)
@given(data=st.data(), channels=st.sampled_from([1, 2]), frames=st.integers(0, 3000))
def test_parity_decimator_within_one_lsb(native: ModuleType, data: st.DataObject, channels: int, frames: int) -> None:
    samples = data.draw(hnp.arrays(np.int16, frames * channels, elements=st.integers(-32768, 32767)))
    ours = native.Decimator(channels).process(samples)
    twin = _kernels_py.Decimator(channels).process(samples)
    assert ours.shape == twin.shape
    assert np.abs(ours.astype(np.int32) - twin).max(initial=0) <= 1


def test_parity_decimator_on_noise_mostly_exact(native: ModuleType) -> None:
    samples = np.random.default_rng(7).integers(-32768, 32768, 2 * 48_000, dtype=np.int16)
    ours = native.Decimator(2).process(samples)
    twin = _kernels_py.Decimator(2).process(samples)
    difference = np.abs(ours.astype(np.int32) - twin)
    assert difference.max() <= 1
    assert np.count_nonzero(difference) < ours.size // 100  # float32 sums are off by < 0.5 LSB: rare rounding flips


# -- decimator ---------------------------------------------------------------------------------------------------------

DELAY = _kernels_py.Decimator.delay
INPUT_RATE = 48_000


def _decimate_exactly(samples: np.ndarray, channels: int) -> np.ndarray:
    """The decimator's definition in integers: y[k] = round_half_even(sum_j taps[j] x[3k - j]), saturated."""
    units = np.rint(_kernels_py.decimator_taps().astype(np.float64) * 2**30).astype(np.int64)
    if channels == 2:
        signal, shift = samples[0::2].astype(np.int64) + samples[1::2], 31  # the mean, in half units
    else:
        signal, shift = samples.astype(np.int64), 30
    if signal.size == 0:
        return np.zeros(0, np.int16)
    total = np.convolve(signal, units)[: signal.size][::3]  # exact: int64, no BLAS
    floor = total >> shift
    rest = total - (floor << shift)
    half = 1 << (shift - 1)
    rounded = floor + (rest > half) + ((rest == half) & (floor % 2 == 1))
    return np.clip(rounded, -32768, 32767).astype(np.int16)


def _tone(frequency: float, amplitude: float, frames: int, channels: int = 1) -> np.ndarray:
    wave = np.rint(amplitude * 32767 * np.sin(2 * np.pi * frequency * np.arange(frames) / INPUT_RATE))
    return np.repeat(wave.astype(np.int16), channels)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_decimator_taps_meet_the_design() -> None:
    taps = _kernels_py.decimator_taps()
    assert taps.dtype == np.float32
    assert taps.shape == (6 * DELAY + 1,)
    assert np.array_equal(taps, _kernels_py.decimator_taps())  # deterministic
    assert np.array_equal(taps, taps[::-1])  # linear phase
    units = taps.astype(np.float64) * 2**30
    assert np.array_equal(units, np.round(units))  # on the 2**-30 grid the exactness argument needs
    assert float(np.sum(taps, dtype=np.float64)) == pytest.approx(1.0, abs=1e-6)
    response = np.abs(np.fft.rfft(taps.astype(np.float64), 1 << 16))
    frequencies = np.fft.rfftfreq(1 << 16, 1 / INPUT_RATE)
    passband = 20 * np.log10(response[frequencies <= 7000])
    assert passband.max() - passband.min() < 0.1
    assert 20 * np.log10(response[frequencies >= 8000].max()) <= -80


def test_decimator_header_matches_the_taps() -> None:
    generator = runpy.run_path(str(ROOT / "native" / "gen_decimator_taps.py"))
    header = (ROOT / "native" / "decimator_taps.h").read_text()
    assert header == generator["render"](), "native/decimator_taps.h is stale: run native/gen_decimator_taps.py"


def test_decimator_impulse_response_is_the_taps(impl: ModuleType) -> None:
    # Output k is the filter at input sample 3k, from zero history: an impulse at 0 gives taps 0, 3, 6, …
    impulse = np.zeros(300, np.int16)
    impulse[0] = 32767
    decimator = impl.Decimator(1)
    response = np.concatenate([decimator.process(impulse), decimator.flush()]).astype(np.int32)
    expected = np.rint(_kernels_py.decimator_taps().astype(np.float64)[0::3] * 32767).astype(np.int32)
    assert response.size == 100 + DELAY
    assert np.abs(response[: expected.size] - expected).max() <= (0 if impl is _kernels_py else 1)
    assert not response[expected.size :].any()
    assert np.argmax(response) == DELAY  # the centre tap: output delay lags input 0


@settings(max_examples=40, deadline=None)
@given(data=st.data(), channels=st.sampled_from([1, 2]), frames=st.integers(0, 1500))
def test_decimator_matches_its_exact_definition(data: st.DataObject, channels: int, frames: int) -> None:
    samples = data.draw(hnp.arrays(np.int16, frames * channels, elements=st.integers(-32768, 32767)))
    expected = _decimate_exactly(samples, channels).astype(np.int32)
    for module in _implementations():
        result = module.Decimator(channels).process(samples)
        tolerance = 0 if module is _kernels_py else 1
        assert result.shape == expected.shape
        assert np.abs(result - expected).max(initial=0) <= tolerance, module.__name__


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    channels=st.sampled_from([1, 2]),
    frames=st.integers(0, 2000),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_decimator_chunking_changes_nothing(data: st.DataObject, channels: int, frames: int, cuts: list[int]) -> None:
    samples = data.draw(hnp.arrays(np.int16, frames * channels, elements=st.integers(-32768, 32767)))
    bounds = [0, *sorted(min(cut, frames) for cut in cuts), frames]
    for module in _implementations():
        whole = module.Decimator(channels).process(samples)
        decimator = module.Decimator(channels)
        pieces = []
        for start, stop in itertools.pairwise(bounds):
            piece = decimator.process(samples[start * channels : stop * channels])
            assert piece.size <= module.Decimator.max_output(stop - start)
            pieces.append(piece)
        assert np.array_equal(np.concatenate(pieces), whole), module.__name__
        assert whole.size == -(-frames // 3)


def test_decimator_state_carries_across_frames(impl: ModuleType) -> None:
    samples = _tone(440.0, 0.8, 4800, channels=2)
    whole = impl.Decimator(2).process(samples)
    decimator = impl.Decimator(2)
    # 20 ms frames, then odd sizes that move the decimation phase: the same output either way.
    sizes = [960, 960, 1, 2, 1, 500, 377, 999]
    sizes.append(4800 - sum(sizes))
    pieces, start = [], 0
    for size in sizes:
        pieces.append(decimator.process(samples[2 * start : 2 * (start + size)]))
        start += size
    assert np.array_equal(np.concatenate(pieces), whole)


@pytest.mark.parametrize("channels", [1, 2])
def test_decimator_passes_1khz_at_unit_gain_and_its_delay(impl: ModuleType, channels: int) -> None:
    frames = INPUT_RATE // 2
    decimator = impl.Decimator(channels)
    output = decimator.process(_tone(1000.0, 0.5, frames, channels)).astype(np.float64)
    k = np.arange(output.size)
    settled = slice(4 * DELAY, None)  # past the filter's start-up transient

    def expected(delay: int) -> np.ndarray:
        return 0.5 * 32767 * np.sin(2 * np.pi * 1000.0 * 3 * (k - delay) / INPUT_RATE)

    gain_db = 20 * math.log10(_rms(output[settled]) / _rms(expected(DELAY)[settled]))
    assert abs(gain_db) < 0.1
    assert np.abs(output - expected(DELAY))[settled].max() < 0.005 * 32767  # in phase at exactly `delay`
    assert np.abs(output - expected(DELAY + 1))[settled].max() > 0.1 * 32767  # (one sample off is far worse)


@pytest.mark.parametrize("frequency", [8500.0, 9000.0, 12000.0, 16000.0, 20000.0])
def test_decimator_rejects_what_would_alias(impl: ModuleType, frequency: float) -> None:
    tone = _tone(frequency, 0.9, INPUT_RATE // 2)
    output = impl.Decimator(1).process(tone)
    settled = output[4 * DELAY :]  # past the start-up transient
    assert _rms(settled) <= _rms(tone) * 10 ** (-80 / 20)  # (most of these round to silence: >= ~96 dB down)


def test_decimator_stereo_is_the_mean_fused_in(impl: ModuleType) -> None:
    left = _tone(700.0, 0.6, 9600)
    stereo_same = np.repeat(left, 2)
    assert np.array_equal(impl.Decimator(2).process(stereo_same), impl.Decimator(1).process(left))
    opposite = np.empty(2 * left.size, np.int16)
    opposite[0::2] = left
    opposite[1::2] = -left
    assert not impl.Decimator(2).process(opposite).any()


def test_decimator_flush_drains_and_resets(impl: ModuleType) -> None:
    samples = _tone(300.0, 0.5, 1000)
    decimator = impl.Decimator(1)
    head = decimator.process(samples)
    tail = decimator.flush()
    assert tail.shape == (DELAY,)
    assert tail.any()  # the delayed end of the tone
    # Drained: every input sample 3k is represented at output k + delay.
    assert head.size + tail.size == -(-samples.size // 3) + DELAY
    assert np.array_equal(
        np.concatenate([head, tail]),
        impl.Decimator(1).process(np.concatenate([samples, np.zeros(3 * DELAY, np.int16)])),
    )
    # flush() leaves a fresh decimator behind.
    assert np.array_equal(decimator.process(samples), head)


def test_decimator_reset_forgets_history_and_phase(impl: ModuleType) -> None:
    samples = _tone(1200.0, 0.7, 1001, channels=2)
    decimator = impl.Decimator(2)
    decimator.process(samples[:16])  # 8 frames: output 2 done, the next one's first sample pending
    decimator.reset()
    assert np.array_equal(decimator.process(samples), impl.Decimator(2).process(samples))


def test_decimator_writes_into_out(impl: ModuleType) -> None:
    samples = _tone(500.0, 0.5, 960, channels=2)
    expected = impl.Decimator(2).process(samples)
    decimator = impl.Decimator(2)
    exact = np.zeros(impl.Decimator.max_output(960), np.int16)
    assert decimator.process(samples, out=exact) is exact  # exactly max_output: out itself
    assert np.array_equal(exact, expected)
    roomy = np.full(1000, 7, np.int16)
    result = decimator.process(samples[:10], out=roomy)
    assert result.size == 2  # 960 frames left 2 pending: 5 more complete 2 outputs
    assert np.shares_memory(result, roomy)
    assert (roomy[result.size :] == 7).all()


def test_decimator_sizes_and_constants(impl: ModuleType) -> None:
    assert impl.Decimator.delay == DELAY == 38
    assert [impl.Decimator.max_output(n) for n in (0, 1, 2, 3, 4, 960)] == [0, 1, 1, 1, 2, 320]
    decimator = impl.Decimator(2)
    assert decimator.channels == 2
    assert decimator.delay == DELAY
    assert decimator.process(np.zeros(0, np.int16)).shape == (0,)
    # Output k needs input 3k: after the first sample, one output per three.
    assert [decimator.process(np.zeros(2 * n, np.int16)).size for n in (1, 1, 1, 1, 2, 3, 4)] == [1, 0, 0, 1, 0, 1, 2]


@pytest.mark.parametrize(
    ("channels", "samples", "out"),
    [
        (2, np.zeros(5, np.int16), None),  # not whole stereo frames
        (1, np.zeros(6, np.int32), None),
        (1, np.zeros((2, 3), np.int16), None),
        (1, [0, 0, 0], None),
        (1, np.zeros(6, np.int16), np.zeros(1, np.int16)),  # max_output(6) is 2
        (1, np.zeros(6, np.int16), np.zeros(2, np.float32)),
        (1, np.zeros(6, np.int16), np.zeros(2, np.int16)[:0]),
    ],
)
def test_decimator_rejects_bad_arguments(impl: ModuleType, channels: int, samples: object, out: object) -> None:
    decimator = impl.Decimator(channels)
    with pytest.raises(ValueError):
        decimator.process(samples, out=out)


@pytest.mark.parametrize("channels", [0, 3, -1])
def test_decimator_takes_one_or_two_channels(impl: ModuleType, channels: int) -> None:
    with pytest.raises(ValueError):
        impl.Decimator(channels)
    with pytest.raises(ValueError):
        impl.Decimator.max_output(-1)


def test_decimator_read_only_out_is_rejected(impl: ModuleType) -> None:
    out = np.zeros(4, np.int16)
    out.setflags(write=False)
    with pytest.raises(ValueError):
        impl.Decimator(1).process(np.zeros(6, np.int16), out=out)
