"""A media session's live view, speech-start timing, stream counters and standalone lifecycle, over real WHIP."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from prometheus_client import REGISTRY

from mediabot.media.session import RosterEntry
from mediabot.metrics import MediaCollector

from .conftest import RATE, WhipServer
from .test_engine import speech_48k


def histogram_count(name: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count") or 0.0


async def until(predicate: object, what: str, seconds: float = 20.0) -> None:
    """Wait (bounded) for ``predicate()``; the bound only stops a broken test from hanging."""
    assert callable(predicate)
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polling state that has no event
            await asyncio.sleep(0.02)


async def test_speech_start_is_timed_and_the_live_view_follows_it(whip_server: WhipServer) -> None:
    engine = whip_server.engine
    session = engine.open_session("call-live")
    session.roster_changed([RosterEntry("p-ada", "Ada", ("7",))])
    blob = engine.blob_for(session)
    signal = np.concatenate([np.zeros(RATE, np.int16), speech_48k(), np.zeros(RATE, np.int16)])
    starts = histogram_count("mediabot_speech_start_latency_seconds")
    publisher, track = await whip_server.publish(blob.endpoint, blob.token, "7", signal)
    assert track is not None

    def source() -> dict[str, object] | None:
        return next((s for s in session.live()["sources"] if s["source_id"] == "7"), None)

    # The level meter is refreshed every 100 ms: it follows the speech shortly after the segment opened.
    await until(
        lambda: (s := source()) is not None and s["speaking"] and s["level_dbfs"] > -50, "the live view to show speech"
    )
    speaking = source()
    assert speaking is not None
    assert speaking["participant_id"] == "p-ada" and speaking["display_name"] == "Ada"
    assert speaking["connected"] is True and speaking["codec"] == "audio/opus"
    assert speaking["jitter_ms"] >= 0 and speaking["packets_lost"] == 0
    await track.finished.wait()
    await until(lambda: (s := source()) is not None and not s["speaking"], "the speech to end")
    live = session.live()
    assert live["recording"] == "on" and live["segments"] >= 1
    totals = session.totals()
    assert totals.streams == 1 and totals.frames_received > 0
    await whip_server.unpublish(publisher, blob.token)
    await engine.release("call-live")

    segments = [json.loads(line) for line in (engine.options.output_dir / "call-live" / "segments.jsonl").open()]
    first = segments[0]
    # Onset → start spans the VAD's start window (60 ms: from the onset's packet to the packet that completed it,
    # at least 40 ms later); the rest is the pipeline's own delay, which cannot be negative.
    assert first["latency_ms"] - first["pipeline_ms"] >= 40 - 0.2
    assert first["pipeline_ms"] >= 0
    assert histogram_count("mediabot_speech_start_latency_seconds") >= starts + 1

    # Closed streams still count: the counters stay monotonic for Prometheus.
    after = engine.stream_totals()
    assert after.streams == 0 and after.frames_received >= totals.frames_received
    assert after.packets_lost == 0  # loopback loses nothing
    metrics = {m.name: m.samples[0].value for m in MediaCollector(lambda: engine).collect()}
    assert metrics["mediabot_media_frames_received"] == after.frames_received
    assert metrics["mediabot_media_streams"] == 0


async def test_a_standalone_session_ends_when_its_publisher_leaves(whip_server: WhipServer) -> None:
    engine = whip_server.engine
    session = engine.open_standalone()
    assert session.standalone and session.call_id is None and session.gate_open
    blob = engine.blob_for(session)
    publisher, track = await whip_server.publish(blob.endpoint, blob.token, "main", speech_48k()[: RATE * 2])
    assert track is not None
    await track.finished.wait()
    await whip_server.unpublish(publisher, blob.token)
    await until(lambda: engine.session(session.id) is None, "the session to close itself")
    folder = engine.options.output_dir / session.id
    await until(lambda: json.loads((folder / "call.json").read_text()).get("complete"), "the files to be finished")
    assert (folder / "audio" / "main.wav").is_file()


async def test_an_unused_standalone_session_expires(whip_server: WhipServer) -> None:
    engine = whip_server.engine
    session = engine.open_standalone(unused_timeout_s=0.05)
    await until(lambda: session.closed, "the unused session to expire")
    assert engine.session(session.id) is None
    assert not (engine.options.output_dir / session.id).exists()
