"""Latency under load: RTP packet arrival → frame in the pipeline → speech-start event, p50/p99/p99.9.

The bot runs pinned to one core with N background streams of looped speech (sessions of four; see
:mod:`benchmarks._load`), and once more, in the same run, with :data:`IDLE_STREAMS` streams as the baseline. Per
speech start the bot writes to its ``segments.jsonl``:

- ``latency_ms``: from the arrival of the segment's first speech packet to the speech-start event — it includes the
  VAD's start window (``MEDIABOT_SPEECH_START_MS``, 60 ms: the speech needed before speech is declared);
- ``pipeline_ms``: from the arrival of the packet that completed the start window to the event — the part the
  receive path adds (jitter buffer, decode, resampling, VAD); the 40 ms p99 target is compared with this.

Both count from the arrival the bot *expects* for the packet (its stream's least-delayed arrival plus the packet's
media time), not the packet's own arrival: a packet sent or delivered late adds its lateness. The generator's own
send lateness over the same window is in the table as a reference row.

Per frame, when the bot exposes ``mediabot_media_frame_delay_seconds`` (arrival at the RTP receiver → the frame's
20 ms of 16 kHz audio reaching the sinks), its quantiles over the steady-state window are interpolated from the
histogram's buckets (so they are only as fine as the buckets); otherwise that row says n/a.

Loaded N: 60 % of the bot's observed capacity in the last full ``capacity`` result when there is one (whole sessions,
between :data:`DEFAULT_STREAMS` and :data:`MAX_STREAMS`), else :data:`DEFAULT_STREAMS`.
Speech starts decided only when a stream ended (onset in its last packets) are left out (counted in the meta).
Ratio: ``p99_pipeline_loaded_vs_idle``. With a few hundred segments, p99.9 is close to the maximum: the counts are
in the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._load import (
    FRAME_DELAY_METRIC,
    PER_SESSION,
    LoadRun,
    histogram_quantile,
    load,
    percentiles,
    prepare_clips,
    scratch,
)
from benchmarks._report import Result, main, result_path
from mediabot.config import Settings

DEFAULT_STREAMS = 24
MAX_STREAMS = 96
IDLE_STREAMS = 2
CAPACITY_SHARE = 0.6
TARGET_P99_MS = 40.0
SPEECH_PAD_S: float = Settings.model_fields["speech_pad_ms"].default / 1000
SPEECH_START_S: float = Settings.model_fields["speech_start_ms"].default / 1000
END_SLACK_S = 0.1
QS = (0.5, 0.99, 0.999)


@dataclass(frozen=True)
class Plan:
    """Streams under load (None: from the capacity result), and how long each run lasts."""

    streams: int | None
    duration_s: float
    ramp_s: float


FULL = Plan(streams=None, duration_s=30.0, ramp_s=3.0)
QUICK = Plan(streams=8, duration_s=6.0, ramp_s=1.5)


def loaded_streams() -> tuple[int, str]:
    """N under load and where it came from."""
    path = result_path("capacity", False, ".json")
    try:
        observed = int(json.loads(path.read_text())["figures"]["max_streams_bot"])
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_STREAMS, "default"
    streams = int(observed * CAPACITY_SHARE) // PER_SESSION * PER_SESSION
    return max(DEFAULT_STREAMS, min(streams, MAX_STREAMS)), f"60 % of {observed} (capacity.json)"


def live(segment: dict[str, Any]) -> bool:
    """Whether the segment's start was decided while its stream played, not only when the stream ended.

    A start whose window completes in the stream's last packets is decided when the stream closes (the resampler's
    tail is only flushed then), after the generator's linger: that delay is the benchmark's, not the bot's.
    """
    if segment.get("reason") != "flush":
        return True
    onset = float(segment["start"]) + SPEECH_PAD_S
    return float(segment["end"]) - onset >= SPEECH_START_S + END_SLACK_S


def measures(run: LoadRun) -> dict[str, dict[str, Any]]:
    """Per measure: sample count and p50/p99/p99.9 in ms."""
    out: dict[str, dict[str, Any]] = {}
    segments = [segment for segment in run.segments if live(segment)]
    for name, key in (("packet → speech start", "latency_ms"), ("start window → speech start", "pipeline_ms")):
        values = [float(s[key]) for s in segments if s.get(key) is not None]
        out[name] = {"n": len(values), **percentiles(values, QS)}
    out["sender lateness (generator, reference)"] = {"n": run.sent_window, **run.generator_late_ms}
    buckets = run.histogram(FRAME_DELAY_METRIC)
    if buckets:
        quantiles = {f"p{q * 100:g}": histogram_quantile(buckets, q) for q in QS}
        out["packet → frame in pipeline"] = {
            "n": int(buckets[-1][1]),
            **{k: (v * 1000 if v is not None else None) for k, v in quantiles.items()},
        }
    else:
        out["packet → frame in pipeline"] = {"n": 0, **dict.fromkeys(("p50", "p99", "p99.9"))}
    return out


def _rows(label: str, run: LoadRun, table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "load": label,
            "streams": run.streams,
            "cpu_pct": round(run.receiver_cpu * 100, 1),
            "measure": name,
            "n": values["n"],
            "p50_ms": _ms(values["p50"]),
            "p99_ms": _ms(values["p99"]),
            "p99.9_ms": _ms(values["p99.9"]),
        }
        for name, values in table.items()
    ]


def _cdf(buckets: list[tuple[float, float]]) -> dict[str, list[float]] | None:
    """A histogram's finite buckets as a CDF: upper bounds in ms and the share of frames at or below each."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    finite = [(bound, count) for bound, count in buckets if bound != float("inf")]
    return {"bounds_ms": [bound * 1000 for bound, _ in finite], "share": [count / total for _, count in finite]}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run(quick: bool = False) -> Result:
    """The loaded run and the idle baseline."""
    plan = QUICK if quick else FULL
    streams, source = (plan.streams, "fixed (quick)") if plan.streams is not None else loaded_streams()
    with scratch("mediabot-latency-") as workdir:
        clips = prepare_clips(workdir / "clips", plan.duration_s)
        runs = {
            "loaded": load(
                "bot", streams, clips=clips, workdir=workdir / "loaded", duration_s=plan.duration_s, ramp_s=plan.ramp_s
            ),
            "idle": load(
                "bot",
                IDLE_STREAMS,
                clips=clips,
                workdir=workdir / "idle",
                duration_s=plan.duration_s,
                ramp_s=plan.ramp_s,
            ),
        }
    tables = {label: measures(r) for label, r in runs.items()}
    rows = [row for label in ("idle", "loaded") for row in _rows(label, runs[label], tables[label])]
    pipeline = "start window → speech start"
    loaded, idle = tables["loaded"], tables["idle"]
    ratios: dict[str, float] = {}
    if loaded[pipeline]["p99"] and idle[pipeline]["p99"]:
        ratios["p99_pipeline_loaded_vs_idle"] = round(loaded[pipeline]["p99"] / idle[pipeline]["p99"], 3)
    frame = "packet → frame in pipeline"
    if loaded[frame]["p99"] and idle[frame]["p99"]:
        ratios["p99_frame_delay_loaded_vs_idle"] = round(loaded[frame]["p99"] / idle[frame]["p99"], 3)
    figures: dict[str, Any] = {
        "streams_loaded": streams,
        "cpu_pct_loaded": round(runs["loaded"].receiver_cpu * 100, 1),
        "p50_pipeline_ms": _ms(loaded[pipeline]["p50"]),
        "p99_pipeline_ms": _ms(loaded[pipeline]["p99"]),
        "p99.9_pipeline_ms": _ms(loaded[pipeline]["p99.9"]),
        "p99_speech_start_ms": _ms(loaded["packet → speech start"]["p99"]),
        "p99_frame_delay_ms": _ms(loaded[frame]["p99"]),
        "target_p99_ms": TARGET_P99_MS,
        "meets_target": bool(loaded[pipeline]["p99"] is not None and loaded[pipeline]["p99"] <= TARGET_P99_MS),
    }
    meta = {
        "plan": vars(plan),
        "streams_source": source,
        "idle_streams": IDLE_STREAMS,
        "kept_pct": {label: round(r.kept * 100, 3) for label, r in runs.items()},
        "generator_cpu_pct": {label: round(r.generator_cpu * 100, 1) for label, r in runs.items()},
        "segments": {label: len(r.segments) for label, r in runs.items()},
        "segments_decided_at_stream_end": {label: sum(not live(s) for s in r.segments) for label, r in runs.items()},
        "frame_delay_metric": FRAME_DELAY_METRIC if loaded[frame]["n"] else f"{FRAME_DELAY_METRIC} not exposed",
        "samples_ms": {
            label: {
                key: [s[key] for s in r.segments if s.get(key) is not None and live(s)]
                for key in ("latency_ms", "pipeline_ms")
            }
            for label, r in runs.items()
        },
        "frame_delay_buckets": {label: _cdf(r.histogram(FRAME_DELAY_METRIC)) for label, r in runs.items()},
    }
    return Result(name="latency", quick=quick, table=rows, ratios=ratios, figures=figures, meta=meta)


def png(result: Result, path: Path) -> None:
    """CDFs of the per-segment latencies (idle and loaded), and of the per-frame delay when the bot exposed it."""
    import matplotlib.pyplot as plt
    import numpy as np

    samples = result.meta["samples_ms"]
    buckets = result.meta["frame_delay_buckets"]
    has_frames = any(buckets.get(label) for label in ("idle", "loaded"))
    fig, axes = plt.subplots(1, 2 if has_frames else 1, figsize=(11 if has_frames else 6.5, 4.2), squeeze=False)
    ax = axes[0][0]
    styles = {"idle": ":", "loaded": "-"}
    for label in ("idle", "loaded"):
        for key, color in (("pipeline_ms", "tab:green"), ("latency_ms", "tab:blue")):
            values = np.sort(np.asarray(samples[label][key], dtype=float))
            if values.size:
                ax.step(
                    values,
                    np.arange(1, values.size + 1) / values.size,
                    where="post",
                    color=color,
                    linestyle=styles[label],
                    label=f"{key} · {label} (n={values.size})",
                )
    ax.axvline(TARGET_P99_MS, color="tab:red", linewidth=1, linestyle="--", label=f"{TARGET_P99_MS:g} ms target (p99)")
    ax.set_xlabel("ms")
    ax.set_ylabel("fraction of speech starts")
    ax.set_title("speech start (per segment)")
    ax.legend(fontsize=7)
    if has_frames:
        ax = axes[0][1]
        for label in ("idle", "loaded"):
            cdf = buckets.get(label)
            if cdf:
                ax.step(
                    cdf["bounds_ms"], cdf["share"], where="post", linestyle=styles[label], label=f"{label} (buckets)"
                )
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("ms (log scale; bucket bounds)")
        ax.set_ylabel("fraction of frames")
        ax.set_title("packet → frame in pipeline (per frame)")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"mediabot latency{' (quick)' if result.quick else ''}: {result.figures['streams_loaded']} streams loaded"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(run, png, __doc__.split("\n", 1)[0])
