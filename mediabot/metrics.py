"""The process's Prometheus metrics, in one place: what each instrument measures and where it is fed.

Event metrics (Graph requests, speech starts) are module-level instruments, observed where the event happens — never
per audio frame. Per-frame quantities (frames received, concealed, packets lost) are plain integer counters kept by
the media pipeline and read only when ``/metrics`` is scraped, by :class:`MediaCollector`; the calls' states are
read the same way by :class:`CallsCollector`. So the hot path pays nothing for being observable.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from mediabot.calls import CallManager
    from mediabot.media.engine import MediaEngine

__all__ = [
    "GRAPH_ERRORS",
    "GRAPH_REQUEST_SECONDS",
    "SPEECH_START_LATENCY",
    "SPEECH_START_PIPELINE",
    "CallsCollector",
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
    "From the arrival of the packet that completed the VAD's start window to the speech start: jitter buffer, "
    "decode, resampling and VAD.",
    buckets=LATENCY_BUCKETS,
)
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

    def __init__(self, engine: Callable[[], MediaEngine | None]) -> None:
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
