"""The ``mediabot`` command line: ``sandbox`` (the local Graph + Entra emulator) and ``demo``."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mediabot import __version__
from mediabot._errors import ConfigError, MediaBotError
from mediabot.logs import LogFormat, configure_logging, env_log_format, env_log_level

__all__ = ["app", "main"]

app = typer.Typer(
    name="mediabot",
    help="An open bot worker for Microsoft Graph cloud communications: it answers and places calls, records and "
    "transcribes them over an open WebRTC (WHIP) media plane; with a local sandbox of Entra, Graph and the calling "
    "platform. Start with `mediabot demo`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
SHUTDOWN_GRACE_S = 5


def _register_recordings() -> None:
    from mediabot.store.cli import recordings_app

    app.add_typer(recordings_app, name="recordings", help="The recordings index: list, show, search, export.")


_register_recordings()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mediabot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level on stderr.")] = False,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format", help="Log lines as text or JSON objects (default: $MEDIABOT_LOG_FORMAT, else text)."
        ),
    ] = None,
) -> None:
    # Only the two variables, not Settings(): an unrelated bad setting must not stop every command here.
    configure_logging(
        "DEBUG" if verbose else env_log_level(),
        log_format if log_format is not None else env_log_format(),
    )
    # `serve` reads the full settings (.env included) and applies their logging unless the command line chose.
    ctx.obj = {"log_chosen": verbose or log_format is not None}


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 8443,
    state_dir: Annotated[
        Path, typer.Option(help="Folder for the TLS certificate, signing key and app registrations.")
    ] = Path("sandbox-state"),
    media_ice_loopback: Annotated[
        bool, typer.Option(help="The media relay also offers ICE candidates on 127.0.0.1 (loopback-only hosts).")
    ] = False,
) -> None:
    """Run the local emulator of Entra, Graph and the calling platform over HTTPS, in the foreground.

    When ready it prints MEDIABOT_*=value lines (tenant, client id and secret, authority, Graph URL, CA bundle):
    `mediabot sandbox > sandbox.env` then `set -a; . ./sandbox.env` configures a bot to use it.
    Scenario files (POST /_sandbox/scenarios) play scripted participants into a bot's WHIP endpoint.
    """
    from mediabot.sandbox import serve

    serve(host, port, state_dir, media_ice_loopback=media_ice_loopback)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    ssl_certfile: Annotated[Path | None, typer.Option(help="PEM certificate, to serve HTTPS directly.")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="PEM private key of --ssl-certfile.")] = None,
    media_workers: Annotated[
        int | None,
        typer.Option(
            min=-1,
            help="Media worker processes (default: $MEDIABOT_MEDIA_WORKERS, else 0 = media in this process); "
            "-1 = one per core, the production choice.",
        ),
    ] = None,
) -> None:
    """Run the bot: Graph's call notifications at /api/calling, the API at /v1, the web console at /console.

    Also: webhooks at /api/notifications, WHIP media at /media/whip, browser join at /join, Prometheus metrics at
    /metrics. Configured by MEDIABOT_* settings (environment or .env); the output of `mediabot sandbox` works as
    is, plus MEDIABOT_PUBLIC_URL (where Graph reaches this instance) and MEDIABOT_API_KEY (for /v1 and the console).
    """
    import socket

    import uvicorn
    from pydantic import ValidationError

    from mediabot._heap import fix_mmap_threshold
    from mediabot._loop import resolve
    from mediabot.config import Settings
    from mediabot.service import create_app

    fix_mmap_threshold()  # a server frees large buffers all day: keep them returnable
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc
    if media_workers is not None:
        settings = settings.model_copy(update={"media_workers": media_workers})
    if not (ctx.obj or {}).get("log_chosen"):
        configure_logging(settings.log_level, settings.log_format)
    try:
        loop = resolve(settings.event_loop)
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from exc
    logging.getLogger(__name__).info("event loop: %s", loop)
    application = create_app(settings)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: no Nagle delay on two-write responses.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    config = uvicorn.Config(
        application,
        loop=loop,
        log_config=None,
        access_log=False,
        # On SIGTERM, requests get this long to finish, then the lifespan's shutdown runs (calls hung up, files
        # finished).
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
    server = uvicorn.Server(config)
    # Live event streams end themselves once uvicorn was told to stop, so a shutdown need not wait for the grace.
    application.state.stopping = lambda: server.should_exit
    server.run(sockets=[sock])


@app.command()
def demo(
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a machine-readable summary as the last line of stdout.")
    ] = False,
    scenario: Annotated[
        Path | None,
        typer.Option(
            help="The scenario file (YAML/JSON) to play: participants, their audio, joins, digits, network. "
            "Default: the bundled meeting of three.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where the bot writes the call's recordings.")] = Path("recordings"),
    graph_only: Annotated[
        bool,
        typer.Option(
            "--graph-only", help="Instead: the signaling smoke flow through the Graph client only (no media, no bot)."
        ),
    ] = False,
) -> None:
    """Run a scripted call end to end: the sandbox and the bot as two processes, talking HTTPS and WebRTC.

    The sandbox plays the scenario's participants into the bot over WHIP; a live display shows the call's state
    and who is speaking; then a summary of what the bot wrote under --out: participants, speaking time, segments,
    transcript, tones, files, the speech timeline picture, join time and packet-to-speech-start latency.
    Exits non-zero if anything failed.
    """
    if graph_only:
        from mediabot.demo import run_demo

        ok = asyncio.run(run_demo(json_output=json_output))
    else:
        from mediabot.demo_call import run_call_demo
        from mediabot.sandbox import BUNDLED_SCENARIO

        script = (scenario or BUNDLED_SCENARIO).resolve()
        ok = asyncio.run(run_call_demo(script, out.resolve(), json_output=json_output))
    if not ok:
        raise typer.Exit(1)


@app.command()
def transcribe(
    path: Annotated[Path, typer.Argument(help="A finished call folder (with call.json) or any WAV file.", exists=True)],
    out: Annotated[
        Path | None, typer.Option(help="For a WAV: where the transcript files go (default: beside it).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the transcript as JSON on stdout.")] = False,
) -> None:
    """Transcribe again: a call folder's speech segments (writes transcript.json/.vtt/.srt) or a WAV file.

    The backend is the configured one (MEDIABOT_TRANSCRIBER: pocketsphinx by default, or openai).
    """
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mediabot.config import Settings
    from mediabot.transcribe.batch import transcribe_call, transcribe_wav
    from mediabot.transcribe.factory import transcriber_from_settings

    settings = Settings()
    backend = "pocketsphinx" if settings.transcriber == "none" else settings.transcriber
    transcriber = transcriber_from_settings(settings, backend)
    if transcriber is None:
        raise ConfigError("no transcription backend is configured")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

    async def run() -> list[Any]:
        try:
            with Progress(*columns, console=err, transient=json_output) as progress:
                task = progress.add_task(f"transcribing {path.name} ({transcriber.name})", total=None)

                def advance(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                if path.is_dir():
                    return list(await transcribe_call(path, transcriber, progress=advance))
                return list(await transcribe_wav(path, transcriber, out=out, progress=advance))
        finally:
            await transcriber.aclose()

    entries = asyncio.run(run())
    if json_output:
        sys.stdout.write(json.dumps([entry.to_json() for entry in entries]) + "\n")
        return
    for entry in entries:
        who = entry.display_name or entry.participant_id or "?"
        minutes, seconds = divmod(entry.start, 60)
        typer.echo(f"{int(minutes):02d}:{seconds:04.1f}  {who}: {entry.text}")
    err.print(f"{len(entries)} segment(s) transcribed")


def _fail(message: str, hint: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    err.print(f"hint: {hint}", highlight=False)
    sys.exit(2)


def main() -> None:
    """Entry point of the ``mediabot`` console script: user errors are one line and a hint, never a traceback."""
    try:
        app()
    except MediaBotError as exc:
        _fail(str(exc), "run with --verbose for details, or see the README's configuration reference")
    except OSError as exc:
        # Ports in use, folders that cannot be made: the environment, not a bug.
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or exc}{where}", "check the paths and ports given on the command line")
    except KeyboardInterrupt:
        sys.exit(130)
