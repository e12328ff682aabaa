"""``mediabot recordings``: list, show, search and export the recorded calls, and rebuild their index.

Every command reads the output folder given by ``--out`` (default ``$MEDIABOT_OUTPUT_DIR``, else ``./recordings``)
and prints rich tables, or one JSON document on stdout with ``--json``. User errors (an unknown call, no recordings,
an empty query) are one line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mediabot._errors import MediaBotError
from mediabot.store.index import (
    INDEX_FILE,
    CallDetail,
    CallRow,
    RecordingsIndex,
    SearchHit,
    UnknownCallError,
    export_call,
    fts_query,
)

__all__ = ["recordings_app"]

recordings_app = typer.Typer(
    name="recordings",
    help="List, show, search and export the recorded calls (an SQLite index over the output folder).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

OutDir = Annotated[
    Path,
    typer.Option(
        "--out",
        envvar="MEDIABOT_OUTPUT_DIR",
        file_okay=False,
        help="The bot's output folder: its call folders and index.sqlite3.",
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
DEFAULT_OUT = Path("recordings")

# Markers the snippet cannot contain (control characters), turned into styling for the terminal.
_MARK_START, _MARK_END = "\x02", "\x03"
_SHORT_ID = 8


class ExportFormat(StrEnum):
    """What ``export`` writes."""

    zip = "zip"
    json = "json"


@recordings_app.command("list")
def list_calls(
    out: OutDir = DEFAULT_OUT,
    json_output: JsonOutput = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many calls.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many of the newest calls first.")] = 0,
) -> None:
    """List the recorded calls, newest first: start, duration, participants, transcribed segments."""
    with _user_errors(), _open_index(out) as index:
        calls = index.list_calls(limit=limit, offset=offset)
        total = index.count_calls()
    if json_output:
        _print_json({"output_dir": str(out), "total": total, "calls": [c.to_json() for c in calls]})
        return
    if not calls:
        typer.echo(f"no calls in the index of {out}", err=True)
        return
    table = Table(
        title=f"{len(calls)} of {total} call(s) in {out}",
        caption="`show` takes the start of a call's id; --json gives the whole ids",
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("call", no_wrap=True)
    table.add_column("started (UTC)", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("people", justify="right")
    table.add_column("transcribed", justify="right")
    table.add_column("status")
    for call in calls:
        table.add_row(
            Text(_short(call.call_id)),
            Text(_timestamp(call.created)),
            _clock(call.duration_s),
            str(call.participants),
            f"{call.transcribed}/{call.segments}",
            _status(call),
        )
    _stdout().print(table)


@recordings_app.command()
def show(
    call: Annotated[str, typer.Argument(help="The call's id (or the start of it, if only one call has it).")],
    out: OutDir = DEFAULT_OUT,
    json_output: JsonOutput = False,
) -> None:
    """Show one call: its times, participants with their speaking time, and its transcript line by line."""
    with _user_errors(), _open_index(out) as index:
        detail = index.get_call(_resolve(index, call, out))
    if detail is None:  # removed between the two look-ups
        _fail(f"no call {call} in the index of {out}")
    if json_output:
        _print_json(detail.to_json())
        return
    _print_detail(detail)


@recordings_app.command()
def search(
    words: Annotated[
        str,
        typer.Argument(
            help='What was said: every word must be in the line ("in double quotes" for a phrase, word* for a '
            "prefix); accents and case do not matter. A speaker's name matches their lines."
        ),
    ],
    out: OutDir = DEFAULT_OUT,
    json_output: JsonOutput = False,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many lines.")] = 50,
) -> None:
    """Search every call's transcript; prints the call, the speaker, the time in the call and the line."""
    with _user_errors():
        fts_query(words)  # an empty query is refused before anything is opened
    with _user_errors(), _open_index(out) as index:
        if json_output:
            hits = index.search(words, limit=limit)
            _print_json({"query": words, "hits": [hit.to_json() for hit in hits]})
            return
        hits = index.search(words, limit=limit, highlight=(_MARK_START, _MARK_END))
    if not hits:
        typer.echo(f"no transcript line matches {words!r}", err=True)
        return
    table = Table(title=f"{len(hits)} line(s) matching {words!r}", title_justify="left")
    table.add_column("call", no_wrap=True)
    table.add_column("speaker")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("line")
    for hit in hits:
        table.add_row(Text(_short(hit.call_id)), Text(_speaker(hit)), _clock(hit.start), _highlighted(hit.snippet))
    _stdout().print(table)


@recordings_app.command()
def export(
    call: Annotated[str, typer.Argument(help="The call's id (or the start of it, if only one call folder has it).")],
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format", help="zip: the call's files (audio, JSON, subtitles); json: one document with everything."
        ),
    ] = ExportFormat.zip,
    dest: Annotated[
        Path, typer.Option(file_okay=False, help="Folder to write <call>.zip or <call>.json into (made if missing).")
    ] = Path(),
    out: OutDir = DEFAULT_OUT,
    json_output: JsonOutput = False,
) -> None:
    """Export one call from its folder as a zip of its files or as one JSON document (written 0600)."""
    with _user_errors():
        call_id = _resolve_on_disk(call, out)
        path = export_call(out, call_id, "zip" if fmt is ExportFormat.zip else "json", dest)
    if json_output:
        _print_json({"call_id": call_id, "format": fmt.value, "path": str(path), "bytes": path.stat().st_size})
        return
    typer.echo(str(path))


@recordings_app.command()
def reindex(out: OutDir = DEFAULT_OUT, json_output: JsonOutput = False) -> None:
    """Rebuild the index from the call folders on disk (the files are the truth; safe while the bot runs)."""
    with _user_errors():
        if not out.is_dir():
            raise MediaBotError(f"{out} is not a folder (see --out or MEDIABOT_OUTPUT_DIR)")
        try:
            with RecordingsIndex(out / INDEX_FILE) as index:
                count = index.reindex(out)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, read-only: not the file's fault
                raise
            # The files are the truth: a damaged index is replaced (a running bot must be restarted to see it).
            typer.echo(f"the index is damaged ({exc}): replacing it", err=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{out / INDEX_FILE}{suffix}").unlink(missing_ok=True)
            with RecordingsIndex(out / INDEX_FILE) as index:
                count = index.reindex(out)
    if json_output:
        _print_json({"output_dir": str(out), "index": str(out / INDEX_FILE), "calls": count})
        return
    typer.echo(f"indexed {count} call(s) into {out / INDEX_FILE}")


# -- helpers -----------------------------------------------------------------------------------------------------------


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Errors a user can act on become one line on stderr and exit status 2."""
    try:
        yield
    except (MediaBotError, ValueError) as exc:
        _fail(str(exc))
    except sqlite3.Error as exc:
        _fail(f"the index cannot be used: {exc} (mediabot recordings reindex rebuilds it)")
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}")


def _open_index(out: Path) -> RecordingsIndex:
    """The index of ``out``; built first if there is none yet but there are calls."""
    path = out / INDEX_FILE
    if path.exists():
        return RecordingsIndex(path)
    folders = _call_folders(out)
    if not folders:
        raise MediaBotError(f"no recordings in {out}: no {INDEX_FILE} and no call folders (see --out)")
    typer.echo(f"no index in {out} yet: building it from {len(folders)} call folder(s)", err=True)
    index = RecordingsIndex(path)
    try:
        index.reindex(out)
    except BaseException:
        index.close()
        raise
    return index


def _call_folders(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return [child for child in out.iterdir() if (child / "call.json").is_file()]


def _resolve(index: RecordingsIndex, call: str, out: Path) -> str:
    if index.get_call(call) is not None:
        return call
    return _one(call, index.call_ids_starting_with(call) if call else [], f"the index of {out}")


def _resolve_on_disk(call: str, out: Path) -> str:
    if call and (out / call / "call.json").is_file():
        return call  # export_call refuses anything but a plain folder name
    names = sorted(folder.name for folder in _call_folders(out) if call and folder.name.startswith(call))
    return _one(call, names, str(out))


def _one(call: str, matches: list[str], where: str) -> str:
    if not matches:
        raise UnknownCallError(f"no call {call!r} in {where}")
    if len(matches) > 1:
        raise UnknownCallError(f"{call!r} is the start of more than one call id in {where}: give more of it")
    return matches[0]


def _stdout() -> Console:
    return Console(highlight=False)


def _print_json(document: dict[str, Any]) -> None:
    typer.echo(json.dumps(document, ensure_ascii=False))


def _print_detail(detail: CallDetail) -> None:
    console = _stdout()
    call = detail.call
    console.print(Text(f"call {call.call_id}", style="bold"))
    console.print(Text(f"started  {_timestamp(call.created)}"))
    console.print(Text(f"ended    {_timestamp(call.ended)}"))
    console.print(Text(f"duration {_clock(call.duration_s)}   status {_status(call)}"))
    console.print(Text(f"folder   {call.folder or '-'}"))
    people = Table(title="participants", title_justify="left")
    people.add_column("name")
    people.add_column("speaking", justify="right", no_wrap=True)
    people.add_column("segments", justify="right")
    people.add_column("file")
    for participant in detail.participants:
        people.add_row(
            Text(participant.display_name or participant.participant_id),
            _clock(participant.speaking_s),
            str(participant.segments),
            Text(participant.file or "-"),
        )
    console.print(people)
    transcript = Table(title="transcript", title_justify="left")
    transcript.add_column("time", justify="right", no_wrap=True)
    transcript.add_column("speaker")
    transcript.add_column("line")
    for line in detail.transcript:
        said = Text(line.text) if line.text else Text("(not transcribed)", style="dim")
        transcript.add_row(_clock(line.start), Text(line.display_name or line.participant_id or "?"), said)
    console.print(transcript)


def _highlighted(snippet: str) -> Text:
    text = Text()
    rest = snippet
    while _MARK_START in rest:
        before, _, after = rest.partition(_MARK_START)
        match, _, rest = after.partition(_MARK_END)
        text.append(before)
        text.append(match, style="bold yellow")
    text.append(rest)
    return text


def _speaker(hit: SearchHit) -> str:
    return hit.display_name or hit.participant_id or "?"


def _short(call_id: str) -> str:
    return call_id[:_SHORT_ID] if len(call_id) > _SHORT_ID + 4 else call_id


def _status(call: CallRow) -> str:
    if call.recovered:
        return "recovered"
    return "complete" if call.complete else "incomplete"


def _clock(seconds: float | None) -> str:
    """Call-timeline seconds as mm:ss.s."""
    if seconds is None:
        return "-"
    minutes, tenths = divmod(round(max(0.0, seconds) * 10), 600)
    return f"{minutes:02d}:{tenths / 10:04.1f}"


def _timestamp(value: str | None) -> str:
    if not value:
        return "-"
    return value.replace("T", " ").removesuffix("Z").partition(".")[0]
