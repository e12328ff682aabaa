"""``mediabot demo --scenario``: sandbox and bot as two processes, a scripted meeting, and what the bot wrote."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from mediabot.demo_call import summarize_call
from mediabot.media.pipeline import REFINE_FRAMES
from mediabot.sandbox._scenario import load_scenario, prepare

CLIPS = Path(__file__).parent.parent / "mediabot" / "sandbox" / "scenarios"
FRAME = 320


def write_scenario(folder: Path) -> Path:
    path = folder / "three.yaml"
    path.write_text(
        f"""
name: Three of us
kind: meeting
duration: 11
participants:
  - name: Ann
    audio: {CLIPS / "adele-vance.wav"}
  - name: Ben
    audio: {CLIPS / "alex-wilber.wav"}
    dtmf:  # at 7.7 s the seeded loss spares the digits (at 8.5 s the 9 lost its first packet and Opus's
      - at: 7.7  # recovery frame, leaving 40 ms of tone: the detector's minimum, heard or not by frame phase)
        digits: "5*9"
    network:
      loss: 0.05
      jitter_ms: 40
  - name: Cy
    audio: {CLIPS / "megan-bowen.wav"}
    join_at: 4.0
    leave_at: 9.0
""",
        "utf-8",
    )
    return path


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def aligned(
    recorded: npt.NDArray[np.int16], reference: npt.NDArray[np.int16], start: int, valid: npt.NDArray[np.bool_]
) -> tuple[int, float]:
    """Where ``reference`` sits in ``recorded`` near ``start`` (±0.2 s), and the correlation there over ``valid``."""
    a = recorded.astype(np.float64)
    b = reference.astype(np.float64) * valid
    size = 1 << int(np.ceil(np.log2(a.size + b.size)))
    xc = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lo, hi = max(0, start - 3200), start + 3200
    offset = lo + int(np.argmax(xc[lo:hi]))
    window = a[offset : offset + b.size] * valid[: a[offset : offset + b.size].size]
    b = b[: window.size]
    return offset, float(np.dot(window, b) / (np.linalg.norm(window) * np.linalg.norm(b) + 1e-9))


def test_a_scripted_meeting_is_recorded_aligned_segmented_and_its_digits_heard(tmp_path: Path) -> None:
    scenario_path = write_scenario(tmp_path)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "mediabot", "demo", "--scenario", str(scenario_path), "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["failures"] == []
    folder = Path(summary["folder"])
    assert folder.parent == out.resolve()
    people = {p["display_name"]: p for p in summary["participants"]}
    assert set(people) == {"Ann", "Ben", "Cy"}  # the bot's own leg is not a participant
    assert people["Ben"]["tones"] == "5*9"
    assert all(people[name]["segments"] >= 1 for name in people)

    # The layout.
    assert {"call.json", "events.jsonl", "segments.jsonl", "audio/mixed.wav"} <= set(summary["files"])
    tracks = {name: read_wav(folder / people[name]["file"]) for name in people}
    mixed = read_wav(folder / "audio" / "mixed.wav")
    lengths = {track.size for track in tracks.values()} | {mixed.size}
    assert len(lengths) == 1  # every file of the call has the same length
    total = sum(track.astype(np.int32) for track in tracks.values())
    assert np.array_equal(mixed, np.clip(total, -32768, 32767))
    assert abs(mixed.size / 16000 - 11.0) < 0.5

    # Alignment: each recording against what the relay sent, where the scenario puts it on the call timeline.
    prepared = prepare(load_scenario(scenario_path))
    offsets = {}
    for name, track in tracks.items():
        sent = prepared.participant(name)
        reference = soxr.resample(sent.reference, 48000, 16000).astype(np.int16)
        # Where the relay dropped a packet the bot has silence, and Opus needs a few frames to recover after it:
        # compare everything else.
        good = np.zeros(len(sent.packets), bool)
        good[sent.kept] = True
        for lost in np.flatnonzero(~good):
            good[lost : lost + 4] = False
        valid = np.repeat(good, FRAME)[: reference.size]
        assert valid.mean() > (0.7 if sent.dropped else 0.99)
        # A stream's first second sits where its provisional anchor put it, up to a few ms late on a busy machine,
        # until the refined anchor drops the difference (StreamPipeline): compare what comes after.
        valid[: REFINE_FRAMES * FRAME] = False
        offset, corr = aligned(track, reference, int(sent.join_at * 16000), valid)
        assert corr >= 0.9, (name, corr)
        offsets[name] = offset
    # Ann and Ben started together; Cy joined 4 s later: one timeline, within one 20 ms frame.
    assert abs(offsets["Ann"] - offsets["Ben"]) <= FRAME
    assert abs(offsets["Cy"] - offsets["Ann"] - 4 * 16000) <= FRAME
    assert np.abs(tracks["Cy"][: offsets["Cy"] - FRAME]).max() == 0  # a late join is leading silence

    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    tones = [e for e in events if e["type"] == "tone"]
    assert [t["digit"] for t in tones] == ["5", "*", "9"]
    assert abs(tones[0]["start"] - (7.7 + offsets["Ann"] / 16000)) <= 0.04
    assert any(e["type"] == "participant_left" and e["display_name"] == "Cy" for e in events)
    segments = [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]
    assert all(s["participant_id"] in {p["id"] for p in summary["participants"]} for s in segments)

    again = summarize_call(folder)
    assert again.failures == [] and len(again.participants) == 3

    # The summary's timings and picture.
    assert summary["timeline"] == "timeline.png" and (folder / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["join_s"] is not None and summary["join_s"] > 0
    start, pipeline = summary["latency_ms"]["speech_start"], summary["latency_ms"]["pipeline"]
    assert start["n"] == len([s for s in segments if "latency_ms" in s]) >= 3
    assert start["p50"] <= start["p99"] and pipeline["p50"] < start["p50"]
    assert abs(people["Cy"]["joined_at"] - 4.0) < 1.0 and people["Ann"]["joined_at"] < 0.5


async def test_a_bot_killed_mid_call_loses_at_most_a_second_and_restarts_repaired_and_indexed(tmp_path: Path) -> None:
    import asyncio

    from mediabot.demo import SandboxProcess
    from mediabot.demo_call import BotProcess

    path = tmp_path / "long.json"
    path.write_text(
        json.dumps(
            {
                "name": "long",
                "kind": "incoming",
                "duration": 60,
                "participants": [
                    {"name": "Ann", "audio": str(CLIPS / "adele-vance.wav")},
                    {"name": "Cy", "audio": str(CLIPS / "megan-bowen.wav"), "join_at": 1.0},
                ],
            }
        )
    )
    out = tmp_path / "out"
    state = tmp_path / "state"
    state.mkdir()
    sandbox = SandboxProcess(state)
    await sandbox.start()
    bot: BotProcess | None = None
    try:
        bot = BotProcess(sandbox, out, state, {})
        await bot.start()
        run = await sandbox.admin(
            "POST", "/scenarios", {"path": str(path), "callback_uri": f"{bot.base_url}/api/calling"}
        )
        while (await sandbox.admin("GET", f"/scenarios/{run['id']}"))["status"] != "running":  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(6)
        # What the relay had sent of Ann (who speaks from the start) just before the kill: the bot heard at least that.
        sent = next(
            p for p in (await sandbox.admin("GET", f"/scenarios/{run['id']}"))["participants"] if p["name"] == "Ann"
        )
        await bot.kill()
        folder = out / run["call_id"]
        # What the killed bot left is readable as it is: every header matches its data.
        left = {wav.name: read_wav(wav) for wav in (folder / "audio").glob("*.wav")}
        assert len(left) == 3
        ann = left[f"{sent['participant_id']}.wav"]
        lost_s = (sent["sent"] * 320 - ann.size) / 16000
        assert lost_s <= 1.0, f"{lost_s:.2f} s of what Ann sent before the kill is not on disk"
        assert json.loads((folder / "call.json").read_text())["complete"] is False

        restarted = BotProcess(sandbox, out, state, {})
        await restarted.start()  # repairs at start-up, and indexes what it repaired
        async with restarted.client() as http:
            detail = (await http.get(f"/v1/recordings/{run['call_id']}")).json()
            listed = (await http.get("/v1/recordings")).json()["recordings"]
        await restarted.stop()
    finally:
        if bot is not None:
            await bot.stop()
        await sandbox.stop()
    meta = json.loads((folder / "call.json").read_text())
    assert meta["recovered"] is True
    # Indexed as the restarted bot started: listed, recovered, incomplete, as long as what was on disk.
    assert detail["indexed"] is True and detail["call"]["recovered"] is True
    (row,) = [r for r in listed if r["key"] == run["call_id"]]
    assert row["recovered"] is True and row["complete"] is False
    assert row["duration_s"] == pytest.approx(ann.size / 16000, abs=0.05)
    tracks = [read_wav(wav) for wav in (folder / "audio").glob("*.wav") if wav.name != "mixed.wav"]
    mixed = read_wav(folder / "audio" / "mixed.wav")
    assert {t.size for t in tracks} == {mixed.size}
    assert np.array_equal(mixed, np.clip(sum(t.astype(np.int32) for t in tracks), -32768, 32767))
