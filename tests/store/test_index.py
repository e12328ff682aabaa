"""The recordings index on real SQLite files over hand-written call folders: indexing, search, live updates, export."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mediabot._errors import MediaBotError
from mediabot.store import layout
from mediabot.store.index import (
    INDEX_FILE,
    RecordingsIndex,
    SearchQueryError,
    UnknownCallError,
    export_call,
    fts_query,
)
from mediabot.store.layout import wav_header
from mediabot.transcribe.base import TranscriptEntry, Word

ADELE = "p-adele"
MEGAN = "p-megan"


def write_wav(path: Path, samples: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wav_header(samples * 2) + bytes(samples * 2))


def entry(call_id: str, who: str, start: float, end: float, text: str) -> TranscriptEntry:
    name, source = {ADELE: ("Adele Vance", "4"), MEGAN: ("Mégan Bowen", "6")}[who]
    return TranscriptEntry(call_id, who, name, source, start, end, text, "test", (Word(text.split()[0], start, end),))


def write_call(
    root: Path,
    call_id: str,
    *,
    created: str = "2026-11-29T05:08:04.604527Z",
    transcript: list[TranscriptEntry] | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """A finished call as the bot leaves it: Adele says three things, Megan two; the transcript is optional."""
    folder = root / call_id
    write_wav(folder / "audio" / f"{ADELE}.wav", 1600)
    write_wav(folder / "audio" / f"{MEGAN}.wav", 1600)
    write_wav(folder / "audio" / "mixed.wav", 1600)
    call = meta or {
        "call_id": call_id,
        "session_id": "s1",
        "created": created,
        "ended": "2026-11-29T05:09:04Z",
        "complete": True,
        "sample_rate": 16000,
        "receive": "unmixed",
        "participants": [
            {"id": ADELE, "display_name": "Adele Vance", "source_ids": ["4"], "file": f"audio/{ADELE}.wav"},
            {"id": MEGAN, "display_name": "Mégan Bowen", "source_ids": ["6"], "file": f"audio/{MEGAN}.wav"},
        ],
        "recording": {"files": {"seconds": 60.0, "tracks": {}, "mixed": {"path": "audio/mixed.wav"}}},
    }
    (folder / "call.json").write_text(json.dumps(call))
    segments = [
        (ADELE, "4", 1.5, 4.0),
        (MEGAN, "6", 4.5, 6.0),
        (ADELE, "4", 7.0, 9.5),
        (MEGAN, "6", 10.0, 12.25),
        (ADELE, "4", 65.25, 66.0),
    ]
    with (folder / "segments.jsonl").open("w") as out:
        for pid, source, start, end in segments:
            name = "Adele Vance" if pid == ADELE else "Mégan Bowen"
            line = {
                "source_id": source,
                "participant_id": pid,
                "display_name": name,
                "start": start,
                "end": end,
                "duration": end - start,
                "reason": "silence",
            }
            out.write(json.dumps(line) + "\n")
    (folder / "events.jsonl").write_text(
        '{"t": 0.1, "type": "participant_joined", "participant_id": "p-adele"}\n{"t": 13.0, "type": "tone"}\n'
    )
    if transcript is not None:
        document = {"call_id": call_id, "entries": [e.to_json() for e in transcript]}
        (folder / "transcript.json").write_text(json.dumps(document))
        (folder / "transcript.vtt").write_text("WEBVTT\n")
    return folder


def standard_transcript(call_id: str) -> list[TranscriptEntry]:
    # Segment 4 (Megan, 10.0 s) is left untranscribed; the last Adele line (65.25 s) is.
    return [
        entry(call_id, ADELE, 1.5, 4.0, "The quarterly budget is ready."),
        entry(call_id, MEGAN, 4.5, 6.0, "Great, let's meet at the café."),
        entry(call_id, ADELE, 7.0, 9.5, "Budget quarterly review and or not, tomorrow."),
        entry(call_id, ADELE, 65.25, 66.0, "Der Müller kommt."),
    ]


@pytest.fixture
def out(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    write_call(root, "call-a", transcript=standard_transcript("call-a"))
    write_call(root, "call-b", created="2026-11-30T10:00:00Z")
    (root / "not-a-call").mkdir()
    return root


@pytest.fixture
def index(out: Path) -> Any:
    with RecordingsIndex(out / INDEX_FILE) as opened:
        yield opened


def test_a_word_said_in_a_call_is_found_with_its_speaker_and_time(out: Path, index: RecordingsIndex) -> None:
    index.index_call(out / "call-a")
    hits = sorted(index.search("budget"), key=lambda h: h.start)
    assert [(h.call_id, h.participant_id, h.display_name, h.start, h.end) for h in hits] == [
        ("call-a", ADELE, "Adele Vance", 1.5, 4.0),
        ("call-a", ADELE, "Adele Vance", 7.0, 9.5),
    ]
    assert hits[0].text == "The quarterly budget is ready."
    assert hits[0].snippet == "The quarterly [budget] is ready."
    assert hits[1].snippet == "[Budget] quarterly review and or not, tomorrow."
    assert hits[0].to_json()["display_name"] == "Adele Vance"
    marked = {h.start: h.snippet for h in index.search("budget", highlight=("<b>", "</b>"))}
    assert marked[1.5] == "The quarterly <b>budget</b> is ready."


def test_a_call_is_listed_and_shown_with_speaking_time_and_transcript(out: Path, index: RecordingsIndex) -> None:
    index.index_call(out / "call-a")
    index.index_call(out / "call-b")
    calls = index.list_calls()
    assert [c.call_id for c in calls] == ["call-b", "call-a"]  # newest first
    row = calls[1]
    assert (row.complete, row.recovered, row.duration_s, row.participants, row.segments, row.transcribed) == (
        True,
        False,
        60.0,
        2,
        5,
        4,
    )
    assert row.folder == str((out / "call-a").resolve())
    assert [c.call_id for c in index.list_calls(limit=1, offset=1)] == ["call-a"]

    detail = index.get_call("call-a")
    assert detail is not None
    speaking = {p.participant_id: (p.display_name, p.speaking_s, p.segments, p.file) for p in detail.participants}
    # The untranscribed segment of Megan still counts for her speaking time.
    assert speaking == {
        ADELE: ("Adele Vance", 5.75, 3, f"audio/{ADELE}.wav"),
        MEGAN: ("Mégan Bowen", 3.75, 2, f"audio/{MEGAN}.wav"),
    }
    assert [(line.start, line.text) for line in detail.transcript] == [
        (1.5, "The quarterly budget is ready."),
        (4.5, "Great, let's meet at the café."),
        (7.0, "Budget quarterly review and or not, tomorrow."),
        (10.0, None),
        (65.25, "Der Müller kommt."),
    ]
    document = json.loads(json.dumps(detail.to_json()))
    assert document["call_id"] == "call-a" and document["participants"][0]["speaking_s"] == 5.75
    assert document["transcript"][3]["text"] is None
    assert index.get_call("call-zzz") is None
    assert index.call_ids_starting_with("call-") == ["call-a", "call-b"]
    assert index.call_ids_starting_with("call-b") == ["call-b"]


def test_phrase_search_needs_the_words_together_and_in_order(out: Path, index: RecordingsIndex) -> None:
    index.index_call(out / "call-a")
    assert {h.start for h in index.search("budget quarterly")} == {1.5, 7.0}  # every word, any order
    assert [h.start for h in index.search('"quarterly budget"')] == [1.5]
    assert [h.start for h in index.search('"budget quarterly"')] == [7.0]
    assert index.search('"quarterly ready"') == []
    assert [h.snippet for h in index.search('"quarterly budget"')] == ["The [quarterly budget] is ready."]
    assert {h.start for h in index.search("quart*")} == {1.5, 7.0}  # a prefix


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '""',
        '"""',
        "AND OR NOT",
        "*",
        "'; DROP TABLE calls; --",
        "NEAR(budget ready)",
        "text:budget",
        "display_name : x",
        "^budget",
        "(((",
        'budget"',
        "-budget",
        "budget +",
        "💥 🎉",
        "\x00budget",
        "a" * 5000,
        "日本語のテキスト",
        "{text display_name}: budget",
    ],
)
def test_hostile_queries_never_raise_and_leave_the_index_intact(out: Path, index: RecordingsIndex, query: str) -> None:
    index.index_call(out / "call-a")
    assert isinstance(index.search(query), list)
    assert len(index.search("budget")) == 2
    assert index.list_calls()[0].call_id == "call-a"


def test_operators_and_punctuation_are_only_text(out: Path, index: RecordingsIndex) -> None:
    index.index_call(out / "call-a")
    assert [h.start for h in index.search("AND OR NOT")] == [7.0]  # the words themselves
    assert [h.start for h in index.search("let's")] == [4.5]
    assert [h.start for h in index.search("budget-ready")] == []  # a phrase of two words, not "budget NOT ready"
    assert fts_query('say "hi there" AND * pre*') == '"say" "hi there" "AND" "pre"*'
    assert fts_query('"unbalanced phrase') == '"unbalanced" "phrase"'
    assert [h.start for h in index.search('review "quarterly budget"')] == []  # the phrase is in another line
    assert [h.start for h in index.search('ready "quarterly budget"')] == [1.5]


def test_diacritics_and_case_do_not_matter(out: Path, index: RecordingsIndex) -> None:
    index.index_call(out / "call-a")
    assert [h.start for h in index.search("cafe")] == [4.5]
    assert [h.start for h in index.search("CAFÉ")] == [4.5]
    assert [h.start for h in index.search("muller")] == [65.25]
    assert [h.start for h in index.search("Müller")] == [65.25]
    # A speaker's name matches their lines, with or without accents.
    assert [h.start for h in index.search("megan")] == [4.5]
    assert {h.start for h in index.search("adele budget")} == {1.5, 7.0}


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_an_empty_query_is_a_value_error(index: RecordingsIndex, query: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        index.search(query)
    with pytest.raises(SearchQueryError):
        index.search(query)


def assert_fts_matches_segments(path: Path) -> None:
    """The full-text index holds exactly what the segments table holds (rank 1: compared with the content)."""
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO segments_fts (segments_fts, rank) VALUES ('integrity-check', 1)")
    raw.close()


def snapshot(index: RecordingsIndex) -> tuple[Any, ...]:
    calls = index.list_calls()
    details = [index.get_call(c.call_id) for c in calls]
    hits = [index.search(q) for q in ("budget", '"quarterly budget"', "cafe", "adele", "tomorrow")]
    return calls, details, hits


def test_reindex_rebuilds_the_same_results_from_disk(out: Path, tmp_path: Path) -> None:
    (out / "broken").mkdir()
    (out / "broken" / "call.json").write_text("{not json")
    with RecordingsIndex(out / INDEX_FILE) as index:
        index.index_call(out / "call-a")
        index.index_call(out / "call-b")
        before = snapshot(index)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{out / INDEX_FILE}{suffix}").unlink(missing_ok=True)
    with RecordingsIndex(out / INDEX_FILE) as index:
        assert index.list_calls() == []
        assert index.reindex(out) == 2  # not "not-a-call" (no call.json), not "broken" (unreadable)
        assert snapshot(index) == before
        # A reindex drops what is no longer on disk.
        index.index_call(write_call(tmp_path / "elsewhere", "call-gone"))
        assert index.reindex(out) == 2
        assert snapshot(index) == before
        assert_fts_matches_segments(index.path)


def test_index_call_is_idempotent_and_replaces_what_it_had(out: Path, index: RecordingsIndex) -> None:
    index.index_call(out / "call-a")
    first = snapshot(index)
    index.index_call(out / "call-a")
    assert snapshot(index) == first
    # The transcript is redone with other words: the old ones are no longer found.
    redone = [entry("call-a", ADELE, 1.5, 4.0, "Nothing about money.")]
    (out / "call-a" / "transcript.json").write_text(
        json.dumps({"call_id": "call-a", "entries": [e.to_json() for e in redone]})
    )
    index.index_call(out / "call-a")
    assert index.search("quarterly") == []
    assert [h.start for h in index.search("money")] == [1.5]
    assert_fts_matches_segments(index.path)
    detail = index.get_call("call-a")
    assert detail is not None and len(detail.transcript) == 5


def test_a_live_transcript_entry_is_searchable_at_once(out: Path, index: RecordingsIndex) -> None:
    # During the call: nothing indexed yet, transcript lines arrive one by one (starts not rounded like the file's).
    live = entry("call-live", MEGAN, 2.000_4, 3.5, "The invoice is overdue.")
    index.add_transcript_entry(live)
    hits = index.search("invoice")
    assert [(h.call_id, h.display_name, h.start) for h in hits] == [("call-live", "Mégan Bowen", 2.0004)]
    detail = index.get_call("call-live")
    assert detail is not None
    assert [(p.participant_id, p.speaking_s, p.segments) for p in detail.participants] == [(MEGAN, 1.5, 1)]

    # A known segment without text gets the text: still one segment, same speaking time.
    index.index_call(out / "call-a")
    index.add_transcript_entry(entry("call-a", MEGAN, 10.000_3, 12.25, "Send the invoice."))
    detail = index.get_call("call-a")
    assert detail is not None
    assert [(line.start, line.text) for line in detail.transcript][3] == (10.0, "Send the invoice.")
    assert len(detail.transcript) == 5
    assert {p.participant_id: p.speaking_s for p in detail.participants}[MEGAN] == 3.75
    assert {h.call_id for h in index.search("invoice")} == {"call-live", "call-a"}
    # The same line transcribed again replaces its text in the search too.
    index.add_transcript_entry(entry("call-a", MEGAN, 10.0, 12.25, "Send the receipt."))
    assert {h.call_id for h in index.search("invoice")} == {"call-live"}
    assert [h.start for h in index.search("receipt")] == [10.0]
    assert_fts_matches_segments(index.path)


def test_live_meta_then_entries_then_the_closed_call(out: Path, index: RecordingsIndex, tmp_path: Path) -> None:
    folder = tmp_path / "live" / "call-x"
    meta = {
        "call_id": "call-x",
        "created": "2026-12-01T09:00:00Z",
        "ended": None,
        "complete": False,
        "participants": [{"id": ADELE, "display_name": "Adele Vance", "source_ids": ["4"], "file": None}],
    }
    index.upsert_call_meta("call-x", meta, folder)
    index.add_transcript_entry(entry("call-x", ADELE, 1.5, 4.0, "The quarterly budget is ready."))
    row = index.list_calls()[0]
    assert (row.call_id, row.complete, row.ended, row.duration_s, row.participants, row.transcribed) == (
        "call-x",
        False,
        None,
        None,
        1,
        1,
    )
    # The call ends and is written like any other: indexing its folder gives the full picture, no duplicates.
    write_call(folder.parent, "call-x", transcript=[entry("call-x", ADELE, 1.5, 4.0, "The quarterly budget is ready.")])
    index.index_call(folder)
    detail = index.get_call("call-x")
    assert detail is not None and detail.call.complete and detail.call.duration_s == 60.0
    assert len(detail.transcript) == 5 and len(index.search("quarterly")) == 1
    index.remove_call("call-x")
    assert index.get_call("call-x") is None and index.search("quarterly") == []


def test_a_recovered_call_with_a_minimal_call_json_and_a_torn_segment_line(tmp_path: Path) -> None:
    root = tmp_path / "out"
    folder = write_call(root, "call-r", meta={"call_id": "call-r", "recovered": True, "recovered_at": "x"})
    write_wav(folder / "audio" / "mixed.wav", 8000)
    with (folder / "segments.jsonl").open("a") as torn:
        torn.write('{"source_id": "4", "start": 70.0, "en')
    with RecordingsIndex(root / INDEX_FILE) as index:
        assert index.reindex(root) == 1
        row = index.list_calls()[0]
        assert (row.recovered, row.complete, row.created, row.duration_s, row.segments) == (True, False, None, 0.5, 5)
        detail = index.get_call("call-r")
        assert detail is not None
        # Participants come from the segments when call.json has none.
        assert {p.participant_id: p.display_name for p in detail.participants} == {
            ADELE: "Adele Vance",
            MEGAN: "Mégan Bowen",
        }


def test_the_index_file_is_private_and_shared_with_a_second_connection(tmp_path: Path) -> None:
    path = tmp_path / "new" / "out" / INDEX_FILE
    old = os.umask(0)
    try:
        bot = RecordingsIndex(path)
    finally:
        os.umask(old)
    with bot, RecordingsIndex(path) as cli:
        bot.add_transcript_entry(entry("call-1", ADELE, 1.0, 2.0, "Hello from the bot."))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(f"{path}-wal").stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert [h.call_id for h in cli.search("hello")] == ["call-1"]  # the other process sees it at once
        cli.remove_call("call-1")
        assert bot.search("hello") == []
        # The CLI rebuilds the index under the bot, which goes on writing and reading.
        write_call(tmp_path / "rec", "call-2", transcript=standard_transcript("call-2"))
        assert cli.reindex(tmp_path / "rec") == 1
        bot.add_transcript_entry(entry("call-2", MEGAN, 10.0, 12.25, "Hello again."))
        assert [h.start for h in bot.search("hello")] == [10.0]
        assert len(cli.search("budget")) == 2
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
    raw.close()


def test_writes_from_many_threads_all_land(index: RecordingsIndex) -> None:
    def speak(n: int) -> None:
        for k in range(20):
            index.add_transcript_entry(entry("call-t", ADELE, n * 100 + k, n * 100 + k + 0.5, f"word{n}x{k} spoken"))

    threads = [threading.Thread(target=speak, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(index.search("spoken", limit=1000)) == 80
    assert_fts_matches_segments(index.path)
    detail = index.get_call("call-t")
    assert detail is not None and detail.participants[0].segments == 80


def test_an_index_of_an_older_schema_is_emptied_and_one_of_a_newer_is_left_alone(out: Path) -> None:
    path = out / INDEX_FILE
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE calls (whatever TEXT)")  # schema 0: before there was a version
    raw.close()
    with RecordingsIndex(path) as index:
        assert index.list_calls() == []
        assert index.reindex(out) == 2
        assert len(index.search("budget")) == 2
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(MediaBotError, match="newer mediabot"):
        RecordingsIndex(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM calls").fetchone()[0] == 2
    raw.close()


def test_export_zip_holds_the_call_files(out: Path, tmp_path: Path) -> None:
    folder = out / "call-a"
    (folder / "pending").mkdir()
    (folder / "pending" / "0000001500-4.wav").write_bytes(b"parked")
    (folder / ".call.json.123.tmp").write_text("{}")
    (folder / "notes.txt").write_text("not a recording file")
    path = export_call(out, "call-a", "zip", tmp_path / "exports")
    assert path == tmp_path / "exports" / "call-a.zip"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [
            "call-a/audio/mixed.wav",
            f"call-a/audio/{ADELE}.wav",
            f"call-a/audio/{MEGAN}.wav",
            "call-a/call.json",
            "call-a/events.jsonl",
            "call-a/segments.jsonl",
            "call-a/transcript.json",
            "call-a/transcript.vtt",
        ]
        assert archive.read("call-a/call.json") == (folder / "call.json").read_bytes()
        assert archive.read("call-a/audio/mixed.wav") == (folder / "audio" / "mixed.wav").read_bytes()
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["call-a.zip"]  # no temp file left


def test_export_json_round_trips(out: Path, tmp_path: Path) -> None:
    path = export_call(out, "call-a", "json", tmp_path)
    assert path.name == "call-a.json" and stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    folder = out / "call-a"
    assert document["call_id"] == "call-a"
    assert document["call"] == json.loads((folder / "call.json").read_text())
    assert document["segments"] == [json.loads(line) for line in (folder / "segments.jsonl").read_text().splitlines()]
    assert document["events"] == [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    entries = [TranscriptEntry.from_json("call-a", item) for item in document["transcript"]]
    assert entries == standard_transcript("call-a")
    assert [(p["id"], p["speaking_s"], p["segments"]) for p in document["participants"]] == [
        (ADELE, 5.75, 3),
        (MEGAN, 3.75, 2),
    ]
    assert "audio/mixed.wav" in document["files"]


@pytest.mark.parametrize("call_id", ["call-zzz", "../call-a", "", "not-a-call"])
def test_export_of_an_unknown_call_is_an_unknown_call_error(out: Path, tmp_path: Path, call_id: str) -> None:
    with pytest.raises(UnknownCallError):
        export_call(out, call_id, "zip", tmp_path / "exports")
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("kind", ["riff", "rf64", "44-byte", "damaged"])
def test_a_recovered_calls_duration_is_the_mix_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # No recording summary in call.json (the process died): the duration is the mix's sample count, from its header.
    root = tmp_path / "out"
    folder = write_call(root, "call-r", meta={"call_id": "call-r", "recovered": True})
    samples = 12345
    mixed = folder / "audio" / "mixed.wav"
    if kind == "rf64":
        monkeypatch.setattr(layout, "RIFF_LIMIT", 1000)
    write_wav(mixed, samples)
    if kind == "44-byte":  # a recording from before the ds64 reserve, with a LIST chunk a tool added
        header = wav_header(samples * 2)
        extra = b"LIST" + (4).to_bytes(4, "little") + b"INFO"
        riff_size = (36 + len(extra) + samples * 2).to_bytes(4, "little")
        mixed.write_bytes(b"RIFF" + riff_size + b"WAVE" + header[48:72] + extra + header[72:] + bytes(samples * 2))
    elif kind == "damaged":
        mixed.write_bytes(b"not a wav")
    assert mixed.read_bytes()[:4] == {"riff": b"RIFF", "rf64": b"RF64", "44-byte": b"RIFF", "damaged": b"not "}[kind]
    with RecordingsIndex(root / INDEX_FILE) as index:
        index.reindex(root)
        row = index.list_calls()[0]
    assert row.duration_s == (None if kind == "damaged" else samples / 16000)
