"""Transcript files: ``transcript.json`` (every entry, with word timings), WebVTT and SRT subtitles.

Subtitle cues keep to what a reader can take in: an entry longer than :data:`MAX_CUE_S` seconds or
:data:`MAX_CUE_CHARS` characters is split into several cues at word boundaries, timed by its word timings (an entry
without word timings stays one cue). Entries without text make no cue. Every file is written atomically and is
0600, like the rest of a recording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mediabot.store.layout import write_bytes_atomic, write_json_atomic
from mediabot.transcribe.base import TranscriptEntry, Word

__all__ = [
    "MAX_CUE_CHARS",
    "MAX_CUE_S",
    "Cue",
    "cues",
    "read_transcript_json",
    "to_srt",
    "to_webvtt",
    "write_subtitles",
    "write_transcript_json",
]

MAX_CUE_S = 7.0
MAX_CUE_CHARS = 84
UNKNOWN_SPEAKER = "Unknown"

_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w']+")


def write_transcript_json(path: Path, call_id: str, entries: Iterable[TranscriptEntry]) -> None:
    """Write ``{"call_id", "entries": [...]}`` to ``path`` atomically (0600), entries sorted by start."""
    ordered = sorted(entries, key=lambda entry: entry.start)
    write_json_atomic(path, {"call_id": call_id, "entries": [entry.to_json() for entry in ordered]})


def read_transcript_json(path: Path) -> list[TranscriptEntry]:
    """The entries of a ``transcript.json`` (``ValueError`` if it is not one)."""
    data = json.loads(Path(path).read_text("utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ValueError(f"{path} is not a transcript (no entries list)")
    call_id = str(data.get("call_id") or Path(path).parent.name)
    return [TranscriptEntry.from_json(call_id, item) for item in data["entries"]]


@dataclass(frozen=True, slots=True)
class Cue:
    """One subtitle cue: when (call-timeline seconds), who, and the text (plain, not yet escaped)."""

    start: float
    end: float
    speaker: str
    text: str


def cues(entries: Iterable[TranscriptEntry]) -> list[Cue]:
    """The subtitle cues of ``entries``, in start order: empty texts skipped, long entries split."""
    result: list[Cue] = []
    for entry in sorted(entries, key=lambda e: e.start):
        text = _SPACE.sub(" ", entry.text).strip()
        if not text:
            continue
        speaker = _SPACE.sub(" ", entry.display_name or entry.participant_id or "").strip() or UNKNOWN_SPEAKER
        result.extend(_split(entry, text, speaker))
    return result


def _split(entry: TranscriptEntry, text: str, speaker: str) -> list[Cue]:
    end = max(entry.end, entry.start)
    if not entry.words or (end - entry.start <= MAX_CUE_S and len(text) <= MAX_CUE_CHARS):
        return [Cue(entry.start, end, speaker, text)]
    tokens = text.split(" ")
    timed: Sequence[tuple[str, Word]] = []
    if len(tokens) == len(entry.words):
        pairs = list(zip(tokens, entry.words, strict=True))
        if all(_bare(token) == _bare(word.text) for token, word in pairs):
            timed = pairs  # the text's own tokens keep their punctuation and case
    if not timed:
        timed = [(_SPACE.sub(" ", w.text).strip(), w) for w in entry.words if w.text.strip()]
    groups: list[list[tuple[str, Word]]] = []
    for token, word in timed:
        if groups:
            group = groups[-1]
            length = sum(len(t) + 1 for t, _ in group) + len(token)
            if word.end - group[0][1].start <= MAX_CUE_S and length <= MAX_CUE_CHARS:
                group.append((token, word))
                continue
        groups.append([(token, word)])
    if not groups:
        return [Cue(entry.start, end, speaker, text)]
    result: list[Cue] = []
    for index, group in enumerate(groups):
        # Cues follow each other without a gap: the first starts with the entry, the last ends with it.
        cue_start = entry.start if index == 0 else min(max(group[0][1].start, entry.start), end)
        cue_end = end if index == len(groups) - 1 else min(max(groups[index + 1][0][1].start, cue_start), end)
        result.append(Cue(cue_start, cue_end, speaker, " ".join(token for token, _ in group)))
    return result


def _bare(token: str) -> str:
    return _NOT_WORD.sub("", token.lower())


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_webvtt(entries: Iterable[TranscriptEntry]) -> str:
    """A WebVTT document: ``WEBVTT``, then one cue per entry (or part) with a ``<v Speaker>`` voice tag."""
    parts = ["WEBVTT\n"]
    for cue in cues(entries):
        parts.append(
            f"\n{_timestamp(cue.start, '.')} --> {_timestamp(cue.end, '.')}\n"
            f"<v {_vtt_escape(cue.speaker)}>{_vtt_escape(cue.text)}\n"
        )
    return "".join(parts)


def to_srt(entries: Iterable[TranscriptEntry]) -> str:
    """An SRT document: numbered cues from 1, ``HH:MM:SS,mmm`` times, ``Speaker: text``."""
    parts = []
    for number, cue in enumerate(cues(entries), start=1):
        parts.append(
            f"{number}\n{_timestamp(cue.start, ',')} --> {_timestamp(cue.end, ',')}\n{cue.speaker}: {cue.text}\n\n"
        )
    return "".join(parts)


def write_subtitles(folder: Path, entries: Iterable[TranscriptEntry], *, stem: str = "transcript") -> None:
    """Write ``<stem>.vtt`` and ``<stem>.srt`` into ``folder`` (atomically, 0600)."""
    ordered = list(entries)
    write_bytes_atomic(folder / f"{stem}.vtt", to_webvtt(ordered).encode())
    write_bytes_atomic(folder / f"{stem}.srt", to_srt(ordered).encode())
