"""transcript.json round trip, WebVTT and SRT checked against their formats, cue splitting, private files."""

from __future__ import annotations

import itertools
import json
import re
import stat
from pathlib import Path

import pytest

from mediabot.transcribe.base import TranscriptEntry, Word
from mediabot.transcribe.writers import (
    MAX_CUE_CHARS,
    MAX_CUE_S,
    cues,
    read_transcript_json,
    to_srt,
    to_webvtt,
    write_subtitles,
    write_transcript_json,
)

VTT_TIMING = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")
SRT_TIMING = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d),(\d{3}) --> (\d{2,}):([0-5]\d):([0-5]\d),(\d{3})$")


def entry(start: float, end: float, text: str, **kw: object) -> TranscriptEntry:
    values: dict[str, object] = {
        "call_id": "call-1",
        "participant_id": "p-1",
        "display_name": "Adele Vance",
        "source_id": "4",
        "start": start,
        "end": end,
        "text": text,
        "backend": "fake",
        "words": (),
    }
    values.update(kw)
    return TranscriptEntry(**values)  # type: ignore[arg-type]


def seconds(groups: tuple[str, ...]) -> tuple[float, float]:
    h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in groups)
    return h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000


def parse_vtt(text: str) -> list[tuple[float, float, str, str]]:
    """Cues as (start, end, voice, payload) after checking the WebVTT file structure."""
    assert text.startswith("WEBVTT\n\n") or text == "WEBVTT\n"
    assert text.endswith("\n")
    result = []
    for block in text.split("\n\n")[1:]:
        lines = block.strip("\n").split("\n")
        assert len(lines) == 2, block  # timing line + one payload line, no blank line inside a cue
        timing = VTT_TIMING.match(lines[0])
        assert timing, lines[0]
        voice = re.fullmatch(r"<v ([^>\n]+)>(.*)", lines[1])
        assert voice, lines[1]
        assert "-->" not in lines[1]
        # Outside the voice tag, the payload has no raw markup characters: only character references.
        assert not re.search(r"[<>]", voice.group(2)) and not re.search(r"&(?!amp;|lt;|gt;)", voice.group(2))
        result.append((*seconds(timing.groups()), voice.group(1), voice.group(2)))
    return result


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    result = []
    for block in text.strip("\n").split("\n\n"):
        number, timing, payload = block.split("\n")
        match = SRT_TIMING.match(timing)
        assert match, timing
        result.append((int(number), *seconds(match.groups()), payload))
    return result


def test_transcript_json_round_trip_sorted_and_private(tmp_path: Path) -> None:
    entries = [
        entry(3.5, 5.25, "second", words=(Word("second", 3.6, 4.1),)),
        entry(0.125, 2.0, "first", participant_id=None, display_name=None, source_id=None),
    ]
    path = tmp_path / "call-1" / "transcript.json"
    write_transcript_json(path, "call-1", entries)
    raw = json.loads(path.read_text())
    assert raw["call_id"] == "call-1"
    assert [e["text"] for e in raw["entries"]] == ["first", "second"]
    assert read_transcript_json(path) == [entries[1], entries[0]]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["transcript.json"]  # no temp file left


def test_read_refuses_what_is_not_a_transcript(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"call_id": "c"}')
    with pytest.raises(ValueError, match="not a transcript"):
        read_transcript_json(path)


def test_webvtt_format_voices_and_escaping() -> None:
    entries = [
        entry(3725.5, 3727.0, "late", display_name=None, participant_id=None),
        entry(0.0, 1.5, "Tom & Jerry <3 --> a > b", display_name="R&D <team>"),
        entry(2.0, 3.0, "   ", display_name="Nobody"),  # nothing said: no cue
        entry(1.0, 2.25, "hello\nthere", display_name=None, participant_id="p-9"),
    ]
    vtt = to_webvtt(entries)
    parsed = parse_vtt(vtt)
    assert parsed == [
        (0.0, 1.5, "R&amp;D &lt;team&gt;", "Tom &amp; Jerry &lt;3 --&gt; a &gt; b"),
        (1.0, 2.25, "p-9", "hello there"),
        (3725.5, 3727.0, "Unknown", "late"),
    ]
    assert "01:02:05.500 --> 01:02:07.000" in vtt
    assert to_webvtt([]) == "WEBVTT\n"


def test_srt_format_numbering_and_speakers() -> None:
    entries = [entry(61.001, 62.999, "one"), entry(0.0, 0.5, ""), entry(0.25, 1.0, "zero", display_name=None)]
    srt = to_srt(entries)
    assert parse_srt(srt) == [(1, 0.25, 1.0, "p-1: zero"), (2, 61.001, 62.999, "Adele Vance: one")]
    assert srt.startswith("1\n00:00:00,250 --> 00:00:01,000\n")
    assert to_srt([]) == ""


def test_long_entries_are_split_at_word_boundaries_by_duration() -> None:
    tokens = [f"W{n}." for n in range(40)]  # short words: the 7 s limit cuts, not the characters
    words = tuple(Word(f"w{n}", 10.0 + n * 0.5, 10.0 + n * 0.5 + 0.4) for n in range(40))
    long = entry(9.8, 30.2, " ".join(tokens), words=words)
    split = cues([long])
    assert len(split) >= 3
    assert split[0].start == 9.8 and split[-1].end == 30.2
    for before, after in itertools.pairwise(split):
        assert before.end == after.start  # no gap, no overlap
    # Every cue keeps to the limits (by its words' own span), and the text (with its punctuation) is all there.
    assert " ".join(cue.text for cue in split) == long.text
    for cue in split:
        first = int(cue.text.split()[0][1:-1])
        last = int(cue.text.split()[-1][1:-1])
        assert words[last].end - words[first].start <= MAX_CUE_S
        assert len(cue.text) <= MAX_CUE_CHARS
    srt = parse_srt(to_srt([long]))
    assert [number for number, *_ in srt] == list(range(1, len(split) + 1))
    assert len(parse_vtt(to_webvtt([long]))) == len(split)


def test_long_text_is_split_by_characters_and_without_words_kept_whole() -> None:
    text = " ".join(["extraordinarily"] * 12)  # 191 characters in 2 seconds
    words = tuple(Word("extraordinarily", n / 6, n / 6 + 0.15) for n in range(12))
    split = cues([entry(0.0, 2.0, text, words=words)])
    assert len(split) == 3 and all(len(cue.text) <= MAX_CUE_CHARS for cue in split)
    assert len(cues([entry(0.0, 2.0, text)])) == 1  # no word timings: one cue
    assert len(cues([entry(0.0, 20.0, "short but slow", words=())])) == 1


def test_words_that_do_not_match_the_text_give_the_cue_texts() -> None:
    words = tuple(Word(f"w{n}", n * 1.0, n * 1.0 + 0.5) for n in range(10))
    split = cues([entry(0.0, 10.0, "a completely different text", words=words)])
    assert " ".join(cue.text for cue in split) == " ".join(w.text for w in words)
    assert len(split) == 2


def test_write_subtitles_private_files(tmp_path: Path) -> None:
    entries = [entry(0.0, 1.0, "hi")]
    write_subtitles(tmp_path, entries)
    write_subtitles(tmp_path, entries, stem="talk.transcript")
    for name in ("transcript.vtt", "transcript.srt", "talk.transcript.vtt", "talk.transcript.srt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert (tmp_path / "transcript.vtt").read_text() == to_webvtt(entries)
    assert (tmp_path / "transcript.srt").read_text() == to_srt(entries)
    assert len(list(tmp_path.iterdir())) == 4
