"""``/v1/recordings``: the recorded calls and standalone sessions, their transcripts, audio and timeline picture.

The index (:class:`~mediabot.store.index.RecordingsIndex`) lists and searches them; one recording's detail, audio
files and timeline come from its folder under the output directory, which is the truth. A recording's ``key`` is its
folder's name: the call id, or the session id of a standalone session. A key must be one plain name of a real
folder (no symlink) holding a ``call.json``, and a file name must be in its folder's listing, so no URL reaches past
the output folder. Files and the index are read in worker threads (the index shares one connection under a lock,
made for that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse

from mediabot.service.deps import API_KEY_ERRORS, SettingsDep, require_api_key
from mediabot.store.index import RecordingsIndex, SearchQueryError, UnknownCallError, fts_query
from mediabot.store.layout import MIXED_NAME, WavFormatError, read_jsonl, safe_name, wav_info
from mediabot.store.timeline import TIMELINE_FILE, render_timeline, timeline_lanes

__all__ = ["MARK_END", "MARK_START", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/recordings",
    tags=["recordings"],
    dependencies=[Depends(require_api_key)],
    responses={
        **API_KEY_ERRORS,
        409: {"description": "This instance keeps no recordings (media is not app-hosted)."},
    },
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such recording (or file in it)."}}


def _file(types: dict[str, str], description: str) -> dict[int | str, dict[str, Any]]:
    """The responses of a route serving one file of a recording, of one of ``types``."""
    media_types = dict.fromkeys(value.split(";")[0] for value in types.values())
    content = {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in media_types}
    return {200: {"description": description, "content": content}, **NOT_FOUND}


# Around the matched words of a search hit's snippet: control characters no transcript contains.
MARK_START, MARK_END = "\x02", "\x03"
PREFIX = "/v1/recordings"
SQLITE_MAX_INT = 2**63 - 1  # past it, the index's query raises OverflowError
AUDIO_DIR = "audio"
AUDIO_TYPES = {".wav": "audio/wav", ".ogg": "audio/ogg"}
FILE_TYPES = {
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".vtt": "text/vtt; charset=utf-8",
    ".srt": "text/plain; charset=utf-8",
    ".png": "image/png",
}
TRANSCRIPT_FILE = "transcript.json"
# The timeline is drawn from these; a picture older than any of them is drawn again.
TIMELINE_SOURCES = ("call.json", "segments.jsonl", "events.jsonl")
MAIN_SOURCE = "main"
# Personal data: not kept by shared caches; a file opened in the browser runs nothing and embeds nothing.
FILE_HEADERS = {
    "Cache-Control": "private, no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def _index(request: Request) -> RecordingsIndex:
    recordings = request.app.state.recordings
    index: RecordingsIndex | None = recordings.index if recordings is not None else None
    if index is None:
        raise HTTPException(409, "this instance keeps no recordings (MEDIABOT_MEDIA is not app-hosted)")
    return index


IndexDep = Annotated[RecordingsIndex, Depends(_index)]


@router.get("")
async def list_recordings(
    index: IndexDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many recordings.")] = 50,
    offset: Annotated[int, Query(ge=0, le=SQLITE_MAX_INT, description="Skip this many of the newest first.")] = 0,
) -> dict[str, Any]:
    """The recorded calls and sessions in the index, newest first, with their participants and transcript counts."""
    return await asyncio.to_thread(_list, index, Path(settings.output_dir), limit, offset)


@router.get("/search", responses={400: {"description": "The query has no word to search for."}})
async def search_recordings(
    index: IndexDep,
    q: Annotated[
        str,
        Query(
            max_length=1000,
            description='Every word must be in the line; "words in quotes" for a phrase, word* for a prefix.',
        ),
    ] = "",
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many lines.")] = 50,
) -> dict[str, Any]:
    """Transcript lines matching ``q``, best first; each snippet marks the match between ``marks``."""
    try:
        if not fts_query(q):
            raise SearchQueryError(f"{q!r} has no word to search for (letters or digits)")
        hits = await asyncio.to_thread(index.search, q, limit, highlight=(MARK_START, MARK_END))
    except SearchQueryError as exc:
        raise HTTPException(400, str(exc)) from exc
    return {
        "query": q,
        "marks": [MARK_START, MARK_END],
        "hits": [
            {
                "key": hit.call_id,
                "participant_id": hit.participant_id,
                "display_name": hit.display_name,
                "start": hit.start,
                "end": hit.end,
                "text": hit.text,
                "snippet": hit.snippet,
            }
            for hit in hits
        ],
    }


@router.get("/{key}", responses=NOT_FOUND)
async def get_recording(key: str, index: IndexDep, settings: SettingsDep) -> dict[str, Any]:
    """One recording: its call.json, segments, events and tones, transcript, timeline lanes, and its files as URLs."""
    return await asyncio.to_thread(_detail, index, Path(settings.output_dir), key)


@router.get("/{key}/audio/{name}", response_class=FileResponse, responses=_file(AUDIO_TYPES, "The audio file."))
async def get_audio(key: str, name: str, settings: SettingsDep) -> FileResponse:
    """One audio file of the recording (WAV or Ogg), with byte ranges so a player can seek."""
    path = await asyncio.to_thread(_recording_file, Path(settings.output_dir), key, AUDIO_DIR, name, AUDIO_TYPES)
    return FileResponse(path, media_type=AUDIO_TYPES[path.suffix.lower()], headers=FILE_HEADERS)


@router.get(
    "/{key}/timeline.png", response_class=FileResponse, responses=_file({".png": "image/png"}, "The timeline picture.")
)
async def get_timeline(key: str, settings: SettingsDep) -> FileResponse:
    """The timeline picture of the recording, drawn first if there is none or its data changed since."""
    folder = await asyncio.to_thread(_folder, Path(settings.output_dir), key)
    try:
        path = await asyncio.to_thread(_fresh_timeline, folder)
    except UnknownCallError as exc:
        raise HTTPException(404, f"no recording {key}") from exc
    return FileResponse(path, media_type="image/png", headers=FILE_HEADERS)


@router.get("/{key}/files/{name}", response_class=FileResponse, responses=_file(FILE_TYPES, "The file."))
async def get_file(key: str, name: str, settings: SettingsDep) -> FileResponse:
    """One of the recording's metadata or transcript files (call.json, segments.jsonl, transcript.vtt, ...)."""
    path = await asyncio.to_thread(_recording_file, Path(settings.output_dir), key, None, name, FILE_TYPES)
    return FileResponse(
        path,
        media_type=FILE_TYPES[path.suffix.lower()],
        headers=FILE_HEADERS,
        filename=path.name,
        content_disposition_type="inline",
    )


# -- reading the folders (in worker threads) ---------------------------------------------------------------------------


def _folder(output: Path, key: str) -> Path:
    """The folder of recording ``key``: one plain name, a real folder (not a symlink) with a call.json; else 404."""
    try:
        safe_name(key, "recording key")
    except ValueError as exc:
        raise HTTPException(404, f"no recording {key}") from exc
    folder = output / key
    if key.startswith(".") or not _is_real(folder, stat.S_ISDIR) or not _is_real(folder / "call.json", stat.S_ISREG):
        raise HTTPException(404, f"no recording {key}")
    return folder


def _is_real(path: Path, kind: Callable[[int], bool]) -> bool:
    try:
        return bool(kind(path.lstat().st_mode))
    except OSError:
        return False


def _recording_file(output: Path, key: str, subfolder: str | None, name: str, types: dict[str, str]) -> Path:
    """The file ``name`` of a recording (in ``subfolder``): a regular file in that folder's listing with one of
    ``types``; else 404."""
    folder = _folder(output, key)
    if subfolder is not None:
        folder = folder / subfolder
    if Path(name).suffix.lower() in types and not name.startswith(".") and name in _file_names(folder):
        return folder / name
    raise HTTPException(404, f"no file {name} in this recording")


def _file_names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(entry.name for entry in entries if entry.is_file(follow_symlinks=False))
    except OSError:
        return []


def _url(key: str) -> str:
    return f"{PREFIX}/{quote(key, safe='')}"


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / "call.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _participants(meta: dict[str, Any]) -> list[dict[str, Any]]:
    items = meta.get("participants")
    return [p for p in items if isinstance(p, dict) and p.get("id") is not None] if isinstance(items, list) else []


def _list(index: RecordingsIndex, output: Path, limit: int, offset: int) -> dict[str, Any]:
    rows = index.list_calls(limit=limit, offset=offset)
    total = index.count_calls()
    recordings = []
    for row in rows:
        meta: dict[str, Any] = {}
        folder: Path | None = None
        try:
            folder = _folder(output, row.call_id)
            meta = _read_meta(folder)
        except HTTPException:
            pass  # in the index, but its folder is gone: listed from the index alone
        names = [str(p.get("display_name") or p["id"]) for p in _participants(meta)]
        recordings.append(
            {
                "key": row.call_id,
                "call_id": meta.get("call_id"),
                "session_id": meta.get("session_id"),
                "standalone": bool(meta) and meta.get("call_id") is None,
                "created": row.created,
                "ended": row.ended,
                "complete": row.complete,
                "recovered": row.recovered,
                "duration_s": row.duration_s,
                "participants": names,
                "participant_count": max(row.participants, len(names)),
                "segments": row.segments,
                "transcribed": row.transcribed,
                "has_transcript": row.transcribed > 0
                or (folder is not None and _is_real(folder / TRANSCRIPT_FILE, stat.S_ISREG)),
                "on_disk": folder is not None,
                "url": _url(row.call_id),
            }
        )
    return {"total": total, "limit": limit, "offset": offset, "recordings": recordings}


def _detail(index: RecordingsIndex, output: Path, key: str) -> dict[str, Any]:
    folder = _folder(output, key)
    meta = _read_meta(folder)
    events = read_jsonl(folder / "events.jsonl")
    try:
        timeline = timeline_lanes(folder).to_json()
    except UnknownCallError as exc:  # call.json went away or is unreadable
        raise HTTPException(404, f"no recording {key}") from exc
    indexed = index.get_call(key)
    base = _url(key)
    return {
        "key": key,
        "call": meta,
        "indexed": indexed is not None,
        "participants": [p.to_json() for p in indexed.participants] if indexed is not None else [],
        "segments": read_jsonl(folder / "segments.jsonl"),
        "events": events,
        "tones": [event for event in events if event.get("type") == "tone"],
        "transcript": _transcript(folder, indexed.transcript if indexed is not None else []),
        "timeline": timeline,
        "timeline_url": f"{base}/{TIMELINE_FILE}",
        "audio": _audio(folder, meta, base),
        "files": [
            {"name": name, "bytes": (folder / name).stat().st_size, "url": f"{base}/files/{quote(name, safe='')}"}
            for name in _file_names(folder)
            if Path(name).suffix.lower() in FILE_TYPES and not name.startswith(".")
        ],
    }


def _transcript(folder: Path, indexed: list[Any]) -> list[dict[str, Any]]:
    """The transcript file's entries (the final word); while there is none, the lines transcribed so far."""
    lines: list[dict[str, Any]] = []
    try:
        data = json.loads((folder / TRANSCRIPT_FILE).read_text("utf-8"))
    except FileNotFoundError:
        data = None
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", folder / TRANSCRIPT_FILE, exc)
        data = None
    if isinstance(data, dict) and isinstance(data.get("entries"), list):
        for entry in data["entries"]:
            if isinstance(entry, dict) and isinstance(entry.get("start"), int | float) and entry.get("text"):
                lines.append(
                    {
                        "participant_id": entry.get("participant_id"),
                        "display_name": entry.get("display_name"),
                        "source_id": entry.get("source_id"),
                        "start": float(entry["start"]),
                        "end": float(entry.get("end") or entry["start"]),
                        "text": str(entry["text"]),
                    }
                )
    else:
        lines = [line.to_json() for line in indexed if line.text]
    return sorted(lines, key=lambda line: line["start"])


def _wav_seconds(path: Path) -> float | None:
    """The length of a WAV file from its header (RIFF or RF64), None if it cannot be read."""
    try:
        return wav_info(path).seconds
    except (OSError, WavFormatError):
        return None


def _audio(folder: Path, meta: dict[str, Any], base: str) -> list[dict[str, Any]]:
    """The audio files, the mix first, then the participants in call.json order, then unattributed sources."""
    participants = _participants(meta)
    by_stem: dict[str, dict[str, Any]] = {}
    for item in participants:
        file = item.get("file")
        by_stem[Path(str(file)).stem if file else str(item["id"])] = item
    recording = meta.get("recording")
    files = recording.get("files") if isinstance(recording, dict) else None
    tracks = files.get("tracks") if isinstance(files, dict) else None
    source_of = {
        Path(str(track["path"])).stem: str(source_id)
        for source_id, track in (tracks.items() if isinstance(tracks, dict) else [])
        if isinstance(track, dict) and track.get("path")
    }
    order = {stem: rank for rank, stem in enumerate(by_stem)}
    ranked: list[tuple[tuple[int, bool, str], dict[str, Any]]] = []
    for name in _file_names(folder / AUDIO_DIR):
        path = Path(name)
        suffix = path.suffix.lower()
        if suffix not in AUDIO_TYPES or name.startswith("."):
            continue
        stem = path.stem
        participant = by_stem.get(stem)
        source_ids = [source_of[stem]] if stem in source_of else []
        if stem == MIXED_NAME:
            kind, label, rank = "mixed", "Mix of all tracks", -1
        elif participant is not None:
            kind, label, rank = "participant", str(participant.get("display_name") or participant["id"]), order[stem]
            sources = participant.get("source_ids")
            source_ids = [str(s) for s in sources] if isinstance(sources, list) else source_ids
        else:
            source_ids = source_ids or [stem.removeprefix("source-")]
            label = "Publisher (main)" if source_ids == [MAIN_SOURCE] else f"Source {source_ids[0]} (unattributed)"
            kind, rank = "source", len(order)
        size = (folder / AUDIO_DIR / name).stat().st_size
        seconds = _wav_seconds(folder / AUDIO_DIR / name) if suffix == ".wav" else None
        entry = {
            "name": name,
            "url": f"{base}/audio/{quote(name, safe='')}",
            "kind": kind,
            "format": suffix.lstrip("."),
            "participant_id": str(participant["id"]) if participant is not None else None,
            "display_name": participant.get("display_name") if participant is not None else None,
            "source_ids": source_ids,
            "label": label,
            "bytes": size,
            "seconds": round(seconds, 3) if seconds is not None else None,
        }
        ranked.append(((rank, suffix != ".wav", name), entry))
    return [entry for _, entry in sorted(ranked, key=lambda item: item[0])]


def _fresh_timeline(folder: Path) -> Path:
    """``timeline.png``, drawn again first if it is missing or older than the files it is drawn from."""
    newest = 0
    for name in TIMELINE_SOURCES:
        try:
            newest = max(newest, (folder / name).stat().st_mtime_ns)
        except FileNotFoundError:
            continue
    picture = folder / TIMELINE_FILE
    try:
        info = picture.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_mtime_ns >= newest:
            return picture
    except FileNotFoundError:
        pass
    return render_timeline(folder)
