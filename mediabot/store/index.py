"""The recordings index: one SQLite file (WAL, FTS5) over the call folders, for listing, showing and searching calls.

The call folders are the source of truth; the index is derived from them and can always be rebuilt
(:meth:`RecordingsIndex.reindex`, ``mediabot recordings reindex``). Tables::

    calls         id, created, ended, complete, recovered, duration_s, folder
    participants  call_id, participant_id, display_name, speaking_s, segments, file
    segments      id, call_id, participant_id, source_id, display_name, start, end, text (NULL: not transcribed)
    segments_fts  FTS5 over segments.text and segments.display_name (external content, unicode61 without diacritics)

A call's id is the name of its folder (as :class:`~mediabot.store.layout.CallPaths` has it). A speech segment of
``segments.jsonl`` and the transcript entry of ``transcript.json`` that transcribes it are one row: they are matched by
source (else participant) and start time. The methods are synchronous and quick; one connection is shared under a
lock, so an asyncio process calls them from worker threads while the CLI reads and writes the same file concurrently
(WAL readers never block; writers wait up to :data:`BUSY_TIMEOUT_S`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from mediabot._errors import MediaBotError
from mediabot.store.layout import (
    MIXED_NAME,
    CallPaths,
    WavFormatError,
    ensure_private_dir,
    open_private,
    read_jsonl,
    wav_info,
)
from mediabot.transcribe.base import TranscriptEntry

__all__ = [
    "BUSY_TIMEOUT_S",
    "EXPORT_SUFFIXES",
    "INDEX_FILE",
    "SCHEMA_VERSION",
    "CallDetail",
    "CallRow",
    "ParticipantRow",
    "RecordingsIndex",
    "SearchHit",
    "SearchQueryError",
    "TranscriptLine",
    "UnknownCallError",
    "export_call",
    "fts_query",
]

logger = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
EXPORT_SUFFIXES = frozenset({".wav", ".ogg", ".json", ".jsonl", ".vtt", ".srt"})
TRANSCRIPT_FILE = "transcript.json"
# A transcript entry and the segment it transcribes share a start; the two files round it differently.
_START_TOLERANCE_S = 0.005

_SCHEMA = """
CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    created TEXT,
    ended TEXT,
    complete INTEGER NOT NULL DEFAULT 0,
    recovered INTEGER NOT NULL DEFAULT 0,
    duration_s REAL,
    folder TEXT
);
CREATE TABLE participants (
    call_id TEXT NOT NULL,
    participant_id TEXT NOT NULL,
    display_name TEXT,
    speaking_s REAL NOT NULL DEFAULT 0,
    segments INTEGER NOT NULL DEFAULT 0,
    file TEXT,
    PRIMARY KEY (call_id, participant_id)
);
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    participant_id TEXT,
    source_id TEXT,
    display_name TEXT,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    text TEXT
);
CREATE INDEX segments_by_call ON segments (call_id, start);
CREATE VIRTUAL TABLE segments_fts USING fts5(
    text, display_name, content='segments', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
-- The usual external-content triggers; an update deletes the old values before it inserts the new ones.
CREATE TRIGGER segments_ai AFTER INSERT ON segments BEGIN
    INSERT INTO segments_fts (rowid, text, display_name) VALUES (new.id, new.text, new.display_name);
END;
CREATE TRIGGER segments_ad AFTER DELETE ON segments BEGIN
    INSERT INTO segments_fts (segments_fts, rowid, text, display_name)
    VALUES ('delete', old.id, old.text, old.display_name);
END;
CREATE TRIGGER segments_au AFTER UPDATE ON segments BEGIN
    INSERT INTO segments_fts (segments_fts, rowid, text, display_name)
    VALUES ('delete', old.id, old.text, old.display_name);
    INSERT INTO segments_fts (rowid, text, display_name) VALUES (new.id, new.text, new.display_name);
END;
"""
_TABLES = ("segments_fts", "segments", "participants", "calls")


class UnknownCallError(MediaBotError, LookupError):
    """No call with that id (in the index, or on disk for an export)."""


class SearchQueryError(MediaBotError, ValueError):
    """A search query with nothing to search for."""


@dataclass(frozen=True, slots=True)
class CallRow:
    """One call as :meth:`RecordingsIndex.list_calls` lists it."""

    call_id: str
    created: str | None
    ended: str | None
    complete: bool
    recovered: bool
    duration_s: float | None
    folder: str | None
    participants: int
    segments: int
    transcribed: int

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object."""
        return {
            "call_id": self.call_id,
            "created": self.created,
            "ended": self.ended,
            "complete": self.complete,
            "recovered": self.recovered,
            "duration_s": self.duration_s,
            "folder": self.folder,
            "participants": self.participants,
            "segments": self.segments,
            "transcribed": self.transcribed,
        }


@dataclass(frozen=True, slots=True)
class ParticipantRow:
    """One participant of a call and how much they spoke."""

    participant_id: str
    display_name: str | None
    speaking_s: float
    segments: int
    file: str | None

    def to_json(self) -> dict[str, Any]:
        """The participant as a JSON object."""
        return {
            "participant_id": self.participant_id,
            "display_name": self.display_name,
            "speaking_s": round(self.speaking_s, 3),
            "segments": self.segments,
            "file": self.file,
        }


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One speech segment of a call on the call timeline; ``text`` is None until it is transcribed."""

    participant_id: str | None
    display_name: str | None
    source_id: str | None
    start: float
    end: float
    text: str | None

    def to_json(self) -> dict[str, Any]:
        """The line as a JSON object."""
        return {
            "participant_id": self.participant_id,
            "display_name": self.display_name,
            "source_id": self.source_id,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class CallDetail:
    """A call with its participants and its speech segments (the transcript), in time order."""

    call: CallRow
    participants: list[ParticipantRow] = field(default_factory=list)
    transcript: list[TranscriptLine] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The call, participants and transcript as one JSON object."""
        return {
            **self.call.to_json(),
            "participants": [p.to_json() for p in self.participants],
            "transcript": [line.to_json() for line in self.transcript],
        }


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One transcript line that matches a search; ``snippet`` is the text with the match between the markers."""

    call_id: str
    participant_id: str | None
    display_name: str | None
    start: float
    end: float
    text: str
    snippet: str

    def to_json(self) -> dict[str, Any]:
        """The hit as a JSON object."""
        return {
            "call_id": self.call_id,
            "participant_id": self.participant_id,
            "display_name": self.display_name,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "snippet": self.snippet,
        }


_QUERY_PARTS = re.compile(r'"([^"]*)"|(\S+)')


def fts_query(query: str) -> str:
    """A user's words as a safe FTS5 query: every word must match; ``"words in quotes"`` must match as a phrase.

    A word ending in ``*`` matches as a prefix. Every word and phrase is quoted, so operators (AND, NEAR, ``-``,
    ``:``) and punctuation are only text. An empty ``query`` is a :class:`SearchQueryError`; the result is ``""``
    when nothing in ``query`` is searchable (``'*'``, ``'"'``).
    """
    text = query.replace("\0", " ").strip()
    if not text:
        raise SearchQueryError("the search query is empty")
    parts: list[str] = []
    for phrase, word in _QUERY_PARTS.findall(text):
        if phrase and _searchable(phrase):
            parts.append(_quote(phrase))
        elif word:
            term = word.rstrip("*").replace('"', " ").strip()
            if _searchable(term):
                parts.append(_quote(term) + ("*" if word.endswith("*") else ""))
    return " ".join(parts)


def _searchable(text: str) -> bool:
    return any(char.isalnum() for char in text)


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class RecordingsIndex:
    """The SQLite index of the calls under one output folder (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            ensure_private_dir(self.path.parent)
        # Personal data: the file is 0600 before SQLite writes a byte (its -wal and -shm files take the same mode).
        os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> RecordingsIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- writing -----------------------------------------------------------------------------------------------------

    def index_call(self, folder: Path) -> None:
        """(Re)index one call folder from its files: call.json, segments.jsonl, transcript.json if present."""
        record = _read_call_folder(Path(folder))
        with self._write() as db:
            _replace_call(db, record)

    def remove_call(self, call_id: str) -> None:
        """Forget a call (its files are not touched)."""
        with self._write() as db:
            _delete_call(db, call_id)

    def reindex(self, output_dir: Path) -> int:
        """Drop everything and index every call folder under ``output_dir`` again; how many calls were indexed.

        One transaction: readers see the old index until the new one is complete. Folders without call.json are
        skipped, and so (with a warning) are folders whose call.json cannot be read.
        """
        output_dir = Path(output_dir)
        count = 0
        with self._write() as db:
            for table in _TABLES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            _create_schema(db)
            for folder in _call_folders(output_dir):
                try:
                    record = _read_call_folder(folder)
                except (OSError, ValueError) as exc:
                    logger.warning("not indexing %s: %s", folder, exc)
                    continue
                _replace_call(db, record)
                count += 1
        return count

    def upsert_call_meta(self, call_id: str, meta: dict[str, Any], folder: Path) -> None:
        """Create or update a call's row and participants from its (possibly partial) metadata; segments stay."""
        with self._write() as db:
            _upsert_call_row(db, call_id, meta, Path(folder))
            _upsert_participants(db, call_id, meta.get("participants"))
            _refresh_participants(db, call_id)

    def add_transcript_entry(self, entry: TranscriptEntry) -> None:
        """Give a segment its text as soon as it is transcribed (the segment's row is created if it is not known)."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO calls (id) VALUES (?)", (entry.call_id,))
            who = entry.source_id if entry.source_id is not None else entry.participant_id
            row = db.execute(
                "SELECT id FROM segments WHERE call_id = ? AND coalesce(source_id, participant_id) IS ? "
                "AND abs(start - ?) < ? ORDER BY abs(start - ?) LIMIT 1",
                (entry.call_id, who, entry.start, _START_TOLERANCE_S, entry.start),
            ).fetchone()
            if row is None:
                db.execute(
                    'INSERT INTO segments (call_id, participant_id, source_id, display_name, start, "end", text) '
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        entry.call_id,
                        entry.participant_id,
                        entry.source_id,
                        entry.display_name,
                        entry.start,
                        entry.end,
                        entry.text,
                    ),
                )
            else:
                db.execute(
                    "UPDATE segments SET text = ?, display_name = coalesce(?, display_name), "
                    "participant_id = coalesce(participant_id, ?) WHERE id = ?",
                    (entry.text, entry.display_name, entry.participant_id, row[0]),
                )
            _refresh_participants(db, entry.call_id)

    # -- reading -----------------------------------------------------------------------------------------------------

    def list_calls(self, limit: int = 50, offset: int = 0) -> list[CallRow]:
        """The calls, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"{_CALL_ROWS} ORDER BY c.created DESC NULLS LAST, c.id LIMIT ? OFFSET ?",
                (max(0, limit), max(0, offset)),
            ).fetchall()
        return [_call_row(row) for row in rows]

    def count_calls(self) -> int:
        """How many calls the index holds."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM calls").fetchone()[0])

    def call_ids_starting_with(self, prefix: str, limit: int = 2) -> list[str]:
        """The ids of the calls whose id starts with ``prefix`` (at most ``limit``), to accept a short id."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM calls WHERE substr(id, 1, length(?)) = ? ORDER BY id LIMIT ?",
                (prefix, prefix, max(0, limit)),
            ).fetchall()
        return [str(row[0]) for row in rows]

    def get_call(self, call_id: str) -> CallDetail | None:
        """The call with its participants and transcript, or None."""
        with self._lock:
            row = self._db.execute(f"{_CALL_ROWS} WHERE c.id = ?", (call_id,)).fetchone()
            if row is None:
                return None
            participants = self._db.execute(
                "SELECT participant_id, display_name, speaking_s, segments, file FROM participants "
                "WHERE call_id = ? ORDER BY rowid",
                (call_id,),
            ).fetchall()
            lines = self._db.execute(
                'SELECT participant_id, display_name, source_id, start, "end", text FROM segments '
                "WHERE call_id = ? ORDER BY start, id",
                (call_id,),
            ).fetchall()
        return CallDetail(
            call=_call_row(row),
            participants=[ParticipantRow(p[0], p[1], float(p[2]), int(p[3]), p[4]) for p in participants],
            transcript=[TranscriptLine(*line) for line in lines],
        )

    def search(self, query: str, limit: int = 50, *, highlight: tuple[str, str] = ("[", "]")) -> list[SearchHit]:
        """Transcript lines matching ``query`` (see :func:`fts_query`), best first; empty query: ValueError."""
        match = fts_query(query)
        if not match:
            return []
        with self._lock:
            try:
                rows = self._db.execute(
                    'SELECT s.call_id, s.participant_id, s.display_name, s.start, s."end", s.text, '
                    "snippet(segments_fts, 0, ?, ?, '…', 24) "
                    "FROM segments_fts JOIN segments s ON s.id = segments_fts.rowid "
                    "WHERE segments_fts MATCH ? AND coalesce(s.text, '') <> '' "
                    "ORDER BY rank, s.call_id, s.start LIMIT ?",
                    (highlight[0], highlight[1], match, max(0, limit)),
                ).fetchall()
            except sqlite3.OperationalError as exc:
                # The quoting above makes this unreachable for any input; stay a user error if it is not.
                raise SearchQueryError(f"cannot search for {query!r}: {exc}") from exc
        return [SearchHit(*row) for row in rows]

    # -- internals ---------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                # Never drop what a newer mediabot (perhaps the running bot) wrote.
                raise MediaBotError(
                    f"{self.path} was written by a newer mediabot (index schema {version}, this one knows "
                    f"{SCHEMA_VERSION}): use that version, or delete the file and reindex"
                )
            if version != 0:
                logger.warning("%s has the older index schema %d: rebuilt empty (reindex fills it)", self.path, version)
            # The index is derived data: an older layout is dropped, and filled again by a reindex.
            for table in _TABLES:
                db.execute(f"DROP TABLE IF EXISTS {table}")
            _create_schema(db)


_CALL_ROWS = (
    "SELECT c.id, c.created, c.ended, c.complete, c.recovered, c.duration_s, c.folder, "
    "(SELECT count(*) FROM participants p WHERE p.call_id = c.id), "
    "(SELECT count(*) FROM segments s WHERE s.call_id = c.id), "
    "(SELECT count(*) FROM segments s WHERE s.call_id = c.id AND coalesce(s.text, '') <> '') "
    "FROM calls c"
)


def _call_row(row: tuple[Any, ...]) -> CallRow:
    return CallRow(
        call_id=row[0],
        created=row[1],
        ended=row[2],
        complete=bool(row[3]),
        recovered=bool(row[4]),
        duration_s=row[5],
        folder=row[6],
        participants=int(row[7]),
        segments=int(row[8]),
        transcribed=int(row[9]),
    )


def _create_schema(db: sqlite3.Connection) -> None:
    # executescript() would COMMIT the open transaction; one statement at a time keeps it.
    for statement in _statements(_SCHEMA):
        db.execute(statement)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _statements(script: str) -> list[str]:
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        current.append(line)
        if sqlite3.complete_statement("\n".join(current)):
            statements.append("\n".join(current))
            current = []
    return statements


# -- reading a call folder -------------------------------------------------------------------------------------------


@dataclass
class _Segment:
    participant_id: str | None
    source_id: str | None
    display_name: str | None
    start: float
    end: float
    text: str | None = None


@dataclass
class _CallRecord:
    call_id: str
    folder: Path
    meta: dict[str, Any]
    segments: list[_Segment]


def _call_folders(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    return sorted(child for child in output_dir.iterdir() if (child / "call.json").is_file())


def _read_call_folder(folder: Path) -> _CallRecord:
    paths = CallPaths(folder.parent, folder.name)
    meta = json.loads(paths.call_json.read_text("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError(f"{paths.call_json} is not a JSON object")
    segments = [_segment_from_line(line) for line in read_jsonl(paths.segments)]
    merged = _merge_transcript(
        [s for s in segments if s is not None], _read_transcript(folder / TRANSCRIPT_FILE, paths.call_id)
    )
    return _CallRecord(paths.call_id, folder.resolve(), meta, merged)


def _segment_from_line(line: dict[str, Any]) -> _Segment | None:
    try:
        return _Segment(
            participant_id=_str_or_none(line.get("participant_id")),
            source_id=_str_or_none(line.get("source_id")),
            display_name=_str_or_none(line.get("display_name")),
            start=float(line["start"]),
            end=float(line["end"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _read_transcript(path: Path, call_id: str) -> list[TranscriptEntry]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        logger.warning("ignoring %s: %s", path, exc)
        return []
    entries: list[TranscriptEntry] = []
    for item in data.get("entries", []) if isinstance(data, dict) else []:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            entries.append(TranscriptEntry.from_json(call_id, item))
    return entries


def _merge_transcript(segments: list[_Segment], entries: list[TranscriptEntry]) -> list[_Segment]:
    """Each entry's text onto the segment it transcribes; entries without a segment become segments."""
    by_key: dict[tuple[str | None, int], list[_Segment]] = {}
    for segment in segments:
        who = segment.source_id if segment.source_id is not None else segment.participant_id
        by_key.setdefault((who, round(segment.start * 100)), []).append(segment)
    extra: list[_Segment] = []
    for entry in entries:
        who = entry.source_id if entry.source_id is not None else entry.participant_id
        centis = round(entry.start * 100)
        candidates = [s for c in (centis, centis - 1, centis + 1) for s in by_key.get((who, c), [])]
        match = min(candidates, key=lambda s: abs(s.start - entry.start), default=None)
        if match is not None and abs(match.start - entry.start) < _START_TOLERANCE_S:
            match.text = entry.text  # a later entry for the same segment (a new transcription) wins
            match.display_name = match.display_name or entry.display_name
            match.participant_id = match.participant_id or entry.participant_id
            continue
        segment = _Segment(
            entry.participant_id, entry.source_id, entry.display_name, entry.start, entry.end, entry.text
        )
        by_key.setdefault((who, centis), []).append(segment)
        extra.append(segment)
    return sorted([*segments, *extra], key=lambda s: s.start)


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _duration_s(meta: dict[str, Any], folder: Path) -> float | None:
    recording = meta.get("recording")
    files = recording.get("files") if isinstance(recording, dict) else None
    if isinstance(files, dict) and isinstance(files.get("seconds"), int | float):
        return float(files["seconds"])
    with contextlib.suppress(OSError, WavFormatError):
        return wav_info(folder / "audio" / f"{MIXED_NAME}.wav").seconds
    created, ended = _parse_time(meta.get("created")), _parse_time(meta.get("ended"))
    if created is not None and ended is not None:
        return max(0.0, (ended - created).total_seconds())
    return None


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- writing rows ----------------------------------------------------------------------------------------------------


def _delete_call(db: sqlite3.Connection, call_id: str) -> None:
    db.execute("DELETE FROM segments WHERE call_id = ?", (call_id,))
    db.execute("DELETE FROM participants WHERE call_id = ?", (call_id,))
    db.execute("DELETE FROM calls WHERE id = ?", (call_id,))


def _replace_call(db: sqlite3.Connection, record: _CallRecord) -> None:
    _delete_call(db, record.call_id)
    _upsert_call_row(db, record.call_id, record.meta, record.folder)
    _upsert_participants(db, record.call_id, record.meta.get("participants"))
    db.executemany(
        'INSERT INTO segments (call_id, participant_id, source_id, display_name, start, "end", text) '
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (record.call_id, s.participant_id, s.source_id, s.display_name, s.start, s.end, s.text)
            for s in record.segments
        ],
    )
    _refresh_participants(db, record.call_id)


def _upsert_call_row(db: sqlite3.Connection, call_id: str, meta: dict[str, Any], folder: Path) -> None:
    db.execute(
        "INSERT INTO calls (id, created, ended, complete, recovered, duration_s, folder) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET created = excluded.created, ended = excluded.ended, "
        "complete = excluded.complete, recovered = excluded.recovered, duration_s = excluded.duration_s, "
        "folder = excluded.folder",
        (
            call_id,
            _str_or_none(meta.get("created")),
            _str_or_none(meta.get("ended")),
            int(meta.get("complete") is True),
            int(meta.get("recovered") is True),
            _duration_s(meta, folder),
            str(folder),
        ),
    )


def _upsert_participants(db: sqlite3.Connection, call_id: str, participants: object) -> None:
    if not isinstance(participants, list):
        return
    for participant in participants:
        if not isinstance(participant, dict) or participant.get("id") is None:
            continue
        db.execute(
            "INSERT INTO participants (call_id, participant_id, display_name, file) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (call_id, participant_id) DO UPDATE SET "
            "display_name = coalesce(excluded.display_name, display_name), file = coalesce(excluded.file, file)",
            (
                call_id,
                str(participant["id"]),
                _str_or_none(participant.get("display_name")),
                _str_or_none(participant.get("file")),
            ),
        )


def _refresh_participants(db: sqlite3.Connection, call_id: str) -> None:
    """Speaking time and segment count of every participant of the call, from its segments."""
    db.execute(
        "INSERT INTO participants (call_id, participant_id, display_name) "
        "SELECT call_id, participant_id, max(display_name) FROM segments "
        "WHERE call_id = ? AND participant_id IS NOT NULL GROUP BY participant_id "
        "ON CONFLICT (call_id, participant_id) DO NOTHING",
        (call_id,),
    )
    db.execute(
        "UPDATE participants SET "
        'speaking_s = (SELECT round(coalesce(sum(s."end" - s.start), 0), 3) FROM segments s '
        "WHERE s.call_id = participants.call_id AND s.participant_id = participants.participant_id), "
        "segments = (SELECT count(*) FROM segments s "
        "WHERE s.call_id = participants.call_id AND s.participant_id = participants.participant_id) "
        "WHERE call_id = ?",
        (call_id,),
    )


# -- export ----------------------------------------------------------------------------------------------------------


def export_call(output_dir: Path, call_id: str, fmt: Literal["zip", "json"], dest: Path) -> Path:
    """Export a call from its folder: ``<dest>/<call_id>.zip`` of its files, or ``<dest>/<call_id>.json``.

    The zip holds the call's audio, JSON, JSON-lines and subtitle files under ``<call_id>/`` (not the segments still
    waiting in ``pending/``). The JSON document holds the call's metadata, participants (with speaking time),
    speech segments, transcript and events. Both are written 0600, atomically; :class:`UnknownCallError` if there
    is no such call folder.
    """
    try:
        paths = CallPaths(Path(output_dir), call_id)
    except ValueError as exc:
        raise UnknownCallError(f"no call {call_id!r}: {exc}") from exc
    if not paths.call_json.is_file():
        raise UnknownCallError(f"no call {call_id} in {output_dir}")
    if fmt not in ("zip", "json"):
        raise ValueError(f"unknown export format {fmt!r} (zip or json)")
    dest = Path(dest)
    if not dest.is_dir():
        ensure_private_dir(dest)
    target = dest / f"{call_id}.{fmt}"
    temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as out:
            if fmt == "zip":
                _write_zip(out, paths)
            else:
                out.write(json.dumps(_export_document(paths), ensure_ascii=False, indent=2).encode() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return target


def _export_files(paths: CallPaths) -> list[Path]:
    files: list[Path] = []
    for path in sorted(paths.dir.rglob("*")):
        relative = path.relative_to(paths.dir)
        if relative.parts[0] == "pending" or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and not path.is_symlink() and path.suffix.lower() in EXPORT_SUFFIXES:
            files.append(path)
    return files


def _write_zip(out: Any, paths: CallPaths) -> None:
    with zipfile.ZipFile(out, "w") as archive:
        for path in _export_files(paths):
            # Audio hardly deflates: stored, it zips fast; the text files shrink a lot.
            text = path.suffix.lower() in (".json", ".jsonl", ".vtt", ".srt")
            archive.write(
                path,
                f"{paths.call_id}/{path.relative_to(paths.dir).as_posix()}",
                compress_type=zipfile.ZIP_DEFLATED if text else zipfile.ZIP_STORED,
            )


def _export_document(paths: CallPaths) -> dict[str, Any]:
    record = _read_call_folder(paths.dir)
    spoken: dict[str, tuple[float, int]] = {}
    for segment in record.segments:
        if segment.participant_id is not None:
            seconds, count = spoken.get(segment.participant_id, (0.0, 0))
            spoken[segment.participant_id] = (seconds + segment.end - segment.start, count + 1)
    participants: list[dict[str, Any]] = []
    for participant in record.meta.get("participants") or []:
        if isinstance(participant, dict):
            seconds, count = spoken.get(str(participant.get("id")), (0.0, 0))
            participants.append({**participant, "speaking_s": round(seconds, 3), "segments": count})
    transcript = _read_transcript(paths.dir / TRANSCRIPT_FILE, paths.call_id)
    return {
        "call_id": paths.call_id,
        "call": record.meta,
        "participants": participants,
        "segments": read_jsonl(paths.segments),
        "transcript": [entry.to_json() for entry in sorted(transcript, key=lambda e: e.start)],
        "events": read_jsonl(paths.events),
        "files": [p.relative_to(paths.dir).as_posix() for p in _export_files(paths)],
    }
