"""A media session's live view, speech-start timing, stream counters, standalone lifecycle and vanished publishers,
over real WHIP."""

from __future__ import annotations

import asyncio
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from aiortc import RTCPeerConnection
from prometheus_client import REGISTRY

from mediabot.media.engine import MediaEngine
from mediabot.media.session import EndReason, MediaSession, RosterEntry, SpeechEvent, ToneEvent
from mediabot.metrics import MediaCollector

from .conftest import RATE, WhipServer, serving_whip, whip_options
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
    # Onset → start spans the VAD's start window (from the onset's packet to the packet that completed it: 40 ms on
    # a quiet network, less when packets bunch up) plus the pipeline's own delay, which cannot be negative.
    assert first["latency_ms"] >= first["pipeline_ms"] >= 0
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


# -- publishers that vanish -------------------------------------------------------------------------------------------

IDLE_S = 1.0  # the tests' media_idle_timeout (and so the wait for a publisher to come back)


def vanish(pc: RTCPeerConnection) -> None:
    """Cut a publisher off as a killed process or a dead network would: its sockets close at once, so the bot gets
    no WHIP DELETE, no DTLS close, no RTCP: nothing more at all."""
    for transceiver in pc.getTransceivers():
        ice = transceiver.sender.transport.transport
        for protocol in list(ice._connection._protocols):
            protocol.transport.close()


def tone_48k(hz: float, seconds: float) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * RATE)) / RATE
    return (6000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def frames_heard(session: MediaSession, source: str) -> int:
    """Frames received on the source's current connection (0 when it has none)."""
    found = [s["frames_received"] for s in session.live()["sources"] if s["source_id"] == source]
    return int(found[0] or 0) if found else 0


def closing(engine: MediaEngine) -> asyncio.Event:
    """Set once a session of the engine is closed and its files are finished."""
    closed = asyncio.Event()
    engine.add_closed_listener(lambda _session: closed.set())
    return closed


def read_wav16(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (16_000, 1, 2)
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def read_events(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def assert_one_timeline(folder: Path, names: list[str]) -> dict[str, npt.NDArray[np.int16]]:
    """Every file of the finished call is readable and exactly as long as the recording call.json reports, and the
    mix is the sum of the tracks; the tracks by name."""
    meta = json.loads((folder / "call.json").read_text())
    assert meta["complete"] is True
    samples = meta["recording"]["files"]["samples"]
    tracks = {name: read_wav16(folder / "audio" / f"{name}.wav") for name in names}
    mixed = read_wav16(folder / "audio" / "mixed.wav")
    assert {track.size for track in tracks.values()} == {mixed.size} == {samples}
    assert np.array_equal(mixed, np.clip(sum(t.astype(np.int32) for t in tracks.values()), -32768, 32767))
    return tracks


@pytest.fixture
async def idle_whip(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[WhipServer]:
    """The WHIP server with a 1 s media idle timeout; other options from the test's parameter (a dict)."""
    overrides: dict[str, Any] = {"media_idle_timeout": IDLE_S, **getattr(request, "param", {})}

    def make(base_url: str) -> MediaEngine:
        return MediaEngine(replace(whip_options(base_url, tmp_path), **overrides))

    async with serving_whip(make) as (engine, url, client):
        yield WhipServer(engine=engine, base_url=url, client=client)


@pytest.mark.parametrize(
    "idle_whip", [{"inline_receive": True}, {"inline_receive": False}], ids=["inline", "stock"], indirect=True
)
async def test_a_vanished_publisher_is_ended_as_a_media_timeout_and_its_files_finished(idle_whip: WhipServer) -> None:
    engine = idle_whip.engine
    session = engine.open_session("call-vanish")
    session.roster_changed([RosterEntry("p-ada", "Ada", ("7",)), RosterEntry("p-bob", "Bob", ("8",))])
    blob = engine.blob_for(session)
    ada, _ = await idle_whip.publish(blob.endpoint, blob.token, "7", tone_48k(300, 20))
    bob, _ = await idle_whip.publish(blob.endpoint, blob.token, "8", tone_48k(500, 20))
    await until(lambda: frames_heard(session, "7") > 25 and frames_heard(session, "8") > 25, "both to be heard")
    vanish(ada.pc)
    await until(lambda: [c.source_id for c in session.connections()] == ["8"], "Ada's connection to be ended")
    assert not session.media_lost  # Bob still sends
    heard = frames_heard(session, "8")
    await until(lambda: frames_heard(session, "8") > heard + 25, "Bob to go on")
    await idle_whip.unpublish(bob, blob.token)
    assert session.connections() == [] and not session.media_lost  # Bob left with a DELETE: nothing vanished
    await ada.pc.close()
    await engine.release("call-vanish")

    folder = engine.options.output_dir / "call-vanish"
    ended = {e["source_id"]: e for e in read_events(folder) if e["type"] == "source_disconnected"}
    assert ended["7"]["reason"] == "media timeout" and ended["8"]["reason"] == "deleted"
    assert ended["7"]["t"] < ended["8"]["t"]
    assert ended["7"]["frames_in"] > 25
    assert not [e for e in read_events(folder) if e["type"] == "media_lost"]
    tracks = assert_one_timeline(folder, ["p-ada", "p-bob"])
    # Ada's file holds her audio up to where she vanished, then silence: padded like a participant who left.
    cut = round(ended["7"]["t"] * 16_000)
    assert np.abs(tracks["p-ada"][:cut]).max() > 1000
    assert np.abs(tracks["p-ada"][cut:]).max() == 0
    assert np.abs(tracks["p-bob"][cut:]).max() > 1000  # Bob went on after her, to the end of the call


class LossListener:
    """A call plane that hears media loss and ends the call as the CallManager would (by releasing its media)."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.lost: list[tuple[str, str]] = []
        self.told = asyncio.Event()
        self.released: asyncio.Task[None] | None = None

    def on_speech(self, event: SpeechEvent) -> None:
        pass

    def on_tone(self, event: ToneEvent) -> None:
        pass

    def on_media_error(self, call_id: str, message: str) -> None:
        pass

    def on_media_lost(self, call_id: str, reason: str) -> None:
        self.lost.append((call_id, reason))
        self.released = asyncio.get_running_loop().create_task(self.engine.release(call_id))
        self.told.set()


async def test_a_call_whose_publishers_all_vanished_is_reported_lost_once_none_came_back(
    idle_whip: WhipServer,
) -> None:
    engine = idle_whip.engine
    listener = LossListener(engine)
    engine.set_listener(listener)
    session = engine.open_session("call-gone")
    session.roster_changed([RosterEntry("p-ada", "Ada", ("7",))])
    blob = engine.blob_for(session)
    ada, _ = await idle_whip.publish(blob.endpoint, blob.token, "7", tone_48k(300, 20))
    # The bot's main session, on which the relay only listens: nothing to time out, it stays until the call ends.
    main, _ = await idle_whip.publish(blob.endpoint, blob.token, "main", None)
    await until(lambda: frames_heard(session, "7") > 25, "Ada to be heard")
    vanish(ada.pc)
    async with asyncio.timeout(20):
        await listener.told.wait()
    assert listener.lost == [("call-gone", "media timeout")]
    assert listener.released is not None
    await listener.released
    assert session.closed and engine.for_call("call-gone") is None
    await ada.pc.close()
    await main.pc.close()

    folder = engine.options.output_dir / "call-gone"
    events = read_events(folder)
    ended = {e["source_id"]: e for e in events if e["type"] == "source_disconnected"}
    assert ended["7"]["reason"] == "media timeout"
    assert ended["main"]["reason"] == "session closed"
    (lost,) = [e for e in events if e["type"] == "media_lost"]
    assert lost["reason"] == "media timeout" and lost["waited_s"] == IDLE_S
    assert lost["t"] >= ended["7"]["t"] + IDLE_S - 0.01  # it waited for a publisher to come back
    tracks = assert_one_timeline(folder, ["p-ada"])
    assert np.abs(tracks["p-ada"]).max() > 1000
    assert np.abs(tracks["p-ada"][round(ended["7"]["t"] * 16_000) :]).max(initial=0) == 0


async def test_a_standalone_publisher_that_comes_back_in_time_continues_and_one_that_does_not_closes_it(
    idle_whip: WhipServer,
) -> None:
    engine = idle_whip.engine
    closed = closing(engine)
    session = engine.open_standalone()
    blob = engine.blob_for(session)
    first, _ = await idle_whip.publish(blob.endpoint, blob.token, "main", tone_48k(300, 20))
    await until(lambda: frames_heard(session, "main") > 25, "the publisher to be heard")
    vanish(first.pc)
    await until(lambda: session.media_lost, "the publisher to be found gone")
    # It reconnects (a new WHIP session) while the session waits for it: the same recording goes on.
    again, _ = await idle_whip.publish(blob.endpoint, blob.token, "main", tone_48k(500, 20))
    assert not session.media_lost
    await until(lambda: frames_heard(session, "main") > 25, "the publisher to be heard again")
    vanish(again.pc)
    async with asyncio.timeout(20):
        await closed.wait()  # it gave up on its publisher
    assert engine.session(session.id) is None
    await first.pc.close()
    await again.pc.close()

    folder = engine.options.output_dir / session.id
    events = read_events(folder)
    reasons = [e["reason"] for e in events if e["type"] == "source_disconnected"]
    assert reasons == ["media timeout", "media timeout"]
    assert [e["reason"] for e in events if e["type"] == "media_lost"] == ["media timeout"]
    (track,) = assert_one_timeline(folder, ["main"]).values()
    disconnects = [round(e["t"] * 16_000) for e in events if e["type"] == "source_disconnected"]
    reconnect = round([e for e in events if e["type"] == "source_connected"][1]["t"] * 16_000)
    spectrum_before = np.abs(np.fft.rfft(track[: disconnects[0]].astype(np.float64)))
    spectrum_after = np.abs(np.fft.rfft(track[reconnect : disconnects[1]].astype(np.float64)))
    assert round(np.argmax(spectrum_before) * 16_000 / (2 * (spectrum_before.size - 1))) in range(295, 306)
    assert round(np.argmax(spectrum_after) * 16_000 / (2 * (spectrum_after.size - 1))) in range(495, 506)
    assert np.abs(track[disconnects[0] : reconnect]).max() == 0  # the time it was gone is silence
    assert np.abs(track[disconnects[1] :]).max(initial=0) == 0


@pytest.mark.parametrize("idle_whip", [{"media_idle_timeout": 0.0}], indirect=True)
async def test_with_the_idle_timeout_off_a_failed_publisher_ends_a_standalone_session_at_once(
    idle_whip: WhipServer,
) -> None:
    engine = idle_whip.engine
    closed = closing(engine)
    session = engine.open_standalone()
    blob = engine.blob_for(session)
    publisher, _ = await idle_whip.publish(blob.endpoint, blob.token, "main", tone_48k(300, 20))
    await until(lambda: frames_heard(session, "main") > 25, "the publisher to be heard")
    (connection,) = session.connections()
    # What aiortc reports when ICE consent expires (the only end of a vanished peer with the timeout off).
    assert await session.remove_connection(connection.resource_id, EndReason.FAILED)
    assert not session.media_lost  # nothing waits for it to come back
    async with asyncio.timeout(20):
        await closed.wait()
    await publisher.pc.close()
    events = read_events(engine.options.output_dir / session.id)
    assert [e["reason"] for e in events if e["type"] == "source_disconnected"] == ["connection failed"]
    assert not [e for e in events if e["type"] == "media_lost"]
