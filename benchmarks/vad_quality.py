"""How well the VADs find speech: precision, recall and F1 per 20 ms frame (speech = positive), by noise and SNR.

Material: the bundled espeak-ng clips (``mediabot/sandbox/scenarios/*.wav``, brought to 16 kHz mono with soxr if
they are not), each scaled to an active speech level of -26 dBFS, joined with digital silences between utterances.

Labels come from the CLEAN material: a frame is speech when its energy (mean square) is within
:data:`LABEL_RANGE_DB` (35 dB) of the loudest frame of its clip; the silences between clips, and the pauses inside a
clip quieter than that, are non-speech.

Noise (seeded numpy): ``white`` (Gaussian), ``pink`` (1/f power, shaped in the frequency domain) and ``babble``
(six time-reversed, randomly shifted copies of the material summed: speech-like but not speech we label). It is
scaled so that the active speech power over the noise power (over the whole signal) is the SNR, added, and the sum
clipped to int16.

Scored per 20 ms frame: ``webrtc`` (``create_vad("webrtc", 2)``: speech when it says 1.0), ``silero``
(``create_vad("silero")``: speech when its confidence ≥ 0.5, the segmenter's default threshold), and
``segmenter+<vad>``: :class:`mediabot.media.vad.SpeechSegmenter` (default params) fed the same confidences, a frame
being speech when it overlaps a segment it emits (its padding and hangover count against precision, by design).
CPU is process time per 20 ms frame of the VAD's ``speech_confidence`` (the segmenter rows add the segmenter's own).
"""

from __future__ import annotations

import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from benchmarks._report import Result, main
from mediabot.audio import FRAME_SAMPLES, SAMPLE_RATE
from mediabot.media.vad import SpeechSegmenter, create_vad

SCENARIOS = Path(__file__).resolve().parent.parent / "mediabot" / "sandbox" / "scenarios"
LABEL_RANGE_DB = 35.0
SPEECH_LEVEL_DBFS = -26.0
GAPS_S = (1.0, 1.2, 0.8, 1.5)  # silence before the first clip, between clips, and after the last (cycled)
NOISES = ("white", "pink", "babble")
FULL_SNRS: tuple[float | None, ...] = (None, 20.0, 10.0, 5.0, 0.0)  # None = clean
QUICK_SNRS: tuple[float | None, ...] = (None, 10.0)
SEED = 20240611
SILERO_THRESHOLD = 0.5  # the segmenter's default threshold (webrtc says 0.0 or 1.0)
Backend = Literal["webrtc", "silero"]
BACKENDS: tuple[Backend, ...] = ("webrtc", "silero")

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Material:
    """Labelled clean speech: samples (float, int16 scale), per-frame labels, and the active speech power."""

    samples: Float64Array
    labels: BoolArray
    speech_power: float


@dataclass(frozen=True)
class Score:
    """Frame-level confusion counts and the derived precision, recall and F1."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        """Share of frames called speech that are speech (1.0 when none were called)."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        """Share of speech frames called speech."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else 1.0


def score(predicted: BoolArray, truth: BoolArray) -> Score:
    """Count true positives, false positives and false negatives of ``predicted`` against ``truth``."""
    return Score(
        tp=int(np.count_nonzero(predicted & truth)),
        fp=int(np.count_nonzero(predicted & ~truth)),
        fn=int(np.count_nonzero(~predicted & truth)),
    )


def _frames_energy(samples: Float64Array) -> Float64Array:
    count = samples.shape[0] // FRAME_SAMPLES
    frames = samples[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
    energy: Float64Array = np.mean(frames * frames, axis=1)
    return energy


def label_frames(clip: Float64Array, range_db: float = LABEL_RANGE_DB) -> BoolArray:
    """Speech frames of a clean clip: energy within ``range_db`` of the clip's loudest frame."""
    energy = _frames_energy(clip)
    peak = float(energy.max()) if energy.size else 0.0
    if peak <= 0.0:
        return np.zeros(energy.shape[0], np.bool_)
    labels: BoolArray = energy >= peak * 10.0 ** (-range_db / 10.0)
    return labels


def _read_clip(path: Path) -> Float64Array:
    with wave.open(str(path), "rb") as clip:
        rate, channels, width = clip.getframerate(), clip.getnchannels(), clip.getsampwidth()
        if width != 2:
            raise ValueError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
        data = np.frombuffer(clip.readframes(clip.getnframes()), np.int16).reshape(-1, channels)
    mono = data.mean(axis=1)
    if rate != SAMPLE_RATE:
        import soxr

        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    samples: Float64Array = np.asarray(mono, np.float64)
    usable = samples.shape[0] - samples.shape[0] % FRAME_SAMPLES  # whole frames, so labels line up
    return samples[:usable]


def build_material(clips: Sequence[Path]) -> Material:
    """Join the clips (each at the active speech level) with silences, and label every frame."""
    target = (32768.0 * 10.0 ** (SPEECH_LEVEL_DBFS / 20.0)) ** 2
    parts: list[Float64Array] = []
    labels: list[BoolArray] = []
    for index, path in enumerate(clips):
        gap = round(GAPS_S[index % len(GAPS_S)] * SAMPLE_RATE / FRAME_SAMPLES) * FRAME_SAMPLES
        parts.append(np.zeros(gap))
        labels.append(np.zeros(gap // FRAME_SAMPLES, np.bool_))
        clip = _read_clip(path)
        clip_labels = label_frames(clip)
        active = float(_frames_energy(clip)[clip_labels].mean())
        parts.append(clip * np.sqrt(target / active))
        labels.append(clip_labels)
    tail = round(GAPS_S[len(clips) % len(GAPS_S)] * SAMPLE_RATE / FRAME_SAMPLES) * FRAME_SAMPLES
    parts.append(np.zeros(tail))
    labels.append(np.zeros(tail // FRAME_SAMPLES, np.bool_))
    samples = np.concatenate(parts)
    truth = np.concatenate(labels)
    return Material(samples, truth, float(_frames_energy(samples)[truth].mean()))


def make_noise(kind: str, material: Material, rng: np.random.Generator) -> Float64Array:
    """Unit-power noise as long as the material: ``white``, ``pink`` or ``babble``."""
    length = material.samples.shape[0]
    noise: Float64Array
    if kind == "white":
        noise = rng.standard_normal((length,))
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(length, dtype=np.float64))
        frequencies = np.fft.rfftfreq(length, 1.0 / SAMPLE_RATE)
        spectrum[1:] /= np.sqrt(frequencies[1:] / frequencies[1])  # power ∝ 1/f
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, length)
    elif kind == "babble":
        reversed_speech = material.samples[::-1]
        noise = np.zeros(length)
        for _ in range(6):
            noise += np.roll(reversed_speech, int(rng.integers(length)))
    else:
        raise ValueError(f"unknown noise {kind!r}")
    result: Float64Array = noise / np.sqrt(np.mean(noise * noise))
    return result


def mix(material: Material, noise: Float64Array | None, snr_db: float | None) -> Int16Array:
    """The material plus ``noise`` at ``snr_db`` (active speech power over noise power), clipped to int16."""
    signal = material.samples
    if noise is not None and snr_db is not None:
        signal = signal + noise * np.sqrt(material.speech_power / 10.0 ** (snr_db / 10.0))
    mixed: Int16Array = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
    return mixed


class _Replay:
    """A VAD that replays recorded confidences, so the segmenter sees exactly what the backend said."""

    def __init__(self, name: str, confidences: Float64Array) -> None:
        self.name = name
        self._confidences = confidences
        self._index = 0

    def speech_confidence(self, frame: Int16Array) -> float:
        value = float(self._confidences[self._index])
        self._index += 1
        return value


def vad_confidences(backend: Backend, audio: Int16Array) -> tuple[Float64Array, float]:
    """Each frame's confidence from a fresh backend, and the process time (s) spent in ``speech_confidence``."""
    vad = create_vad(backend, 2)
    count = audio.shape[0] // FRAME_SAMPLES
    frames = audio[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
    out = np.empty(count, np.float64)
    started = time.process_time()
    for index in range(count):
        out[index] = vad.speech_confidence(frames[index])
    return out, time.process_time() - started


def segmenter_labels(name: str, confidences: Float64Array, audio: Int16Array) -> tuple[BoolArray, float]:
    """Frames covered by the segments :class:`SpeechSegmenter` emits for these confidences, and its process time."""
    segmenter = SpeechSegmenter(_Replay(name, confidences))
    count = confidences.shape[0]
    frames = audio[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
    segments = []
    started = time.process_time()
    for index in range(count):
        segment = segmenter.process(index * FRAME_SAMPLES, frames[index])
        if segment is not None:
            segments.append(segment)
    last = segmenter.flush()
    elapsed = time.process_time() - started
    if last is not None:
        segments.append(last)
    covered = np.zeros(count, np.bool_)
    for segment in segments:
        first = segment.start // FRAME_SAMPLES
        end = -(-segment.end // FRAME_SAMPLES)  # a frame overlapping the segment at all counts
        covered[first:end] = True
    return covered, elapsed


def run(quick: bool = False) -> Result:
    """Score every VAD on every (noise, SNR) condition; return the table, ratios and figures."""
    clips = sorted(SCENARIOS.glob("*.wav"))
    if not clips:
        raise FileNotFoundError(f"no clips in {SCENARIOS}")
    if quick:
        clips = clips[:1]
    material = build_material(clips)
    rng = np.random.default_rng(SEED)
    noises = {kind: make_noise(kind, material, rng) for kind in NOISES}
    snrs = QUICK_SNRS if quick else FULL_SNRS
    conditions: list[tuple[str, float | None]] = []
    for snr in snrs:
        conditions.extend([("none", None)] if snr is None else [(kind, snr) for kind in NOISES])

    rows: list[dict[str, Any]] = []
    cpu: dict[str, list[float]] = {}
    frames_total = 0
    for kind, snr in conditions:
        audio = mix(material, noises.get(kind), snr)
        frames = material.labels.shape[0]
        frames_total += frames
        for backend in BACKENDS:
            confidences, seconds = vad_confidences(backend, audio)
            variants: list[tuple[str, BoolArray, float]] = [(backend, confidences >= SILERO_THRESHOLD, seconds)]
            covered, segmenter_seconds = segmenter_labels(backend, confidences, audio)
            variants.append((f"segmenter+{backend}", covered, seconds + segmenter_seconds))
            for name, predicted, spent in variants:
                result = score(predicted, material.labels)
                cpu.setdefault(name, []).append(spent)
                rows.append(
                    {
                        "noise": kind,
                        "snr_db": "clean" if snr is None else f"{snr:g}",
                        "vad": name,
                        "precision": result.precision,
                        "recall": result.recall,
                        "f1": result.f1,
                        "us_per_frame": spent / frames * 1e6,
                    }
                )

    def mean_f1(vad: str, snr: str, noises: Sequence[str] = ("none", *NOISES)) -> float:
        values = [row["f1"] for row in rows if row["vad"] == vad and row["snr_db"] == snr and row["noise"] in noises]
        return float(np.mean(values)) if values else float("nan")

    us = {name: sum(times) / frames_total * 1e6 for name, times in cpu.items()}
    stationary = ("white", "pink")
    ratios = {
        "f1_webrtc_vs_silero_10db": mean_f1("webrtc", "10", stationary) / mean_f1("silero", "10", stationary),
        "cpu_silero_vs_webrtc": us["silero"] / us["webrtc"],
    }
    labels = ["clean"] + [f"{snr:g}" for snr in snrs if snr is not None]
    figures: dict[str, Any] = {
        f"f1_{vad}_{label}{'' if label == 'clean' else 'db'}": mean_f1(vad, label) for vad in us for label in labels
    }
    figures.update({f"us_per_frame_{vad}": us[vad] for vad in BACKENDS})
    meta = {
        "clips": [clip.name for clip in clips],
        "seconds": material.samples.shape[0] / SAMPLE_RATE,
        "frames": int(material.labels.shape[0]),
        "speech_frames": int(np.count_nonzero(material.labels)),
        "label_rule": f"clean frame energy within {LABEL_RANGE_DB:g} dB of its clip's loudest frame",
        "speech_level_dbfs": SPEECH_LEVEL_DBFS,
        "snr": "active speech power / noise power; noise over the whole signal",
        "noises": {"white": "Gaussian", "pink": "1/f power", "babble": "6 reversed shifted copies of the material"},
        "seed": SEED,
        "silero_threshold": SILERO_THRESHOLD,
        "webrtc_aggressiveness": 2,
        "ratio_at_10db": "mean F1 over the stationary noises (white, pink) at 10 dB; figures: over all noises",
        "cpu": "process time of speech_confidence per 20 ms frame, over all conditions",
    }
    return Result("vad_quality", quick, rows, ratios, figures, meta)


def png(result: Result, path: Path) -> None:
    """F1 against SNR, one line per VAD, one panel per noise (clean drawn at the right end)."""
    import matplotlib.pyplot as plt

    noises = [kind for kind in NOISES if any(row["noise"] == kind for row in result.table)]
    snrs = sorted({float(row["snr_db"]) for row in result.table if row["snr_db"] != "clean"})
    clean_x = (max(snrs) if snrs else 0.0) + 10.0
    vads = list(dict.fromkeys(row["vad"] for row in result.table))
    fig, axes = plt.subplots(1, len(noises), figsize=(4.2 * len(noises), 3.8), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], noises, strict=True):
        for vad in vads:
            points = sorted(
                (clean_x if row["snr_db"] == "clean" else float(row["snr_db"]), row["f1"])
                for row in result.table
                if row["vad"] == vad and row["noise"] in (kind, "none")
            )
            style = "--" if vad.startswith("segmenter") else "-"
            color = "tab:green" if vad.endswith("silero") else "tab:blue"
            ax.plot([x for x, _ in points], [y for _, y in points], style, color=color, marker="o", label=vad)
        ax.set_xticks([*snrs, clean_x], [*(f"{s:g}" for s in snrs), "clean"])
        ax.set_title(f"{kind} noise")
        ax.set_xlabel("SNR (dB)")
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("F1 per 20 ms frame")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"VAD quality{' (quick)' if result.quick else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(run, png, __doc__.split("\n", 1)[0])
