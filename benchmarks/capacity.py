"""Capacity: how many concurrent participant streams one core takes, the full bot against bare aiortc, same run.

For each receiver — the bot (``mediabot serve``: decode → 16 kHz → VAD → record, transcriber ``none``) and the bare
aiortc receiver (a plain ``recv`` loop, :mod:`benchmarks._bare_receiver`) — the number of streams N is stepped up
(sessions of four, fresh receiver process per step; see :mod:`benchmarks._load`) until a step fails:

- **streams failed**: the receiver no longer had every stream open at the end of the window;
- **kept**: fewer than 99.9 % of the packets sent during the steady-state window became frames in the receiver
  (frames missing by RTP timestamp, or dropped as late, count as lost);
- **falls behind**: the frames counted during the window are fewer than 99 % of the packets sent in it (frames
  queued rather than lost; the looser bound is the noise of that count, see :mod:`benchmarks._load`);
- **receiver CPU**: the receiver used ≥ 90 % of its core;
- **generator**: the load generator, pinned to the other core, used ≥ 90 % of it or sent fewer than 99 % of the
  packets due in the window, so it, not the receiver, is the limit on this machine. (How late it sent, p99, is in
  the step details: late packets arrive in bursts, which the receiver must take too, but the counts above are
  against what was actually sent, so lateness alone does not spoil a step.)

A failed step names every criterion it failed (on a machine shared with other work, a starved generator and a
receiver falling behind can come together).

``max_streams`` is the largest passing N actually observed. Because on two cores the generator's core can stop the
climb before the receiver's, the headline is **normalised**: ``streams_per_core = N / receiver CPU fraction`` at the
largest passing step (what one fully used core would take at that step's per-stream cost), for both receivers; their
ratio is ``streams_per_core_vs_bare``. RSS per stream is (VmRSS at steady state - before any stream) / N at that
step (it carries what the first stream loads, so it shrinks with N); ``rss_marginal_mb`` is the slope of RSS over
N across the steps: what one more stream costs (``cpu_pct_marginal`` likewise for CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._load import SEPARATE_CORES, LoadRun, ReceiverKind, load, prepare_clips, scratch
from benchmarks._report import Result, main

KEPT_MIN = 0.999
THROUGHPUT_MIN = 0.99
CPU_MAX = 0.90
GENERATOR_CPU_MAX = 0.90
DELIVERED_MIN = 0.99
TARGET_CPU = 0.85
"""The next step aims at the N predicted to use this much of the receiver's core."""
MB = 1e6
RECEIVERS: tuple[ReceiverKind, ...] = ("bot", "bare")


@dataclass(frozen=True)
class Plan:
    """How hard to measure: the first N, step length, ramp-up skipped, steps and seconds allowed per receiver."""

    first: int
    duration_s: float
    ramp_s: float
    max_steps: int
    budget_s: float
    max_streams: int


FULL = Plan(first=8, duration_s=12.0, ramp_s=3.0, max_steps=8, budget_s=110.0, max_streams=512)
QUICK = Plan(first=8, duration_s=5.0, ramp_s=2.0, max_steps=1, budget_s=25.0, max_streams=8)


def limit_of(run: LoadRun) -> str | None:
    """What stopped this step, every criterion that failed (None: it passed)."""
    failed = []
    if run.open_streams < run.streams:
        failed.append(f"streams failed ({run.open_streams} of {run.streams} open)")
    if run.kept < KEPT_MIN:
        failed.append("kept < 99.9 %")
    if run.throughput < THROUGHPUT_MIN:
        failed.append("falls behind")
    if run.receiver_cpu >= CPU_MAX:
        failed.append("receiver CPU >= 90 %")
    if run.generator_cpu >= GENERATOR_CPU_MAX or run.delivered < DELIVERED_MIN:
        failed.append("generator saturated")
    return "; ".join(failed) or None


def next_streams(run: LoadRun, plan: Plan) -> int:
    """The next N: toward the one predicted to load the receiver to :data:`TARGET_CPU`, at most double, +4 at least."""
    predicted = run.streams * TARGET_CPU / max(run.receiver_cpu, 1e-3)
    target = max(run.streams + 4, min(2 * run.streams, int(predicted) // 4 * 4))
    return min(target, plan.max_streams)


def row(run: LoadRun, limit: str | None) -> dict[str, Any]:
    """One table row."""
    return {
        "receiver": run.receiver,
        "streams": run.streams,
        "cpu_pct": round(run.receiver_cpu * 100, 1),
        "cpu_pct_per_stream": round(run.receiver_cpu * 100 / run.streams, 3),
        "kept_pct": round(run.kept * 100, 3),
        "throughput_pct": round(run.throughput * 100, 2),
        "rss_mb": round(run.rss / MB, 1),
        "rss_per_stream_mb": round(run.rss_per_stream / MB, 3),
        "generator_cpu_pct": round(run.generator_cpu * 100, 1),
        "limit": limit or "-",
    }


def climb(kind: ReceiverKind, plan: Plan, clips: Path, workdir: Path) -> tuple[list[LoadRun], str]:
    """Step N up for one receiver; the runs and what stopped the climb.

    A step that failed with neither the receiver nor the generator at 90 % CPU is run once more before it counts
    (another process on the machine can starve a step). If the first N fails, N/2 is tried once, and that is all.
    """
    runs: list[LoadRun] = []
    streams = plan.first
    began = time.monotonic()
    step_s = 0.0
    while True:
        step_began = time.monotonic()
        run = load(
            kind,
            streams,
            clips=clips,
            workdir=workdir / f"{kind}-{streams}-{len(runs)}",
            duration_s=plan.duration_s,
            ramp_s=plan.ramp_s,
        )
        runs.append(run)
        step_s = max(step_s, time.monotonic() - step_began)
        left = plan.budget_s - (time.monotonic() - began)
        limit = limit_of(run)
        if limit is not None:
            tries = sum(r.streams == streams for r in runs)
            saturated = run.receiver_cpu >= CPU_MAX or run.generator_cpu >= GENERATOR_CPU_MAX
            if tries < 2 and not saturated and left > step_s * 1.3:
                continue  # not explained by either process's own CPU: maybe starved by another process
            if all(r.streams == streams for r in runs) and streams > 4 and left > step_s * 1.3:
                streams = max(4, streams // 2)  # the first N already fails: look once below it
                continue
            return runs, limit
        if runs[0].streams > run.streams:
            return runs, limit_of(runs[0]) or "-"  # the look below the failed first N
        if len({r.streams for r in runs}) >= plan.max_steps:
            return runs, "step budget"
        if streams >= plan.max_streams:
            return runs, f"max {plan.max_streams} streams"
        if left < step_s * 1.3:
            return runs, "time budget"
        streams = next_streams(run, plan)


def summarize(kind: ReceiverKind, runs: list[LoadRun], stopped: str) -> dict[str, Any]:
    """The figures of one receiver: observed max N, normalised streams per core, RSS per stream, the limit."""
    passing = [run for run in runs if limit_of(run) is None]
    best = max(passing, key=lambda run: run.streams) if passing else None
    whole = [run for run in runs if run.open_streams == run.streams]
    # What one more stream costs in memory: the slope of RSS over N across steps (first-use costs cancel out).
    marginal = cpu_marginal = None
    if len({run.streams for run in whole}) >= 2:
        n = [run.streams for run in whole]
        marginal = round(float(np.polyfit(n, [run.rss for run in whole], 1)[0]) / MB, 3)
        # Likewise for CPU: the slope leaves out what the receiver costs with no stream at all.
        cpu_marginal = round(float(np.polyfit(n, [run.receiver_cpu for run in whole], 1)[0]) * 100, 3)
    return {
        f"max_streams_{kind}": best.streams if best else 0,
        f"streams_per_core_{kind}": round(best.streams / best.receiver_cpu, 1) if best and best.receiver_cpu else None,
        f"cpu_pct_per_stream_{kind}": round(best.receiver_cpu * 100 / best.streams, 3) if best else None,
        f"rss_per_stream_mb_{kind}": round(best.rss_per_stream / MB, 3) if best else None,
        f"rss_marginal_mb_{kind}": marginal,
        f"cpu_pct_marginal_{kind}": cpu_marginal,
        f"limit_{kind}": stopped,
    }


def run(quick: bool = False) -> Result:
    """Climb both receivers and compare them."""
    plan = QUICK if quick else FULL
    table: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    steps: dict[str, list[dict[str, Any]]] = {}
    with scratch("mediabot-capacity-") as workdir:
        clips = prepare_clips(workdir / "clips", plan.duration_s)
        for kind in RECEIVERS:
            runs, stopped = climb(kind, plan, clips, workdir)
            table.extend(row(run, limit_of(run)) for run in runs)
            figures.update(summarize(kind, runs, stopped))
            steps[kind] = [
                {
                    "streams": run.streams,
                    "window_s": round(run.window_s, 2),
                    "kept_total_pct": round(run.kept_total * 100, 3),
                    "sent_window": run.sent_window,
                    "received_window": run.received_window,
                    "lost_window": run.lost_window,
                    "generator_late_p99_ms": run.generator_late_p99_ms,
                    "generator_delivered_pct": round(run.delivered * 100, 2),
                    "connect_s": round(run.connect_s, 2),
                    "receiver_errors": run.errors,
                }
                for run in runs
            ]
    bot, bare = figures.get("streams_per_core_bot"), figures.get("streams_per_core_bare")
    ratios = {"streams_per_core_vs_bare": round(bot / bare, 3)} if bot and bare else {}
    meta = {
        "plan": vars(plan),
        "criteria": {
            "kept_min": KEPT_MIN,
            "throughput_min": THROUGHPUT_MIN,
            "receiver_cpu_max": CPU_MAX,
            "generator_cpu_max": GENERATOR_CPU_MAX,
            "generator_delivered_min": DELIVERED_MIN,
        },
        "separate_cores": SEPARATE_CORES,
        "streams_per_core": "normalised: N / receiver CPU fraction of one core at the largest passing step",
        "max_streams": "observed: the largest N that passed every criterion",
        "steps": steps,
        "targets": {"streams_per_core_bot": 100, "streams_per_core_vs_bare": 4.0},
    }
    return Result(name="capacity", quick=quick, table=table, ratios=ratios, figures=figures, meta=meta)


def png(result: Result, path: Path) -> None:
    """CPU % of the receiver's core against N, bot and bare; RSS per stream beside it."""
    import matplotlib.pyplot as plt

    fig, (cpu, rss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind, color in (("bot", "tab:green"), ("bare", "tab:blue")):
        rows = [r for r in result.table if r["receiver"] == kind]
        if not rows:
            continue
        n = [r["streams"] for r in rows]
        label = f"{kind} ({result.figures.get(f'streams_per_core_{kind}')} streams/core, normalised)"
        cpu.plot(n, [r["cpu_pct"] for r in rows], "o-", color=color, label=label)
        for r in rows:
            if r["limit"] != "-":
                cpu.annotate(
                    r["limit"], (r["streams"], r["cpu_pct"]), fontsize=7, xytext=(4, -10), textcoords="offset points"
                )
        rss.plot(n, [r["rss_per_stream_mb"] for r in rows], "o-", color=color, label=kind)
    cpu.axhline(CPU_MAX * 100, color="tab:red", linestyle=":", linewidth=1, label="90 % of a core")
    cpu.set_xlim(left=0)
    cpu.set_ylim(0, 110)
    rss.set_xlim(left=0)
    rss.set_ylim(bottom=0)
    cpu.set_xlabel("concurrent streams")
    cpu.set_ylabel("receiver CPU, % of one core")
    cpu.set_title("CPU vs streams")
    cpu.legend(fontsize=7)
    rss.set_xlabel("concurrent streams")
    rss.set_ylabel("RSS per stream, MB")
    rss.set_title("memory per stream")
    rss.legend(fontsize=7)
    fig.suptitle(f"mediabot capacity{' (quick)' if result.quick else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(run, png, __doc__.split("\n", 1)[0])
