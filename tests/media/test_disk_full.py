"""A full disk, for real: a call recorded onto a small tmpfs until it fills, then the next call once there is room.

The output folder is a tmpfs mounted for the test (``mount -t tmpfs -o size=…``; skipped with the reason when this
machine does not allow it). Two publishers stream over real WebRTC: Ann speaks twice, Ben presses digits after the
disk has filled. The disk fills within the first seconds; the test then checks that:

* the failure is reported clearly: the call plane's ``on_media_error`` with the file and "No space left on device",
  and an ERROR log line saying the same;
* the call goes on: speech segments and DTMF tones that started after the disk filled still reach the listener;
* every WAV on the full disk is a valid file whose header sizes are exactly what it holds (whole samples);
* the session still closes cleanly, and after the tmpfs is given room again the next call records complete files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from mediabot.media.dtmf import dtmf_tone
from mediabot.media.engine import MediaEngine
from mediabot.media.pipeline import TIMELINE_LEAD
from mediabot.media.session import RosterEntry, SpeechEvent, ToneEvent

from .conftest import RATE, WhipServer, serving_whip, wav_header_matches, whip_options

FIXTURES = Path(__file__).parent.parent / "fixtures" / "audio"
DISK_BYTES = 160 * 1024  # three 16 kHz tracks (Ann, Ben, the mix) fill it in under 2 s
ROOMY = "64m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of :data:`DISK_BYTES`, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs on this machine: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def remount(mount: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], capture_output=True, check=True)


@pytest.fixture
async def served(small_disk: Path, tmp_path: Path) -> AsyncIterator[WhipServer]:
    def engine(base_url: str) -> MediaEngine:
        return MediaEngine(dataclasses.replace(whip_options(base_url, tmp_path), output_dir=small_disk))

    async with serving_whip(engine) as (plane, base_url, client):
        yield WhipServer(engine=plane, base_url=base_url, client=client)


class Heard:
    """The call plane's side: what the media plane reported, each with the timeline second it was reported at."""

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self.errors: list[tuple[str, str]] = []
        self.speech: list[tuple[float, SpeechEvent]] = []
        self.tones: list[tuple[float, ToneEvent]] = []
        self.full_at: float | None = None
        engine.set_listener(self)

    def _now(self, call_id: str) -> float:
        session = self.engine.for_call(call_id)
        assert session is not None
        return session.clock.position() / 16_000

    def on_speech(self, event: SpeechEvent) -> None:
        self.speech.append((self._now(event.call_id), event))

    def on_tone(self, event: ToneEvent) -> None:
        self.tones.append((self._now(event.call_id), event))

    def on_media_error(self, call_id: str, message: str) -> None:
        self.errors.append((call_id, message))
        if self.full_at is None:
            self.full_at = self._now(call_id)


def speech_48k() -> npt.NDArray[np.int16]:
    with wave.open(str(FIXTURES / "speech_fox.wav"), "rb") as reader:
        rate = reader.getframerate()
        samples = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
    return soxr.resample(samples, rate, RATE).astype(np.int16)


def silence(seconds: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * RATE), np.int16)


async def test_a_full_disk_is_reported_the_call_goes_on_and_the_next_call_records(
    served: WhipServer, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    engine = served.engine
    heard = Heard(engine)
    session = engine.open_session("call-full")
    session.roster_changed([RosterEntry("p-ann", "Ann", ("1",)), RosterEntry("p-ben", "Ben", ("2",))])
    speech = speech_48k()
    ann = np.concatenate([silence(0.3), speech, silence(0.8), speech, silence(0.5)])
    digits = np.concatenate([np.concatenate([dtmf_tone(d, 0.12, RATE), silence(0.12)]) for d in "159"])
    ben = np.concatenate([silence(5.0), digits, silence(ann.size / RATE - 5.0 - digits.size / RATE)])
    blob = engine.blob_for(session)
    publisher_ann, track_ann = await served.publish(blob.endpoint, blob.token, "1", ann)
    publisher_ben, track_ben = await served.publish(blob.endpoint, blob.token, "2", ben)
    assert track_ann is not None and track_ben is not None
    await track_ann.finished.wait()
    await track_ben.finished.wait()
    await served.unpublish(publisher_ann, blob.token)
    await served.unpublish(publisher_ben, blob.token)
    summary = await engine.close_session(session.id)
    assert session.closed and summary is not None

    # Reported, clearly, once per file that could not be written; the call's media went on regardless.
    assert heard.full_at is not None, "the disk never filled: make DISK_BYTES smaller"
    assert heard.full_at < 3.5
    messages = [message for call_id, message in heard.errors if call_id == "call-full"]
    assert messages and all("No space left on device" in m for m in messages), messages
    assert any(".wav" in m for m in messages)
    # The last word, call.json: either it fitted, or its failure is reported like the rest (not only a traceback).
    call_json = small_disk / "call-full" / "call.json"
    finished = call_json.is_file() and json.loads(call_json.read_text()).get("complete") is True
    assert finished or any("call.json could not be written" in m for m in messages), messages
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and "No space left on device" in r.getMessage()]
    assert logged and all("call-full" in r.getMessage() for r in logged)
    assert session.errors == messages[: len(session.errors)] and session.errors
    # Ann's second sentence starts after the disk filled; Ben's digits come later still.
    later_speech = [e for at, e in heard.speech if at > heard.full_at]
    assert later_speech and all(e.participant_id == "p-ann" for e in later_speech)
    assert later_speech[-1].segment.start_s > heard.full_at
    assert [t.digit for at, t in heard.tones if at > heard.full_at] == ["1", "5", "9"]
    assert all(t.participant_id == "p-ben" and t.start_s > heard.full_at for _, t in heard.tones)

    # What is on the full disk is readable: every WAV's header says exactly what it holds.
    wavs = sorted((small_disk / "call-full" / "audio").glob("*.wav"))
    assert wavs, "nothing was recorded before the disk filled"
    for path in wavs:
        assert wav_header_matches(path), path.name
        with wave.open(str(path), "rb") as reader:
            assert reader.getnframes() > 0
    used = os.statvfs(small_disk)
    assert used.f_bavail * used.f_frsize < 16 * 1024  # it really was full

    # Room again: the next call records completely.
    remount(small_disk, ROOMY)
    errors_before = len(heard.errors)
    after = engine.open_session("call-after")
    after.roster_changed([RosterEntry("p-ann", "Ann", ("1",))])
    blob = engine.blob_for(after)
    clip = np.concatenate([speech, silence(0.3)])
    publisher, track = await served.publish(blob.endpoint, blob.token, "1", clip)
    assert track is not None
    await track.finished.wait()
    await served.unpublish(publisher, blob.token)
    await engine.close_session(after.id)
    assert heard.errors[errors_before:] == [] and after.errors == []
    folder = small_disk / "call-after"
    meta = json.loads((folder / "call.json").read_text())
    assert meta["complete"] is True and "errors" not in meta
    recorded = {path.name: path for path in (folder / "audio").glob("*.wav")}
    assert set(recorded) == {"p-ann.wav", "mixed.wav"}
    assert all(wav_header_matches(path) for path in recorded.values())
    with wave.open(str(recorded["p-ann.wav"]), "rb") as reader:
        # The whole clip on the timeline (the publisher pads its last packet, the recorder its last frame).
        assert clip.size // 3 - 2 * 320 <= reader.getnframes() <= clip.size // 3 + TIMELINE_LEAD + 2 * 320
    assert [json.loads(line)["participant_id"] for line in (folder / "segments.jsonl").read_text().splitlines()]
