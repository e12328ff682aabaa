"""A call's speech is transcribed live, written as transcript files and indexed for search (real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from mediabot.sandbox import SandboxServer
from mediabot.store.index import INDEX_FILE, RecordingsIndex

from .conftest import ServiceServer, wait_for

CLIPS = Path(__file__).parent.parent.parent / "mediabot" / "sandbox" / "scenarios"


def test_a_call_is_transcribed_live_and_searchable(sandbox: SandboxServer, tmp_path: Path) -> None:
    scenario = tmp_path / "talk.json"
    scenario.write_text(
        json.dumps(
            {
                "name": "talk",
                "kind": "incoming",
                "duration": 5.0,
                "participants": [{"name": "Adele Vance", "audio": str(CLIPS / "adele-vance.wav")}],
            }
        )
    )
    out = tmp_path / "out"
    service = ServiceServer(sandbox, output_dir=out, transcriber="pocketsphinx").start()
    try:
        with httpx.Client(base_url=sandbox.base_url, verify=sandbox.ssl_context(), trust_env=False) as http:
            run = http.post(
                "/_sandbox/scenarios",
                json={"path": str(scenario), "callback_uri": f"{service.base_url}/api/calling"},
            ).json()
        folder = out / run["call_id"]
        # Written once the call has ended and its last segment is transcribed.
        wait_for(lambda: (folder / "transcript.vtt").is_file(), "the call's transcript", timeout=90)
        metrics = service.client.get("/metrics").text
    finally:
        service.stop()
    assert "mediabot_transcription_backlog 0.0" in metrics
    entries = json.loads((folder / "transcript.json").read_text())["entries"]
    assert entries and all(e["display_name"] == "Adele Vance" and e["backend"] == "pocketsphinx" for e in entries)
    words = [w for e in entries for w in e["text"].split() if len(w) >= 4]
    assert words, entries  # the recogniser heard words in her speech
    assert (folder / "transcript.srt").read_text().startswith("1\n")
    with RecordingsIndex(out / INDEX_FILE) as index:
        hits = index.search(words[0])
    assert hits and hits[0].call_id == run["call_id"] and hits[0].display_name == "Adele Vance"
    assert 0.0 <= hits[0].start < 5.0
