"""The load harness end to end at tiny scale (real generator and receiver processes), and its helpers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import _load
from benchmarks._load import (
    LoadRun,
    cpu_seconds,
    histogram,
    histogram_delta,
    histogram_quantile,
    parse_metrics,
    percentiles,
    pinned,
    prepare_clips,
    rss_bytes,
    run_load,
)

SECONDS = 2.5
STREAMS = 2
PACKETS = STREAMS * round(SECONDS / _load.PACKET_S)

METRICS = """# HELP mediabot_media_frames_received_total Decoded audio frames.
# TYPE mediabot_media_frames_received_total counter
mediabot_media_frames_received_total 1234.0
mediabot_media_streams 4
mediabot_media_frame_delay_seconds_bucket{le="0.01"} 10.0
mediabot_media_frame_delay_seconds_bucket{le="0.02"} 90.0
mediabot_media_frame_delay_seconds_bucket{le="+Inf"} 100.0
mediabot_media_frame_delay_seconds_count 100.0
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield prepare_clips(tmp_path_factory.mktemp("clips"), SECONDS)


def test_metrics_text_is_parsed_into_samples() -> None:
    samples = parse_metrics(METRICS)
    assert samples["mediabot_media_frames_received_total"] == 1234.0
    assert samples["mediabot_media_streams"] == 4.0
    assert histogram(samples, "mediabot_media_frame_delay_seconds") == [
        (0.01, 10.0),
        (0.02, 90.0),
        (float("inf"), 100.0),
    ]
    assert histogram(samples, "mediabot_absent_seconds") == []


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    buckets = histogram(parse_metrics(METRICS), "mediabot_media_frame_delay_seconds")
    assert histogram_quantile(buckets, 0.05) == pytest.approx(0.005)
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.015)
    # In the +Inf bucket: the largest finite bound, a lower bound of the truth.
    assert histogram_quantile(buckets, 0.99) == pytest.approx(0.02)
    assert histogram_quantile([], 0.5) is None
    window = histogram_delta(buckets, [(0.01, 5.0), (0.02, 5.0), (float("inf"), 5.0)])
    assert window == [(0.01, 5.0), (0.02, 85.0), (float("inf"), 95.0)]


def test_percentiles_name_their_quantiles() -> None:
    values = [float(v) for v in range(1, 1001)]
    result = percentiles(values)
    assert set(result) == {"p50", "p99", "p99.9"}
    assert result["p50"] == pytest.approx(500.5)
    assert percentiles([]) == {"p50": None, "p99": None, "p99.9": None}


def test_process_counters_are_read_from_proc() -> None:
    assert cpu_seconds(os.getpid()) > 0
    assert rss_bytes(os.getpid()) > 1_000_000


def test_a_pinned_command_runs_on_its_core_only() -> None:
    core = sorted(os.sched_getaffinity(0))[-1]
    code = "import os; print(sorted(os.sched_getaffinity(0)))"
    out = subprocess.run(pinned(core, [sys.executable, "-c", code]), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"[{core}]"


def test_clips_cover_the_run_and_loop(clips: Path) -> None:
    loaded = _load.load_clips(clips)
    assert len(loaded) == len(list(_load.CLIP_DIR.glob("*.wav")))
    for packets, loop in loaded:
        assert len(packets) >= SECONDS / _load.PACKET_S + loop
        assert all(isinstance(packet, bytes) and packet for packet in packets[:10])


@pytest.fixture(scope="module")
def runs(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadRun]:
    """One tiny run into each receiver, both at once (each pair shares the two cores: counts are asserted, not
    timings)."""
    folder = tmp_path_factory.mktemp("load")

    async def both() -> list[LoadRun]:
        return list(
            await asyncio.gather(
                *(
                    run_load(kind, STREAMS, clips=clips, workdir=folder / kind, duration_s=SECONDS, ramp_s=1.0)
                    for kind in ("bare", "bot")
                )
            )
        )

    bare, bot = asyncio.run(both())
    assert not (folder / "bare").exists() and not (folder / "bot").exists(), "a run's folder is removed"
    return {"bare": bare, "bot": bot}


@pytest.mark.parametrize("kind", ["bare", "bot"])
def test_streams_into_a_receiver_are_counted(runs: dict[str, LoadRun], kind: str) -> None:
    run = runs[kind]
    assert run.receiver == kind
    assert run.streams == STREAMS
    assert run.sessions == 1
    assert run.open_streams == STREAMS
    assert run.errors == []
    assert run.sent_total == PACKETS
    # All, but for what a jitter buffer may still hold when the streams stop.
    assert 0.9 * PACKETS <= run.received_total <= PACKETS
    assert 0 < run.sent_window < PACKETS
    assert run.received_window > 0
    assert run.lost_window >= 0
    assert run.receiver_cpu > 0
    assert run.generator_cpu > 0
    assert run.rss > run.rss_idle > 0


def test_the_bare_receiver_records_nothing(runs: dict[str, LoadRun]) -> None:
    assert runs["bare"].segments == []
    assert runs["bare"].folders_complete == 0


def test_the_bot_records_and_times_speech_starts(runs: dict[str, LoadRun]) -> None:
    run = runs["bot"]
    assert run.folders_complete == 1
    assert run.segments, "the looped speech gives speech segments"
    assert all("latency_ms" in segment and "pipeline_ms" in segment for segment in run.segments)
