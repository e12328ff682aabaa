"""The media engine through its WHIP endpoint, with real aiortc peers over loopback and real files."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from mediabot.media.dtmf import dtmf_tone
from mediabot.media.pipeline import TIMELINE_LEAD
from mediabot.media.prompt import PromptError
from mediabot.media.session import RosterEntry

from .conftest import RATE, WhipServer, best_lag_correlation, offer_for

FIXTURES = Path(__file__).parent.parent / "fixtures" / "audio"


def read_wav(path: Path) -> tuple[int, npt.NDArray[np.int16]]:
    with wave.open(str(path), "rb") as reader:
        return reader.getframerate(), np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def speech_48k() -> npt.NDArray[np.int16]:
    rate, samples = read_wav(FIXTURES / "speech_fox.wav")
    return soxr.resample(samples, rate, RATE).astype(np.int16)


async def test_errors_are_clear_and_change_nothing(whip_server: WhipServer) -> None:
    session = whip_server.engine.open_session("call-e")
    endpoint = f"/media/whip/{session.id}"
    pc, _ = await offer_for(np.zeros(960, np.int16))
    sdp = pc.localDescription.sdp
    await pc.close()
    auth = {"Authorization": f"Bearer {session.token}", "Content-Type": "application/sdp"}
    client = whip_server.client

    unknown = await client.post("/media/whip/nope", content=sdp, headers=auth)
    assert unknown.status_code == 404
    forged = await client.post(endpoint, content=sdp, headers={**auth, "Authorization": "Bearer wrong"})
    assert forged.status_code == 401
    assert forged.headers["www-authenticate"] == "Bearer"
    missing = await client.post(endpoint, content=sdp, headers={"Content-Type": "application/sdp"})
    assert missing.status_code == 401
    wrong_type = await client.post(endpoint, content=sdp, headers={**auth, "Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    garbage = await client.post(endpoint, content=b"v=0\r\nthis is not sdp\r\n", headers=auth)
    assert garbage.status_code == 400
    not_sdp = await client.post(endpoint, content=b"\xff\xfe\x00", headers=auth)
    assert not_sdp.status_code == 400 and "UTF-8" in not_sdp.text
    huge = await client.post(endpoint, content=sdp.encode() + b"a=x\r\n" * 5000, headers=auth)
    assert huge.status_code == 400 and "larger" in huge.text
    bad_source = await client.post(endpoint, params={"source": "../x"}, content=sdp, headers=auth)
    assert bad_source.status_code == 400
    pcma, _ = await offer_for(np.zeros(960, np.int16), codec="audio/PCMA")
    refused = await client.post(endpoint, content=pcma.localDescription.sdp, headers=auth)
    await pcma.close()
    assert refused.status_code == 422
    assert "PCMA" in refused.text and "Opus or PCMU" in refused.text
    gone = await client.delete(f"{endpoint}/no-such-resource", headers=auth)
    assert gone.status_code == 404
    assert session.connections() == []
    await whip_server.engine.release("call-e")
    assert not (whip_server.engine.options.output_dir / "call-e" / "audio").exists()


async def test_a_source_is_recorded_segmented_and_its_digits_heard(whip_server: WhipServer) -> None:
    engine = whip_server.engine
    session = engine.open_session("call-1")
    blob = engine.blob_for(session)
    speech = speech_48k()
    digits = np.concatenate(
        [np.concatenate([dtmf_tone(d, 0.1, RATE), np.zeros(int(0.1 * RATE), np.int16)]) for d in "19#"]
    )
    signal = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE, np.int16), digits])
    signal = np.concatenate([signal, np.zeros(RATE, np.int16)])
    # The roster names the source only after its audio started: it is kept and attributed.
    publisher, track = await whip_server.publish(blob.endpoint, blob.token, "7", signal)
    assert track is not None
    await track.finished.wait()
    session.roster_changed([RosterEntry("p-ada", "Ada", ("7",))])
    await whip_server.unpublish(publisher, blob.token)
    await engine.release("call-1")

    folder = engine.options.output_dir / "call-1"
    rate, recorded = read_wav(folder / "audio" / "p-ada.wav")
    _, mixed = read_wav(folder / "audio" / "mixed.wav")
    assert rate == 16_000
    assert recorded.size == mixed.size
    assert np.array_equal(recorded, mixed)  # one participant: the mix is that participant
    reference = soxr.resample(signal, RATE, 16_000).astype(np.int16)
    lag, corr = best_lag_correlation(recorded, reference)
    assert corr >= 0.9
    assert lag <= 320  # the first source starts the timeline: aligned within one 20 ms frame
    # The whole stream from TIMELINE_LEAD (the timeline starts that much before the first media); the publisher
    # pads its last packet and the recorder its last frame.
    assert reference.size - 2 * 320 <= recorded.size <= reference.size + TIMELINE_LEAD + 2 * 320

    segments = [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]
    assert segments and all(s["participant_id"] == "p-ada" and s["display_name"] == "Ada" for s in segments)
    speech_start = 0.5
    assert segments[0]["start"] == pytest.approx(speech_start, abs=0.35)
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    tones = [e for e in events if e["type"] == "tone"]
    assert "".join(t["digit"] for t in tones) == "19#"
    assert all(t["participant_id"] == "p-ada" for t in tones)
    first_tone = (0.5 * RATE + speech.size + RATE) / RATE
    assert tones[0]["start"] == pytest.approx(first_tone, abs=0.03)
    # The VAD hears the keypad as voiced; the digits are tones, not a speech segment.
    assert all(s["end"] <= first_tone for s in segments), segments
    assert {"source_connected", "source_disconnected", "participant_joined"} <= {e["type"] for e in events}
    # The inline receiver took every packet (none lost or undecodable on loopback), and says so when the source ends.
    (ended,) = [e for e in events if e["type"] == "source_disconnected"]
    assert ended["rtp"]["packets"] >= ended["frames_in"] > 0
    assert ended["rtp"]["lost"] == ended["rtp"]["undecodable"] == 0
    # Once DTLS was up, RTP went straight from the socket (what came before went through aiortc's reader).
    assert 0 < ended["rtp"]["direct"] <= ended["rtp"]["packets"]
    assert ended["rtp"]["unprotect_failed"] == ended["rtp"]["malformed"] == 0
    call = json.loads((folder / "call.json").read_text())
    assert call["complete"] is True
    assert call["participants"] == [
        {"id": "p-ada", "display_name": "Ada", "source_ids": ["7"], "file": "audio/p-ada.wav"}
    ]
    for path in [folder, folder / "audio"]:
        assert path.stat().st_mode & 0o777 == 0o700
    for path in [folder / "call.json", folder / "audio" / "p-ada.wav", folder / "events.jsonl"]:
        assert path.stat().st_mode & 0o777 == 0o600


async def test_two_sources_pcmu_and_a_late_join_share_one_timeline(whip_server: WhipServer) -> None:
    engine = whip_server.engine
    session = engine.open_session("call-2")
    session.roster_changed([RosterEntry("a", "A", ("1",)), RosterEntry("b", "B", ("2",))])
    blob = engine.blob_for(session)
    t = np.arange(3 * RATE) / RATE
    first = (6000 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.int16)
    second = (6000 * np.sin(2 * np.pi * 500 * t[: 2 * RATE]) * (np.sin(2 * np.pi * 2 * t[: 2 * RATE]) > 0)).astype(
        np.int16
    )
    pub_a, track_a = await whip_server.publish(blob.endpoint, blob.token, "1", first)
    assert track_a is not None
    await track_a.finished.wait()  # B joins when A is done: ~3 s later
    pub_b, track_b = await whip_server.publish(blob.endpoint, blob.token, "2", second, codec="audio/PCMU")
    assert track_b is not None
    await track_b.finished.wait()
    await whip_server.unpublish(pub_a, blob.token)
    await whip_server.unpublish(pub_b, blob.token)
    await engine.release("call-2")

    folder = engine.options.output_dir / "call-2" / "audio"
    _, a = read_wav(folder / "a.wav")
    _, b = read_wav(folder / "b.wav")
    _, mixed = read_wav(folder / "mixed.wav")
    assert a.size == b.size == mixed.size
    expected = np.clip(a.astype(np.int32) + b.astype(np.int32), -32768, 32767)
    assert np.array_equal(mixed, expected)
    lag_b, corr_b = best_lag_correlation(b, soxr.resample(second, RATE, 16_000).astype(np.int16))
    events = (engine.options.output_dir / "call-2" / "events.jsonl").read_text().splitlines()
    assert corr_b >= 0.9, [line for line in events if "source_disconnected" in line]
    assert lag_b >= int(2.9 * 16_000)  # B's audio starts where it joined, after ~3 s of leading silence
    assert np.abs(b[: int(2.8 * 16_000)]).max() == 0
    codecs = [
        json.loads(line)["codec"]
        for line in (engine.options.output_dir / "call-2" / "events.jsonl").read_text().splitlines()
        if '"source_connected"' in line
    ]
    assert codecs == ["audio/opus", "audio/PCMU"]


async def test_a_prompt_is_heard_on_main(whip_server: WhipServer, tmp_path: Path) -> None:
    engine = whip_server.engine
    session = engine.open_session("call-3")
    blob = engine.blob_for(session)
    prompt_path = tmp_path / "prompts" / "prompt.wav"
    prompt_path.parent.mkdir()
    t = np.arange(8000) / 8000
    with wave.open(str(prompt_path), "wb") as out:  # 1 s of 440 Hz at 8 kHz: resampled on the way
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes((10000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes())
    main, _ = await whip_server.publish(blob.endpoint, blob.token, "main", None)
    with pytest.raises(PromptError, match="only files under the prompt folder"):
        await engine.load_prompt("../elsewhere.wav")
    with pytest.raises(PromptError, match="no such file"):
        await engine.load_prompt("missing.wav")
    played = await session.play(engine_prompt := await engine.load_prompt("prompt.wav"))
    assert played == pytest.approx(1.0, abs=0.021)
    assert engine_prompt.duration_s == pytest.approx(1.0, abs=0.021)
    await whip_server.unpublish(main, blob.token)
    heard = main.heard()
    assert heard.size >= int(0.8 * RATE)
    spectrum = np.abs(np.fft.rfft(heard.astype(np.float64)))
    assert abs(float(np.argmax(spectrum)) * RATE / (2 * (spectrum.size - 1)) - 440) < 5
    await engine.release("call-3")
    events = (engine.options.output_dir / "call-3" / "events.jsonl").read_text()
    assert '"prompt_started"' in events and '"prompt_finished"' in events


async def test_a_closed_gate_writes_nothing(whip_server: WhipServer) -> None:
    engine = whip_server.engine
    session = engine.open_session("call-4", gated=True)
    blob = engine.blob_for(session)
    publisher, track = await whip_server.publish(blob.endpoint, blob.token, "1", speech_48k()[: RATE * 2])
    assert track is not None
    session.roster_changed([RosterEntry("a", "A", ("1",))])
    session.recording_decided(False)
    await track.finished.wait()
    await whip_server.unpublish(publisher, blob.token)
    await engine.release("call-4")
    assert not (engine.options.output_dir / "call-4").exists()
    assert not engine.options.output_dir.exists() or list(engine.options.output_dir.iterdir()) == []


def write_wav(path: Path, samples: npt.NDArray[np.int16]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(samples.astype("<i2").tobytes())


async def test_start_repairs_recordings_a_killed_process_left(tmp_path: Path) -> None:
    from mediabot.media.engine import MediaEngine
    from mediabot.media.session import MediaOptions

    out = tmp_path / "out"
    rng = np.random.default_rng(3)
    voice = rng.integers(-3000, 3000, 32_000).astype(np.int16)
    # As a kill -9 leaves it: the participant's track is ahead of the mix, call.json says incomplete.
    write_wav(out / "killed" / "audio" / "p1.wav", voice)
    write_wav(out / "killed" / "audio" / "mixed.wav", voice[:16_000])
    (out / "killed" / "call.json").write_text(json.dumps({"call_id": "killed", "complete": False}))
    write_wav(out / "finished" / "audio" / "mixed.wav", voice[:100])
    (out / "finished" / "call.json").write_text(json.dumps({"call_id": "finished", "complete": True}))

    engine = MediaEngine(MediaOptions(public_url="https://bot.example", output_dir=out))
    await engine.start()
    await engine.stop()
    _, mixed = read_wav(out / "killed" / "audio" / "mixed.wav")
    assert np.array_equal(mixed, voice)  # the mix is rebuilt from the track
    assert json.loads((out / "killed" / "call.json").read_text())["recovered"] is True
    assert "recovered" not in json.loads((out / "finished" / "call.json").read_text())  # finished calls untouched
    assert engine.repaired == (out / "killed",)  # what the service indexes again


async def test_stop_closes_every_session_even_when_one_close_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mediabot.media.engine import MediaEngine
    from mediabot.media.session import MediaOptions

    engine = MediaEngine(MediaOptions(public_url="https://bot.example", output_dir=tmp_path / "out"))
    await engine.start()
    broken, first, last = (engine.open_session(call) for call in ("call-broken", "call-a", "call-b"))

    async def fails() -> dict[str, object]:
        raise OSError("the disk went away")

    monkeypatch.setattr(broken, "close", fails)
    await engine.stop()
    assert first.closed and last.closed
    assert json.loads((tmp_path / "out" / "call-b" / "call.json").read_text())["complete"] is True
    assert "closing it failed" in caplog.text and "the disk went away" in caplog.text
