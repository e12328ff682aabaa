"""``MediaWorkers``: real worker processes, real WebRTC over loopback to them, real files, a real kill -9.

Starting worker processes costs seconds, so the tests share one pair of workers (one event loop for the module);
each test leaves no session open, and the one that stops the pair comes last.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import pytest_asyncio
import soxr

from mediabot.media.dtmf import dtmf_tone
from mediabot.media.pipeline import TIMELINE_LEAD
from mediabot.media.prompt import PromptError
from mediabot.media.session import RosterEntry, SpeechEvent, ToneEvent
from mediabot.media.workers import MediaWorkers, RemoteSession
from mediabot.sandbox import SandboxServer
from mediabot.service.live import LiveView
from tests.service.conftest import ServiceServer

from .conftest import RATE, PacedTrack, Publisher, WhipServer, offer_for, serving_whip, whip_options
from .test_session import vanish

in_module_loop = pytest.mark.asyncio(loop_scope="module")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "audio"
WAIT_S = 30.0
IDLE_S = 1.0  # the workers' media_idle_timeout, so that a vanished publisher is noticed in about a second


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as reader:
        assert reader.getframerate() == 16_000
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def speech_48k(seconds_after: float = 1.0) -> npt.NDArray[np.int16]:
    with wave.open(str(FIXTURES / "speech_fox.wav"), "rb") as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    speech = soxr.resample(samples, rate, RATE).astype(np.int16)
    return np.concatenate([np.zeros(RATE // 4, np.int16), speech, np.zeros(int(seconds_after * RATE), np.int16)])


def at_16k(signal: npt.NDArray[np.int16]) -> int:
    return signal.size * 16_000 // RATE


class Heard:
    """The call plane's side (a MediaListener) and the service's sinks: what the workers reported."""

    def __init__(self, workers: MediaWorkers) -> None:
        self.speech: list[SpeechEvent] = []
        self.tones: list[ToneEvent] = []
        self.errors: list[tuple[str, str]] = []
        self.lost: list[tuple[str, str]] = []
        self.sunk: list[tuple[str, SpeechEvent]] = []
        self.closed: dict[str, bool] = {}  # session id -> call.json said complete when the listener ran
        workers.set_listener(self)
        workers.add_speech_sink(lambda session, event: self.sunk.append((session.id, event)))
        workers.add_closed_listener(self._closed)

    def on_speech(self, event: SpeechEvent) -> None:
        self.speech.append(event)

    def on_tone(self, event: ToneEvent) -> None:
        self.tones.append(event)

    def on_media_error(self, call_id: str, message: str) -> None:
        self.errors.append((call_id, message))

    def on_media_lost(self, call_id: str, reason: str) -> None:
        self.lost.append((call_id, reason))

    def _closed(self, session: RemoteSession) -> None:
        call_json = Path(session.folder) / "call.json"
        self.closed[session.id] = call_json.is_file() and json.loads(call_json.read_text()).get("complete") is True


async def until(session: RemoteSession, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The session's first snapshot (pushed by its worker) for which ``predicate`` holds."""
    async with asyncio.timeout(WAIT_S):
        while not predicate(live := session.live()):
            assert not session.closed, f"session {session.id} closed"
            await session.next_update()
    return live


async def closing(session: RemoteSession) -> None:
    async with asyncio.timeout(WAIT_S):
        while not session.closed:
            await session.next_update()


def receiving(live: dict[str, Any], position_s: float = 0.0) -> bool:
    sources = live["sources"]
    return (
        bool(sources)
        and all(s["connected"] and s["frames_received"] for s in sources)
        and (live["position_s"] > position_s)
    )


class Served(WhipServer):
    """The conftest's WHIP helpers over MediaWorkers (the WHIP route in this process, the media in the workers)."""

    workers: MediaWorkers


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """Two workers behind the WHIP route on a real port (shared by the module's tests)."""
    out = tmp_path_factory.mktemp("workers")

    def two_workers(base_url: str) -> MediaWorkers:
        options = dataclasses.replace(whip_options(base_url, out), media_idle_timeout=IDLE_S)
        return MediaWorkers(options, 2, stop_timeout_s=20.0)

    async with serving_whip(two_workers) as (workers, base_url, client):
        served = Served(engine=workers, base_url=base_url, client=client)
        served.workers = workers
        yield served


async def publish(served: Served, session: RemoteSession, source: str, signal: Any) -> tuple[Publisher, PacedTrack]:
    blob = served.workers.blob_for(session)
    publisher, track = await served.publish(blob.endpoint, blob.token, source, signal)
    assert track is not None
    return publisher, track


@in_module_loop
async def test_sessions_spread_over_the_workers_are_recorded_and_live(served: Served) -> None:
    workers = served.workers
    heard = Heard(workers)
    first, second = workers.open_standalone(), workers.open_standalone()
    assert {first.worker, second.worker} == {0, 1}  # the least loaded worker takes each new session
    signal = speech_48k()
    (pub_1, track_1), (pub_2, track_2) = await asyncio.gather(
        publish(served, first, "main", signal), publish(served, second, "main", signal)
    )
    await asyncio.gather(until(first, receiving), until(second, receiving))
    view = LiveView(None, workers).snapshot()
    listed = {s["session_id"]: s for s in view["sessions"]}
    assert listed.keys() == {first.id, second.id}
    assert all(s["standalone"] and s["sources"][0]["connected"] for s in listed.values())
    assert workers.stream_totals().streams == 2

    await asyncio.gather(track_1.finished.wait(), track_2.finished.wait())
    # The publishers leave: each standalone session ends by itself, in its worker, and the service hears of it.
    await asyncio.gather(served.unpublish(pub_1, first.token), served.unpublish(pub_2, second.token))
    await asyncio.gather(closing(first), closing(second))
    assert heard.closed == {first.id: True, second.id: True}  # the closed listeners ran after the files were done
    assert workers.session(first.id) is None and workers.session(second.id) is None
    for session in (first, second):
        recorded = read_wav(session.folder / "audio" / "main.wav")
        # The whole stream from TIMELINE_LEAD (the timeline starts that much before the first media); the publisher
        # pads its last packet and the recorder its last frame.
        assert at_16k(signal) - 2 * 320 <= recorded.size <= at_16k(signal) + TIMELINE_LEAD + 2 * 320
        assert np.array_equal(read_wav(session.folder / "audio" / "mixed.wav"), recorded)
        segments = [json.loads(line) for line in (session.folder / "segments.jsonl").read_text().splitlines()]
        assert segments and segments[0]["start"] == pytest.approx(0.25, abs=0.35)
        sunk = [event for session_id, event in heard.sunk if session_id == session.id]
        assert len(sunk) == len(segments)  # every segment reached the service, its audio with it
        assert all(e.segment.audio.size == e.segment.end - e.segment.start > 0 for e in sunk)
    assert heard.speech == []  # standalone sessions have no call to tell
    assert workers.stream_totals().frames_received >= 2 * at_16k(signal) // 320 * 0.9


@in_module_loop
async def test_a_calls_whip_errors_and_prompts_go_through_its_worker(served: Served) -> None:
    workers = served.workers
    heard = Heard(workers)
    config = await workers.media_config("call-e")
    session = workers.for_call("call-e")
    assert session is not None and workers.hosts("call-e")
    assert config["blob"] and workers.blob_for(session).token == session.token
    endpoint = f"/media/whip/{session.id}"
    pc, _ = await offer_for(np.zeros(960, np.int16))
    sdp = pc.localDescription.sdp
    await pc.close()
    auth = {"Authorization": f"Bearer {session.token}", "Content-Type": "application/sdp"}
    client = served.client

    forged = await client.post(endpoint, content=sdp, headers={**auth, "Authorization": "Bearer wrong"})
    assert forged.status_code == 401 and forged.headers["www-authenticate"] == "Bearer"
    assert (await client.post("/media/whip/nope", content=sdp, headers=auth)).status_code == 404
    # These are refused by the worker's engine; the error class (and so the status) crosses the process boundary.
    garbage = await client.post(endpoint, content=b"v=0\r\nthis is not sdp\r\n", headers=auth)
    assert garbage.status_code == 400 and "SDP offer" in garbage.text
    pcma, _ = await offer_for(np.zeros(960, np.int16), codec="audio/PCMA")
    refused = await client.post(endpoint, content=pcma.localDescription.sdp, headers=auth)
    await pcma.close()
    assert refused.status_code == 422 and "PCMA" in refused.text
    assert (await client.delete(f"{endpoint}/no-such-resource", headers=auth)).status_code == 404
    with pytest.raises(PromptError, match="no such file"):
        await workers.play_prompt("call-e", "missing.wav")

    prompt_path = Path(workers.options.prompt_dir) / "prompt.wav"
    prompt_path.parent.mkdir(exist_ok=True)
    t = np.arange(8000) / 8000
    with wave.open(str(prompt_path), "wb") as out:  # 1 s of 440 Hz at 8 kHz
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((10000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes())
    blob = workers.blob_for(session)
    main, _ = await served.publish(blob.endpoint, blob.token, "main", None)
    played = await workers.play_prompt("call-e", "prompt.wav")  # played by the worker that owns the call
    assert played == pytest.approx(1.0, abs=0.021)
    await served.unpublish(main, blob.token)
    heard_audio = main.heard()
    assert heard_audio.size >= int(0.8 * RATE)
    spectrum = np.abs(np.fft.rfft(heard_audio.astype(np.float64)))
    assert abs(float(np.argmax(spectrum)) * RATE / (2 * (spectrum.size - 1)) - 440) < 5
    await workers.release("call-e")
    assert session.closed and heard.closed == {session.id: True}
    assert workers.for_call("call-e") is None and not workers.hosts("call-e")
    events = (session.folder / "events.jsonl").read_text()
    assert '"prompt_started"' in events and '"prompt_finished"' in events


@in_module_loop
async def test_a_calls_vanished_media_reaches_the_call_plane_from_its_worker(served: Served) -> None:
    workers = served.workers
    heard = Heard(workers)
    await workers.media_config("call-v")
    session = workers.for_call("call-v")
    assert session is not None
    workers.roster_changed("call-v", [RosterEntry("p-ada", "Ada", ("7",))])
    publisher, _ = await publish(served, session, "7", speech_48k(30.0))
    await until(session, receiving)
    vanish(publisher.pc)  # no DELETE: the worker notices the silence, waits for a comeback, then gives up
    async with asyncio.timeout(WAIT_S):
        while not heard.lost:
            await session.next_update()
    assert heard.lost == [("call-v", "media timeout")]
    await publisher.pc.close()
    await workers.release("call-v")
    assert session.closed and heard.closed == {session.id: True}
    events = [json.loads(line) for line in (session.folder / "events.jsonl").read_text().splitlines()]
    assert any(e.get("type") == "source_disconnected" and e.get("reason") == "media timeout" for e in events)


@in_module_loop
async def test_a_killed_worker_is_restarted_and_its_session_reported_closed(served: Served) -> None:
    workers = served.workers
    heard = Heard(workers)
    await asyncio.gather(workers.media_config("call-k1"), workers.media_config("call-k2"))
    doomed, spared = workers.for_call("call-k1"), workers.for_call("call-k2")
    assert doomed is not None and spared is not None and doomed.worker != spared.worker
    for call_id in ("call-k1", "call-k2"):
        workers.roster_changed(call_id, [RosterEntry("p-1", "One", ("1",))])
    long = speech_48k(seconds_after=8.0)
    (pub_doomed, _), (pub_spared, _) = await asyncio.gather(
        publish(served, doomed, "1", long), publish(served, spared, "1", long)
    )
    await until(doomed, lambda live: receiving(live, position_s=2.0))  # its files are being written
    killed = workers.worker_pids()[doomed.worker]
    assert killed is not None
    os.kill(killed, signal.SIGKILL)

    await closing(doomed)
    assert heard.errors and heard.errors[0][0] == "call-k1" and "stopped" in heard.errors[0][1]
    assert doomed.errors and workers.for_call("call-k1") is None
    # What the dead worker left was repaired before the service's listeners saw the session closed.
    call_json = json.loads((doomed.folder / "call.json").read_text())
    assert call_json["recovered"] is True
    track = read_wav(doomed.folder / "audio" / "p-1.wav")
    assert track.size > 0 and track.size == read_wav(doomed.folder / "audio" / "mixed.wav").size
    # The other worker's call goes on.
    await spared.next_update()
    assert receiving(spared.live()) and not spared.closed

    # The restarted worker takes the next session (it is the least loaded) and records it.
    await workers.media_config("call-k3")
    fresh = workers.for_call("call-k3")
    assert fresh is not None and fresh.worker == doomed.worker
    assert workers.worker_pids()[fresh.worker] not in (None, killed)
    short = speech_48k(seconds_after=0.0)[:RATE]
    pub_fresh, track_fresh = await publish(served, fresh, "main", short)
    await track_fresh.finished.wait()
    await served.unpublish(pub_fresh, fresh.token)
    await workers.release("call-k3")
    recorded = read_wav(fresh.folder / "audio" / "main.wav")
    assert at_16k(short) - 5 * 320 <= recorded.size <= at_16k(short) + 320
    assert heard.closed[fresh.id] is True

    await pub_doomed.pc.close()
    await served.unpublish(pub_spared, spared.token)
    await workers.release("call-k2")
    assert heard.closed[spared.id] is True


@in_module_loop
async def test_stopping_finishes_the_files_of_every_worker(served: Served) -> None:
    workers = served.workers
    heard = Heard(workers)
    await asyncio.gather(workers.media_config("call-s1"), workers.media_config("call-s2", gated=True))
    sessions = [workers.for_call("call-s1"), workers.for_call("call-s2")]
    assert all(sessions) and {s.worker for s in sessions if s} == {0, 1}
    workers.recording_decided("call-s2", True)
    for call_id in ("call-s1", "call-s2"):
        workers.roster_changed(call_id, [RosterEntry("p-1", "One", ("1",))])
    digits = [np.concatenate([dtmf_tone(d, 0.1, RATE), np.zeros(RATE // 10, np.int16)]) for d in "5#"]
    long = np.concatenate([speech_48k(seconds_after=0.5), *digits, np.zeros(8 * RATE, np.int16)])
    publishers = await asyncio.gather(*(publish(served, s, "1", long) for s in sessions if s))

    def spoke_and_dialled(live: dict[str, Any]) -> bool:
        return bool(live["segments"] >= 1 and live["tones"] == "5#")

    # Speech was segmented and digits heard (the call plane was told); the publishers still send when we stop.
    await asyncio.gather(*(until(s, spoke_and_dialled) for s in sessions if s))
    await workers.stop()

    assert workers.worker_pids() == [None, None] and workers.sessions() == []
    assert {e.call_id for e in heard.speech} == {"call-s1", "call-s2"}
    assert all(e.participant_id == "p-1" and e.display_name == "One" for e in heard.speech)
    for call_id in ("call-s1", "call-s2"):
        assert "".join(t.digit for t in heard.tones if t.call_id == call_id) == "5#"
    for session in sessions:
        assert session is not None and session.closed and heard.closed[session.id] is True
        call_json = json.loads((session.folder / "call.json").read_text())
        assert call_json["complete"] is True and "recovered" not in call_json
        track = read_wav(session.folder / "audio" / "p-1.wav")
        assert (
            track.size > at_16k(speech_48k(seconds_after=0.0))
            and track.size == read_wav(session.folder / "audio" / "mixed.wav").size
        )
    for publisher, _ in publishers:
        await publisher.pc.close()


def test_the_service_runs_its_media_in_workers_when_asked(sandbox: SandboxServer) -> None:
    service = ServiceServer(sandbox, media_workers=1).start()
    try:
        media = service.app.state.media
        assert isinstance(media, MediaWorkers)
        opened = service.client.post("/v1/sessions")
        assert opened.status_code == 201
        body = opened.json()
        assert body["whip_url"].endswith(f"/media/whip/{body['session_id']}") and body["folder"] == body["session_id"]
        live = service.client.get("/v1/live").json()
        assert [s["session_id"] for s in live["sessions"]] == [body["session_id"]]
        assert "mediabot_media_sessions 1.0" in service.client.get("/metrics").text
        closed = service.client.delete(f"/v1/sessions/{body['session_id']}")
        assert closed.status_code == 200 and closed.json()["summary"] == {"segments": 0, "tones": []}
        assert service.client.get(f"/v1/sessions/{body['session_id']}").status_code == 404
        [pid] = media.worker_pids()
        assert pid is not None and pid != os.getpid()
    finally:
        service.stop()
    assert media.worker_pids() == [None]
    with pytest.raises(ProcessLookupError):  # stopped and reaped with the service
        os.kill(pid, 0)
