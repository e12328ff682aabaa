"""``/v1/recordings`` over the real service: call folders written like the recorder writes them, indexed for real."""

from __future__ import annotations

import json
import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from mediabot.audio import SAMPLE_RATE
from mediabot.sandbox import SandboxServer
from mediabot.store.index import INDEX_FILE, RecordingsIndex
from mediabot.store.layout import WAV_HEADER_BYTES
from tests.service.conftest import API_KEY, ServiceServer

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Line:
    """One participant's utterance: where it is placed on the call timeline and what was said."""

    participant_id: str
    display_name: str
    source_id: str
    wav: Path
    at_s: float
    text: str


CALL_KEY = "5f0e8a1c-2b7d-4e39-9c61-0d4f3a2b1e77"
SESSION_KEY = "k3J9xQ2mVb7TzY1w"
CALL_SECONDS = 8.0
SESSION_SECONDS = 4.0
ADELE = "d8335f20-8421-4e72-87a0-08f95cdd2676"
ALEX = "9c536ba1-ab40-4eb1-a61e-e199db6b363f"
CALL_LINES = (
    Line(ADELE, "Adele Vance", "4", SPEECH / "austen_0880.wav", 0.5, "he was not an ill disposed young man"),
    Line(ALEX, "Alex Wilber", "5", SPEECH / "austen_0930.wav", 4.0, "he might even have been made amiable himself"),
)
# Where each fixture's speech is (its README): the segment the VAD would have cut, padded a little.
SPEECH_SPANS = {"austen_0880.wav": (0.25, 2.77), "austen_0930.wav": (0.27, 3.04)}


def read_wav(path: Path) -> npt.NDArray[np.int16]:
    """The samples of a 16 kHz mono 16-bit WAV."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)


def _write_wav(path: Path, samples: npt.NDArray[np.int16]) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples.astype("<i2").tobytes())


def _track(line: Line, total: int) -> npt.NDArray[np.int16]:
    track = np.zeros(total, np.int16)
    speech = read_wav(line.wav)
    start = round(line.at_s * SAMPLE_RATE)
    track[start : start + speech.size] = speech[: total - start]
    return track


def _segment(line: Line) -> dict[str, Any]:
    first, last = SPEECH_SPANS[line.wav.name]
    start, end = round(line.at_s + first - 0.1, 3), round(line.at_s + last + 0.1, 3)
    return {
        "source_id": line.source_id,
        "participant_id": line.participant_id,
        "display_name": line.display_name,
        "start": start,
        "end": end,
        "duration": round(end - start, 3),
        "reason": "silence",
    }


def _files(total: int, tracks: dict[str, str]) -> dict[str, Any]:
    seconds = total / SAMPLE_RATE
    entry = {"samples": total, "seconds": seconds, "late_samples": 0, "dropped_samples": 0, "error": None, "ogg": None}
    return {
        "samples": total,
        "seconds": seconds,
        "tracks": {source: {"path": path, **entry} for source, path in tracks.items()},
        "mixed": {"path": "audio/mixed.wav", **entry},
        "late_samples": 0,
        "dropped_samples": 0,
        "errors": [],
    }


def _tone(digit: str, at: float) -> dict[str, Any]:
    event = {"t": at + 0.1, "type": "tone", "digit": digit, "source_id": "5", "participant_id": ALEX}
    return {**event, "start": at, "end": at + 0.08}


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _write_transcript(folder: Path, key: str, segments: list[dict[str, Any]], texts: list[str]) -> None:
    entries = [
        {**{k: s[k] for k in ("participant_id", "display_name", "source_id", "start", "end")}, "text": text}
        for s, text in zip(segments, texts, strict=True)
    ]
    for entry in entries:
        entry.update(backend="pocketsphinx", words=[])
    (folder / "transcript.json").write_text(json.dumps({"call_id": key, "entries": entries}, indent=2))
    (folder / "transcript.vtt").write_text("WEBVTT\n\n" + "".join(f"{e['text']}\n\n" for e in entries))
    (folder / "transcript.srt").write_text("".join(f"{i}\n{e['text']}\n\n" for i, e in enumerate(entries, 1)))


def write_call(output: Path, key: str = CALL_KEY) -> Path:
    """A finished two-person Teams call as the bot leaves it: WAVs per participant and mixed, segments, events
    (joins, DTMF, a leave), a transcript and call.json."""
    folder = output / key
    (folder / "audio").mkdir(parents=True)
    total = round(CALL_SECONDS * SAMPLE_RATE)
    tracks = [_track(line, total) for line in CALL_LINES]
    for line, track in zip(CALL_LINES, tracks, strict=True):
        _write_wav(folder / "audio" / f"{line.participant_id}.wav", track)
    mixed = np.clip(np.sum([t.astype(np.int32) for t in tracks], axis=0), -32768, 32767).astype(np.int16)
    _write_wav(folder / "audio" / "mixed.wav", mixed)
    segments = [_segment(line) for line in CALL_LINES]
    _write_jsonl(folder / "segments.jsonl", segments)
    _write_jsonl(
        folder / "events.jsonl",
        [
            {"t": -0.1, "type": "source_connected", "source_id": "4", "codec": "audio/opus"},
            {"t": -0.1, "type": "source_connected", "source_id": "5", "codec": "audio/opus"},
            {"t": -0.05, "type": "state", "state": "established"},
            {"t": 0.0, "type": "participant_joined", "participant_id": ADELE, "display_name": "Adele Vance"},
            {"t": 0.0, "type": "participant_joined", "participant_id": ALEX, "display_name": "Alex Wilber"},
            *[_tone(digit, at) for digit, at in (("4", 7.4), ("2", 7.6), ("#", 7.8))],
            {"t": 7.9, "type": "participant_left", "participant_id": ADELE, "display_name": "Adele Vance"},
            {"t": 7.99, "type": "media_ended"},
        ],
    )
    _write_transcript(folder, key, segments, [line.text for line in CALL_LINES])
    meta = {
        "call_id": key,
        "session_id": "6BQYeb3P2Axy1Db_",
        "created": "2026-11-29T07:26:06.682805Z",
        "ended": "2026-11-29T07:26:15.081139Z",
        "complete": True,
        "sample_rate": SAMPLE_RATE,
        "receive": "unmixed",
        "participants": [
            {
                "id": line.participant_id,
                "display_name": line.display_name,
                "source_ids": [line.source_id],
                "file": f"audio/{line.participant_id}.wav",
            }
            for line in CALL_LINES
        ],
        "unattributed_sources": [],
        "recording": {
            "segments": 2,
            "tones": ["4", "2", "#"],
            "files": _files(total, {line.source_id: f"audio/{line.participant_id}.wav" for line in CALL_LINES}),
        },
    }
    (folder / "call.json").write_text(json.dumps(meta, indent=2))
    return folder


def write_session(output: Path, key: str = SESSION_KEY) -> Path:
    """A standalone (browser join) session, an hour later than the call: its publisher's track is ``main``."""
    folder = output / key
    (folder / "audio").mkdir(parents=True)
    total = round(SESSION_SECONDS * SAMPLE_RATE)
    line = Line("", "", "main", SPEECH / "austen_0930.wav", 0.3, "he might even have made amiable himself")
    track = _track(line, total)
    _write_wav(folder / "audio" / "main.wav", track)
    _write_wav(folder / "audio" / "mixed.wav", track)
    first, last = SPEECH_SPANS[line.wav.name]
    start, end = round(line.at_s + first, 3), round(line.at_s + last, 3)
    segment: dict[str, Any] = {
        "source_id": "main",
        "participant_id": None,
        "display_name": None,
        "start": start,
        "end": end,
    }
    _write_jsonl(folder / "segments.jsonl", [segment])
    _write_jsonl(folder / "events.jsonl", [{"t": 0.0, "type": "source_connected", "source_id": "main"}])
    _write_transcript(folder, key, [segment], [line.text])
    meta: dict[str, Any] = {
        "call_id": None,
        "session_id": key,
        "created": "2026-11-29T08:30:00.000000Z",
        "ended": "2026-11-29T08:30:04.100000Z",
        "complete": True,
        "sample_rate": SAMPLE_RATE,
        "receive": "unmixed",
        "participants": [],
        "unattributed_sources": [],
        "recording": {"segments": 1, "tones": [], "files": _files(total, {"main": "audio/main.wav"})},
    }
    (folder / "call.json").write_text(json.dumps(meta, indent=2))
    return folder


def index_folders(output: Path) -> None:
    """Index what is in ``output`` as ``mediabot recordings reindex`` does (its own connection to the file)."""
    with RecordingsIndex(output / INDEX_FILE) as index:
        index.reindex(output)


@pytest.fixture
def recorded(sandbox: SandboxServer, tmp_path: Path) -> Iterator[ServiceServer]:
    """The service over an output folder holding the call and the session, indexed before it starts."""
    output = tmp_path / "out"
    write_call(output)
    write_session(output)
    index_folders(output)
    server = ServiceServer(sandbox, output_dir=output, transcriber="none").start()
    try:
        yield server
    finally:
        server.stop()


def _plain(service: ServiceServer, path: str, **headers: str) -> httpx.Response:
    """A request without the API key (the client's default bearer removed)."""
    return service.client.get(path, headers={"Authorization": "", **headers})


# -- auth --------------------------------------------------------------------------------------------------------------


def test_recordings_need_the_key_or_the_console_cookie(recorded: ServiceServer) -> None:
    audio = f"/v1/recordings/{CALL_KEY}/audio/mixed.wav"
    for path in ("/v1/recordings", f"/v1/recordings/{CALL_KEY}", audio, "/v1/recordings/search?q=man"):
        assert _plain(recorded, path).status_code == 401, path
        assert _plain(recorded, path, Authorization="Bearer not-the-key").status_code == 401, path
    assert _plain(recorded, f"/v1/recordings/{CALL_KEY}/timeline.png").status_code == 401
    login = recorded.client.post("/console/login", json={"api_key": API_KEY}, headers={"Authorization": ""})
    cookie = f"mediabot_console={login.cookies['mediabot_console']}"
    # What an <audio> or <img> element sends: the cookie alone.
    assert _plain(recorded, "/v1/recordings", Cookie=cookie).status_code == 200
    assert _plain(recorded, audio, Cookie=cookie).status_code == 200
    # A state change riding on the cookie from another origin is refused; this router has only reads.
    foreign = {"Authorization": "", "Cookie": cookie, "Origin": "https://evil.example"}
    assert recorded.client.post("/v1/sessions", headers=foreign).status_code == 403
    assert recorded.client.post("/v1/recordings", headers=foreign).status_code == 405


# -- listing and detail ------------------------------------------------------------------------------------------------


def test_the_list_is_newest_first_with_participants_and_transcript_counts(recorded: ServiceServer) -> None:
    body = recorded.client.get("/v1/recordings").json()
    assert body["total"] == 2 and body["offset"] == 0
    session, call = body["recordings"]
    assert session["key"] == SESSION_KEY and session["standalone"] is True and session["call_id"] is None
    assert session["session_id"] == SESSION_KEY and session["participants"] == []
    assert call["key"] == CALL_KEY and call["call_id"] == CALL_KEY and call["standalone"] is False
    assert call["participants"] == ["Adele Vance", "Alex Wilber"]
    assert call["created"] == "2026-11-29T07:26:06.682805Z" and call["ended"] == "2026-11-29T07:26:15.081139Z"
    assert call["duration_s"] == pytest.approx(CALL_SECONDS)
    assert (call["segments"], call["transcribed"], call["has_transcript"]) == (2, 2, True)
    assert call["complete"] is True and call["url"] == f"/v1/recordings/{CALL_KEY}"
    paged = recorded.client.get("/v1/recordings", params={"limit": 1, "offset": 1}).json()
    assert [r["key"] for r in paged["recordings"]] == [CALL_KEY] and paged["total"] == 2
    assert recorded.client.get("/v1/recordings", params={"limit": 0}).status_code == 422


def test_a_recording_has_its_metadata_transcript_tones_timeline_and_files(recorded: ServiceServer) -> None:
    detail = recorded.client.get(f"/v1/recordings/{CALL_KEY}").json()
    assert detail["key"] == CALL_KEY and detail["indexed"] is True
    assert detail["call"]["participants"][1]["display_name"] == "Alex Wilber"
    assert [(p["display_name"], p["segments"]) for p in detail["participants"]] == [
        ("Adele Vance", 1),
        ("Alex Wilber", 1),
    ]
    assert [s["start"] for s in detail["segments"]] == [0.65, 4.17]
    assert [(line["display_name"], line["start"], line["text"]) for line in detail["transcript"]] == [
        ("Adele Vance", 0.65, CALL_LINES[0].text),
        ("Alex Wilber", 4.17, CALL_LINES[1].text),
    ]
    assert [t["digit"] for t in detail["tones"]] == ["4", "2", "#"]
    assert {e["type"] for e in detail["events"]} >= {"participant_joined", "participant_left", "tone", "media_ended"}

    timeline = detail["timeline"]
    assert timeline["duration"] == pytest.approx(CALL_SECONDS)
    adele, alex = timeline["lanes"]
    assert (adele["label"], adele["participant_id"]) == ("Adele Vance", ADELE)
    assert adele["segments"] == [{"start": 0.65, "end": 3.37}] and adele["presence"] == [{"start": 0.0, "end": 7.9}]
    assert [t["digit"] for t in alex["tones"]] == ["4", "2", "#"]
    assert detail["timeline_url"] == f"/v1/recordings/{CALL_KEY}/timeline.png"

    base = f"/v1/recordings/{CALL_KEY}/audio"
    assert [(a["kind"], a["label"], a["participant_id"], a["url"]) for a in detail["audio"]] == [
        ("mixed", "Mix of all tracks", None, f"{base}/mixed.wav"),
        ("participant", "Adele Vance", ADELE, f"{base}/{ADELE}.wav"),
        ("participant", "Alex Wilber", ALEX, f"{base}/{ALEX}.wav"),
    ]
    assert all(a["seconds"] == pytest.approx(CALL_SECONDS) for a in detail["audio"])
    assert [a["source_ids"] for a in detail["audio"]] == [[], ["4"], ["5"]]
    names = [f["name"] for f in detail["files"]]
    assert names == sorted(
        ["call.json", "events.jsonl", "segments.jsonl", "transcript.json", "transcript.srt", "transcript.vtt"]
    )
    vtt = recorded.client.get(f"/v1/recordings/{CALL_KEY}/files/transcript.vtt")
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.headers["x-content-type-options"] == "nosniff"


def test_a_sessions_publisher_track_is_named_as_such(recorded: ServiceServer) -> None:
    detail = recorded.client.get(f"/v1/recordings/{SESSION_KEY}").json()
    assert detail["call"]["call_id"] is None
    assert [(a["kind"], a["label"], a["source_ids"]) for a in detail["audio"]] == [
        ("mixed", "Mix of all tracks", []),
        ("source", "Publisher (main)", ["main"]),
    ]
    assert [line["source_id"] for line in detail["transcript"]] == ["main"]


def test_unknown_keys_and_files_outside_the_listing_are_404(recorded: ServiceServer, tmp_path: Path) -> None:
    output = tmp_path / "out"
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF not yours")
    (output / CALL_KEY / "audio" / "linked.wav").symlink_to(secret)
    (output / "linked-call").symlink_to(output / CALL_KEY, target_is_directory=True)
    (output / ".hidden").mkdir()
    (output / ".hidden" / "call.json").write_text("{}")
    (output / "no-call-json").mkdir()
    base = f"/v1/recordings/{CALL_KEY}"
    for path in (
        "/v1/recordings/not-a-call",
        "/v1/recordings/%2E%2E",
        "/v1/recordings/.hidden",
        "/v1/recordings/no-call-json",
        "/v1/recordings/linked-call",
        "/v1/recordings/linked-call/audio/mixed.wav",
        "/v1/recordings/not-a-call/timeline.png",
        f"{base}/audio/linked.wav",  # a symlink in the folder: not a file of the recording
        f"{base}/audio/call.json",  # in the folder, not in its audio
        f"{base}/audio/%2E%2E%2Fcall.json",
        f"{base}/audio/%2E%2E",
        f"{base}/audio/missing.wav",
        f"{base}/files/index.sqlite3",
        f"{base}/files/%2E%2E%2Findex.sqlite3",
        f"{base}/files/audio",
    ):
        response = recorded.client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert b"RIFF not yours" not in response.content
    assert recorded.client.get(f"{base}/audio/mixed.wav").status_code == 200


# -- audio -------------------------------------------------------------------------------------------------------------


def test_audio_is_served_whole_and_by_byte_range(recorded: ServiceServer, tmp_path: Path) -> None:
    path = tmp_path / "out" / CALL_KEY / "audio" / f"{ALEX}.wav"
    data = path.read_bytes()
    url = f"/v1/recordings/{CALL_KEY}/audio/{ALEX}.wav"
    whole = recorded.client.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "audio/wav"
    assert whole.headers["accept-ranges"] == "bytes"
    assert "private" in whole.headers["cache-control"]
    # Where a player seeks to: Alex's speech, 4.3 s in.
    start = WAV_HEADER_BYTES + round(4.3 * SAMPLE_RATE) * 2
    part = recorded.client.get(url, headers={"Range": f"bytes={start}-{start + 3199}"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes {start}-{start + 3199}/{len(data)}"
    assert part.content == data[start : start + 3200]
    assert np.abs(np.frombuffer(part.content, np.int16)).max() > 1000, "not the speech it should be"
    tail = recorded.client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == data[-100:]
    beyond = recorded.client.get(url, headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416


# -- timeline ----------------------------------------------------------------------------------------------------------


def test_the_timeline_is_drawn_when_missing_or_stale_and_reused_when_fresh(
    recorded: ServiceServer, tmp_path: Path
) -> None:
    folder = tmp_path / "out" / CALL_KEY
    picture = folder / "timeline.png"
    assert not picture.exists()
    url = f"/v1/recordings/{CALL_KEY}/timeline.png"
    first = recorded.client.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.content.startswith(PNG_SIGNATURE) and picture.read_bytes() == first.content
    drawn = picture.stat().st_mtime_ns
    assert recorded.client.get(url).content == first.content
    assert picture.stat().st_mtime_ns == drawn, "a fresh picture was drawn again"
    # Alex's segment grows: the picture is older than its data now, so it is drawn again and differs.
    segments = (folder / "segments.jsonl").read_text().splitlines()
    longer = json.loads(segments[1]) | {"end": 7.2}
    (folder / "segments.jsonl").write_text(f"{segments[0]}\n{json.dumps(longer)}\n")
    os.utime(picture, ns=(drawn, drawn))
    os.utime(folder / "segments.jsonl", ns=(drawn + 1_000_000_000, drawn + 1_000_000_000))
    redrawn = recorded.client.get(url)
    assert redrawn.status_code == 200 and redrawn.content != first.content
    assert picture.stat().st_mtime_ns > drawn


# -- search ------------------------------------------------------------------------------------------------------------


def test_search_finds_transcript_lines_with_marked_snippets(recorded: ServiceServer) -> None:
    found = recorded.client.get("/v1/recordings/search", params={"q": "amiable"}).json()
    assert found["marks"] == ["\x02", "\x03"]
    hits = found["hits"]
    assert {(hit["key"], hit["display_name"]) for hit in hits} == {(CALL_KEY, "Alex Wilber"), (SESSION_KEY, None)}
    alex = next(hit for hit in hits if hit["key"] == CALL_KEY)
    assert (alex["start"], alex["end"]) == (4.17, 7.14)
    assert alex["text"] == CALL_LINES[1].text
    assert "\x02amiable\x03" in alex["snippet"]
    # A phrase, a prefix, a speaker's name, and words from two different lines (no line has both).
    phrase = recorded.client.get("/v1/recordings/search", params={"q": '"ill disposed"'}).json()["hits"]
    assert [hit["key"] for hit in phrase] == [CALL_KEY]
    assert len(recorded.client.get("/v1/recordings/search", params={"q": "dispos*"}).json()["hits"]) == 1
    by_name = recorded.client.get("/v1/recordings/search", params={"q": "adele"}).json()["hits"]
    assert [h["display_name"] for h in by_name] == ["Adele Vance"]
    assert recorded.client.get("/v1/recordings/search", params={"q": "amiable disposed"}).json()["hits"] == []


def test_search_refuses_a_query_with_nothing_to_search_and_survives_fts_syntax(recorded: ServiceServer) -> None:
    for query in ("", "   ", '*"', "- :"):
        response = recorded.client.get("/v1/recordings/search", params={"q": query})
        assert response.status_code == 400, query
        assert response.json()["detail"], query
    assert "empty" in recorded.client.get("/v1/recordings/search").json()["detail"]
    # FTS5 operators and broken syntax are searched as words, never a 500.
    for query in ('NEAR(man "young', "man AND OR", 'he"', "young:man", "(man", "man*)"):
        response = recorded.client.get("/v1/recordings/search", params={"q": query})
        assert response.status_code == 200, (query, response.text)
    assert recorded.client.get("/v1/recordings/search", params={"q": 'young "man'}).json()["hits"]


def test_without_app_hosted_media_there_are_no_recordings(sandbox: SandboxServer, tmp_path: Path) -> None:
    server = ServiceServer(sandbox, output_dir=tmp_path, media="service-hosted").start()
    try:
        response = server.client.get("/v1/recordings")
    finally:
        server.stop()
    assert response.status_code == 409
    assert "app-hosted" in response.json()["detail"]
