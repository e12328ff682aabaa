"""µs per 20 ms frame of the hot audio kernels: native vs numpy twin, against soxr, PyAV, and the two VADs.

Each figure is the median over many repeats (timeit-style: a warm-up, then ``repeat`` timings of ``number`` calls,
``number`` chosen so one timing lasts a few ms) divided by ``number``; the kernels are timed round robin, one timing
of each per round, so load on the machine shifting during the run does not skew one against another. Inputs are
preallocated and ``out=`` buffers are used where the API has them, as the media pipeline does.

Resampling is 48 kHz → 16 kHz mono, per 20 ms frame (960 input samples per channel); the stereo variant ends in mono
too (aiortc's Opus decoder gives 48 kHz stereo, the call timeline is 16 kHz mono): the decimators take it as it is,
soxr gets a native/numpy downmix first (cheaper than resampling two channels), PyAV's resampler downmixes itself.
PyAV's figure includes wrapping the array in an ``AudioFrame`` and reading the result back (array in, array out, like
the others).
"""

from __future__ import annotations

import gc
import importlib
import statistics
import timeit
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from benchmarks._report import Result, main
from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE, _kernels_py
from mediabot.audio.kernels import GoertzelBank
from mediabot.media.dtmf import COLUMN_FREQUENCIES, ROW_FREQUENCIES
from mediabot.media.vad import create_vad

INPUT_RATE = 48_000
INPUT_FRAME = INPUT_RATE * FRAME_SAMPLES // SAMPLE_RATE  # 960 samples per channel per 20 ms
FRAME_US = 20_000.0
SPEECH = Path(__file__).resolve().parent.parent / "mediabot" / "sandbox" / "scenarios" / "alex-wilber.wav"
NATIVE_TARGET_US = 5.0
VAD = "VAD (per 20 ms)"


@dataclass(frozen=True)
class Timing:
    """How hard to time: repeats, the minimum length of one timing, and the warm-up."""

    repeat: int
    min_time_s: float
    warmup_s: float


FULL = Timing(repeat=41, min_time_s=0.02, warmup_s=0.05)
QUICK = Timing(repeat=9, min_time_s=0.005, warmup_s=0.01)


def calibrate(timer: timeit.Timer, timing: Timing, multiple: int = 1) -> int:
    """Calls per timing so one lasts at least ``min_time_s`` (a multiple of ``multiple``); warms up on the way."""
    number = multiple
    while timer.timeit(number) < timing.min_time_s:
        number *= 2
    warm = 0.0
    while warm < timing.warmup_s:
        warm += timer.timeit(number)
    return number


def measure_all(fns: Sequence[tuple[Callable[[], object], int]], timing: Timing) -> list[float]:
    """Median µs per call of each ``(fn, multiple)``, timed round robin (``repeat`` rounds, each times every fn once).

    Round robin, so a change in the machine's load during the run hits every kernel alike and the ratios hold.
    """
    timers = [timeit.Timer(fn) for fn, _ in fns]
    numbers = [calibrate(timer, timing, multiple) for timer, (_, multiple) in zip(timers, fns, strict=True)]
    times: list[list[float]] = [[] for _ in fns]
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(timing.repeat):
            for index, (timer, number) in enumerate(zip(timers, numbers, strict=True)):
                times[index].append(timer.timeit(number) / number)
    finally:
        if enabled:
            gc.enable()
    return [statistics.median(samples) * 1e6 for samples in times]


def _native() -> tuple[ModuleType | None, str]:
    try:
        return importlib.import_module("mediabot.audio._native"), ""
    except ImportError as exc:
        return None, f"mediabot.audio._native is not built ({exc})"


def _speech() -> npt.NDArray[np.int16]:
    with wave.open(str(SPEECH), "rb") as clip:
        if clip.getframerate() != SAMPLE_RATE or clip.getnchannels() != 1 or clip.getsampwidth() != 2:
            raise ValueError(f"{SPEECH} is not 16 kHz mono int16")
        return np.frombuffer(clip.readframes(clip.getnframes()), np.int16).copy()


def _signal(samples: int, seed: int) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(0.0, 4000.0, samples), -32768, 32767).astype(np.int16)


class _Bench:
    """Collects the kernels to time, times them round robin, and keeps the rows and the numbers ratios use."""

    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self.rows: list[dict[str, Any]] = []
        self.us: dict[tuple[str, str], float | None] = {}
        self.notes: dict[str, str] = {}
        self._pending: list[tuple[dict[str, Any], Callable[[], object], int]] = []

    def add(self, kernel: str, implementation: str, fn: Callable[[], object] | None, note: str = "", **kw: int) -> None:
        row: dict[str, Any] = {
            "kernel": kernel,
            "implementation": implementation,
            "us_per_frame": None,
            "x_realtime": None,
            "note": note,
        }
        self.rows.append(row)
        self.us[kernel, implementation] = None
        if fn is None:
            self.notes.setdefault(f"{kernel} / {implementation}", note)
        else:
            self._pending.append((row, fn, kw.get("multiple", 1)))

    def run(self) -> None:
        """Time everything added."""
        results = measure_all([(fn, multiple) for _, fn, multiple in self._pending], self.timing)
        for (row, _, _), us in zip(self._pending, results, strict=True):
            row["us_per_frame"] = us
            row["x_realtime"] = FRAME_US / us
            self.us[row["kernel"], row["implementation"]] = us
        self._pending.clear()

    def ratio(self, kernel: str, slow: str, fast: str) -> float | None:
        a, b = self.us.get((kernel, slow)), self.us.get((kernel, fast))
        return None if a is None or b is None else a / b


def _decimator_bench(bench: _Bench, kernel: str, channels: int, native: ModuleType | None, why: str) -> None:
    frame = _signal(INPUT_FRAME * channels, seed=channels)
    for implementation, module, missing in (("native", native, why), ("numpy", _kernels_py, "")):
        cls = getattr(module, "Decimator", None) if module is not None else None
        if cls is None:
            reason = missing or f"{getattr(module, '__name__', '?')}.Decimator does not exist"
            bench.notes[f"{kernel} / {implementation}"] = reason
            bench.add(kernel, implementation, None, "n/a: not built" if missing else "n/a: no Decimator")
            continue
        decimator: Any = cls(channels)
        out = np.empty(cls.max_output(INPUT_FRAME), np.int16)

        def process(d: Any = decimator, o: npt.NDArray[np.int16] = out) -> object:
            return d.process(frame, out=o)

        bench.add(kernel, implementation, process)


def _soxr_bench(bench: _Bench, kernel: str, channels: int, downmix: Callable[..., Any]) -> None:
    import soxr

    stream = soxr.ResampleStream(INPUT_RATE, SAMPLE_RATE, 1, dtype="int16", quality="HQ")
    frame = _signal(INPUT_FRAME * channels, seed=channels)
    if channels == 1:
        bench.add(kernel, "soxr HQ", lambda: stream.resample_chunk(frame))
        return
    mono = np.empty(INPUT_FRAME, np.int16)

    def run() -> object:
        downmix(frame, channels, out=mono)
        return stream.resample_chunk(mono)

    bench.add(kernel, "soxr HQ + downmix", run)


def _pyav_bench(bench: _Bench, kernel: str, channels: int) -> None:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    frame = _signal(INPUT_FRAME * channels, seed=channels).reshape(1, -1)
    layout = "mono" if channels == 1 else "stereo"

    def run() -> object:
        packet = av.AudioFrame.from_ndarray(frame, format="s16", layout=layout)
        packet.sample_rate = INPUT_RATE
        return [out.to_ndarray() for out in resampler.resample(packet)]

    bench.add(kernel, "PyAV (swresample)", run)


def _twin_bench(bench: _Bench, kernel: str, make: Callable[[ModuleType], Callable[[], object]], native: Any) -> None:
    for implementation, module in (("native", native), ("numpy", _kernels_py)):
        if module is None:
            bench.add(kernel, implementation, None, "n/a: not built")
        else:
            bench.add(kernel, implementation, make(module))


def _kernel_benches(bench: _Bench, native: ModuleType | None) -> None:
    stereo = _signal(INPUT_FRAME * 2, seed=3)
    mono48 = np.empty(INPUT_FRAME, np.int16)
    _twin_bench(bench, "downmix 48k stereo", lambda m: lambda: m.downmix(stereo, 2, out=mono48), native)

    tracks = [_signal(FRAME_SAMPLES, seed=10 + i) for i in range(4)]
    mixed = np.empty(FRAME_SAMPLES, np.int16)
    _twin_bench(bench, "mix_saturating x4", lambda m: lambda: m.mix_saturating(tracks, mixed), native)

    frame = _signal(FRAME_SAMPLES, seed=4)
    _twin_bench(bench, "level_dbfs", lambda m: lambda: m.level_dbfs(frame), native)

    dtmf = GoertzelBank(ROW_FREQUENCIES + COLUMN_FREQUENCIES, SAMPLE_RATE, FRAME_SAMPLES)
    power = np.empty(len(dtmf.frequencies), np.float64)
    _twin_bench(bench, "goertzel_power (DTMF, 8)", lambda m: lambda: m.goertzel_power(frame, dtmf, out=power), native)

    floats = np.empty(FRAME_SAMPLES, np.float32)
    _twin_bench(bench, "to_float", lambda m: lambda: m.to_float(frame, out=floats), native)
    samples = (frame / 32768.0).astype(np.float32)
    back = np.empty(FRAME_SAMPLES, np.int16)
    _twin_bench(bench, "to_int16", lambda m: lambda: m.to_int16(samples, out=back), native)


def _vad_benches(bench: _Bench) -> None:
    speech = _speech()
    count = speech.shape[0] // FRAME_SAMPLES
    frames = [speech[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(count)]
    backends: tuple[Literal["webrtc", "silero"], ...] = ("webrtc", "silero")
    for backend in backends:
        vad = create_vad(backend, 2)
        cursor = iter(range(0))

        def step(vad: Any = vad) -> float:
            nonlocal cursor
            index = next(cursor, None)
            if index is None:
                cursor = iter(range(count))
                index = next(cursor)
            return float(vad.speech_confidence(frames[index]))

        # Silero runs one 32 ms window per 1.6 frames: time whole cycles of 8 frames (5 windows).
        bench.add(VAD, backend, step, multiple=8)


def run(quick: bool = False) -> Result:
    """Time every kernel and return the rows, the native-vs-others ratios and the headline figures."""
    timing = QUICK if quick else FULL
    native, why = _native()
    down = native.downmix if native is not None else _kernels_py.downmix
    bench = _Bench(timing)
    for channels, label in ((1, "resample 48k→16k mono"), (2, "resample 48k→16k stereo→mono")):
        _decimator_bench(bench, label, channels, native, why)
        _soxr_bench(bench, label, channels, down)
        _pyav_bench(bench, label, channels)
    _kernel_benches(bench, native)
    _vad_benches(bench)
    bench.run()

    mono, stereo = "resample 48k→16k mono", "resample 48k→16k stereo→mono"
    wanted = {
        "resample_native_vs_soxr": bench.ratio(stereo, "soxr HQ + downmix", "native"),
        "resample_native_vs_soxr_mono": bench.ratio(mono, "soxr HQ", "native"),
        "resample_native_vs_numpy": bench.ratio(stereo, "numpy", "native"),
        "resample_native_vs_pyav": bench.ratio(stereo, "PyAV (swresample)", "native"),
        "goertzel_native_vs_numpy": bench.ratio("goertzel_power (DTMF, 8)", "numpy", "native"),
        "vad_silero_vs_webrtc": bench.ratio(VAD, "silero", "webrtc"),
    }
    ratios = {key: value for key, value in wanted.items() if value is not None}
    skipped = {key: why or "an input was not measured" for key, value in wanted.items() if value is None}
    figures = {
        "resample_native_stereo_us": bench.us.get((stereo, "native")),
        "resample_native_mono_us": bench.us.get((mono, "native")),
        "resample_native_target_us": NATIVE_TARGET_US,
        "resample_soxr_stereo_us": bench.us.get((stereo, "soxr HQ + downmix")),
        "resample_pyav_stereo_us": bench.us.get((stereo, "PyAV (swresample)")),
        "goertzel_native_us": bench.us.get(("goertzel_power (DTMF, 8)", "native")),
        "vad_webrtc_us": bench.us.get((VAD, "webrtc")),
        "vad_silero_us": bench.us.get((VAD, "silero")),
    }
    meta = {
        "timing": {"repeat": timing.repeat, "min_time_s": timing.min_time_s, "warmup_s": timing.warmup_s},
        "statistic": "median µs per call over the repeats",
        "frame": "20 ms: 960 samples/channel at 48 kHz in, 320 at 16 kHz",
        "native": "built" if native is not None else why,
        "skipped_ratios": skipped,
        "not_measured": bench.notes,
        "ratio_inputs": "resample ratios use the stereo→mono path (what aiortc's Opus decoder feeds); *_mono: mono",
        "vad": "webrtc: create_vad('webrtc', 2); silero: create_vad('silero'), 512-sample windows, per 20 ms frame",
    }
    return Result("kernels", quick, bench.rows, ratios, figures, meta)


def png(result: Result, path: Path) -> None:
    """Horizontal bars of µs per 20 ms frame (log scale), one per kernel and implementation."""
    import matplotlib.pyplot as plt

    rows = [row for row in result.table if row["us_per_frame"] is not None]
    labels = [f"{row['kernel']} · {row['implementation']}" for row in rows]
    values = [row["us_per_frame"] for row in rows]
    palette = {"native": "tab:green", "numpy": "tab:blue"}
    colors = [palette.get(row["implementation"], "tab:gray") for row in rows]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.5))
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("µs per 20 ms frame (log scale; lower is better)")
    ax.axvline(NATIVE_TARGET_US, color="tab:red", linestyle=":", linewidth=1, label=f"{NATIVE_TARGET_US:g} µs target")
    for index, value in enumerate(values):
        ax.text(value, index, f" {value:.3g}", va="center", fontsize=7)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"mediabot audio kernels{' (quick)' if result.quick else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(run, png, __doc__.split("\n", 1)[0])
