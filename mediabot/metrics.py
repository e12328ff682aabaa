"""The process's Prometheus metrics, in one place: what each instrument measures and where it is fed.

Event metrics (Graph requests, speech starts) are module-level instruments, observed where the event happens — never
per audio frame. Per-frame quantities (frames received, concealed, packets lost) are plain integer counters kept by
the media pipeline and read only when ``/metrics`` is scraped, by :class:`MediaCollector`; the calls' states are
read the same way by :class:`CallsCollector`. So the hot path pays nothing for being observable.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from mediabot.calls import CallManager
    from mediabot.media.plane import MediaPlane

__all__ = [
    "FRAME_DELAY",
    "GRAPH_ERRORS",
    "GRAPH_REQUEST_SECONDS",
    "SPEECH_START_LATENCY",
    "SPEECH_START_PIPELINE",
    "CallsCollector",
    "DelayHistogram",
    "MediaCollector",
]

LATENCY_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)

SPEECH_START_LATENCY = Histogram(
    "mediabot_speech_start_latency_seconds",
    "From the arrival of the first speech packet of a segment to the bot's speech start (includes the VAD's "
    "start window, MEDIABOT_SPEECH_START_MS).",
    buckets=LATENCY_BUCKETS,
)
SPEECH_START_PIPELINE = Histogram(
    "mediabot_speech_start_pipeline_seconds",
    "From the arrival of the packet that completed the VAD's start window to the speech start: reorder wait, "
    "decode, resampling and VAD.",
    buckets=LATENCY_BUCKETS,
)


class DelayHistogram:
    """A histogram of plain ints for the hot path (a bisect and two additions per observation, no lock).

    Observed on the event loop only; :class:`MediaCollector` reads it at scrape time.
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.total += seconds

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        """The Prometheus family (cumulative buckets) of what was observed so far."""
        cumulative, running = [], 0
        for edge, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if edge == float("inf") else repr(edge), running))
        family = HistogramMetricFamily(name, documentation)
        family.add_metric([], cumulative, sum_value=self.total)
        return family


FRAME_DELAY = DelayHistogram((0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0))
"""RTP packet arrival → its audio through the pipeline and the sinks (reorder wait, decode, resample, VAD, record)."""

GRAPH_REQUEST_SECONDS = Histogram(
    "mediabot_graph_request_seconds",
    "Duration of one Graph or token HTTP request (each retry counts on its own).",
    ["method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
GRAPH_ERRORS = Counter(
    "mediabot_graph_errors",
    "Graph requests that failed, by HTTP status ('transport' when no response came).",
    ["status"],
)


class CallsCollector(Collector):
    """``mediabot_calls{state}``: the calls the manager tracks, by state (ended calls are kept a while)."""

    def __init__(self, manager: Callable[[], CallManager | None]) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Metric]:
        """The gauge, read at scrape time."""
        from mediabot.calls.call import CallPhase  # the call plane imports the media plane, which imports this

        family = GaugeMetricFamily("mediabot_calls", "Calls this process tracks, by state.", labels=["state"])
        manager = self._manager()
        states = Tally(str(call.state) for call in manager.calls()) if manager is not None else Tally[str]()
        for phase in CallPhase:
            family.add_metric([str(phase)], states[str(phase)])
        yield family


class MediaCollector(Collector):
    """Media sessions, streams and their frame counters (live sessions plus what closed ones delivered)."""

    def __init__(self, engine: Callable[[], MediaPlane[Any] | None]) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        """Gauges and counters, read at scrape time from the pipelines' plain counters."""
        engine = self._engine()
        totals = engine.stream_totals() if engine is not None else None
        sessions = GaugeMetricFamily("mediabot_media_sessions", "Open media sessions (calls and standalone).")
        streams = GaugeMetricFamily("mediabot_media_streams", "Open WHIP connections (one per source).")
        sessions.add_metric([], len(engine.sessions()) if engine is not None else 0)
        streams.add_metric([], totals.streams if totals is not None else 0)
        yield sessions
        yield streams
        counters = (
            ("mediabot_media_frames_received", "Decoded audio frames received from WHIP peers.", "frames_received"),
            ("mediabot_media_packets_lost", "RTP packets lost (by sequence number).", "packets_lost"),
            (
                "mediabot_media_frames_concealed",
                "20 ms frames of silence inserted on the timeline for lost or missing audio.",
                "frames_concealed",
            ),
            (
                "mediabot_media_frames_late",
                "Frames dropped because they arrived after their place was played out.",
                "frames_late",
            ),
        )
        for name, documentation, attribute in counters:
            family = CounterMetricFamily(name, documentation)
            family.add_metric([], getattr(totals, attribute) if totals is not None else 0)
            yield family
        dropped = CounterMetricFamily(
            "mediabot_media_packets_dropped",
            "RTP packets dropped before decoding: SRTP refused them (forged or replayed), they were not well-formed "
            "RTP, or they came from an SSRC other than the connection's sending source.",
            labels=["reason"],
        )
        for reason, attribute in (
            ("srtp", "packets_refused"),
            ("malformed", "packets_malformed"),
            ("foreign_ssrc", "packets_foreign"),
        ):
            dropped.add_metric([reason], getattr(totals, attribute) if totals is not None else 0)
        yield dropped
        yield FRAME_DELAY.family(
            "mediabot_media_frame_delay_seconds",
            "RTP packet arrival to its audio having passed the pipeline and the sinks (inline receive only).",
        )
