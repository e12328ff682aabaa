"""One media worker process: a real :class:`~mediabot.media.engine.MediaEngine` on its own event loop, driven by the
service over one socket (see :mod:`mediabot.media.worker_wire`).

The worker takes the service's requests for the sessions it owns (open, WHIP offers and deletes, the call plane's
news, prompts, closing), and tells the service what the engine's listeners hear: speech segments (audio included),
tones, media errors, closed sessions. Every few hundred ms it pushes each session's live snapshot and totals, if they
changed; nothing is sent per audio frame. The WebRTC peer connections live here, so RTP reaches the worker directly.

The worker does not repair recordings at start: the service runs that scan once, before any worker takes sessions
(a restarted worker must not "repair" the calls the other workers are writing). When the service goes away (the
socket ends) or on SIGTERM, the worker closes its sessions, finishing their files, and exits; SIGINT is the
service's to handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from mediabot._errors import MediaBotError
from mediabot._heap import fix_mmap_threshold
from mediabot._loop import loop_factory
from mediabot.logs import LogFormat, TextFormatter, configure_logging
from mediabot.media.blob import app_hosted_media_config
from mediabot.media.engine import MediaEngine
from mediabot.media.session import MediaOptions, MediaSession, RosterEntry, SpeechEvent, ToneEvent
from mediabot.media.worker_wire import RemoteError, read_message, write_message
from mediabot.metrics import FRAME_DELAY

__all__ = ["PUSH_INTERVAL_S", "WorkerHost", "run"]

logger = logging.getLogger(__name__)

PUSH_INTERVAL_S = 0.3


def run(
    index: int,
    options: MediaOptions,
    sock: socket.socket,
    log_level: int,
    log_format: LogFormat,
    loop: Literal["uvloop", "asyncio"] = "asyncio",
) -> None:
    """The worker process's entry point (the ``multiprocessing`` spawn target); ``loop``: the service's kind."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the service stops us
    fix_mmap_threshold()  # spawned: the service's setting is not inherited
    configure_worker_logging(index, log_level, log_format)
    try:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runner.run(_serve(index, options, sock))
    except Exception:
        logger.exception("media worker %d failed", index)
        raise SystemExit(1) from None


class _WorkerTag(logging.Filter):
    """Adds ``worker`` (the worker's index) to every record; JSON lines carry it as a field."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        """Tag the record; never drops one."""
        record.worker = self.index
        return True


class _WorkerTextFormatter(TextFormatter):
    """The service's text lines, ending in ``[worker=<n>]``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The first line with the worker's index appended."""
        return f"{super().formatMessage(record)} [worker={getattr(record, 'worker', '?')}]"


def configure_worker_logging(index: int, level: int, fmt: LogFormat) -> None:
    """The service's logging (level, format) for worker ``index``: its lines carry ``worker`` (a field, or a tag)."""
    configure_logging(level, fmt)
    tag = _WorkerTag(index)
    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
        if type(handler.formatter) is TextFormatter:
            handler.setFormatter(_WorkerTextFormatter())


async def _serve(index: int, options: MediaOptions, sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    engine = MediaEngine(options, repair_on_start=False)  # the service repaired the folder before any worker started
    host = WorkerHost(index, engine, writer)
    try:
        await engine.start()
        host.send(("ready", os.getpid()))
        logger.info("media worker %d (pid %d) ready", index, os.getpid())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, host.shutdown)
        await host.serve(reader)
    finally:
        await engine.stop()  # the sessions' "closed" messages go out before the socket closes
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


class WorkerHost:
    """A worker's engine and its end of the socket: runs the service's requests, reports events and snapshots."""

    def __init__(self, index: int, engine: MediaEngine, writer: asyncio.StreamWriter) -> None:
        self.index = index
        self.engine = engine
        self._writer = writer
        self._done = asyncio.Event()
        self._poke = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        engine.set_listener(self)
        engine.add_speech_sink(self._speech)
        engine.add_closed_listener(self._closed)
        self._sync: dict[str, Callable[..., Any]] = {
            "open": self.open,
            "bind": self.bind,
            "roster_changed": self.roster_changed,
            "recording_decided": self.recording_decided,
            "call_event": self.call_event,
        }
        self._async: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {
            "whip_offer": self.whip_offer,
            "whip_delete": self.whip_delete,
            "close_session": self.engine.close_session,
            "release": self.engine.release,
            "discard": self.discard,
            "play_prompt": self.engine.play_prompt,
            "stop": self.engine.stop,
        }

    def send(self, message: tuple[Any, ...]) -> None:
        """Send one message to the service (dropped if the service is gone)."""
        if not self._writer.is_closing():
            write_message(self._writer, message)

    # -- the loop ----------------------------------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader) -> None:
        """Take requests until the service asks to stop, goes away, or SIGTERM (the caller then stops the engine)."""
        reading = asyncio.get_running_loop().create_task(self._read(reader))
        pushing = asyncio.get_running_loop().create_task(self._push_states())
        try:
            await self._done.wait()
        finally:
            for task in (reading, pushing, *self._tasks):
                task.cancel()
            await asyncio.gather(reading, pushing, *self._tasks, return_exceptions=True)

    def shutdown(self) -> None:
        """Stop taking requests; :meth:`serve` closes the sessions."""
        self._done.set()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                self.handle(await read_message(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            logger.info("media worker %d: the service went away; closing the sessions", self.index)
        self.shutdown()

    def handle(self, message: tuple[Any, ...]) -> None:
        """Run one request: synchronous ones at once (so later requests see their effect), the others as tasks."""
        if message[0] == "tell":
            _, method, args = message
            try:
                self._sync[method](*args)
            except Exception:
                logger.exception("media worker %d: %s failed", self.index, method)
            return
        _, request_id, method, args = message
        if method in self._sync:
            try:
                self.send(("reply", request_id, self._sync[method](*args)))
            except Exception as exc:
                self._refuse(request_id, method, exc)
            return
        task = asyncio.get_running_loop().create_task(self._answer(request_id, method, args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            value = await self._async[method](*args)
        except Exception as exc:
            self._refuse(request_id, method, exc)
        else:
            self.send(("reply", request_id, value))
            self._poke.set()
        if method == "stop":
            self.shutdown()

    def _refuse(self, request_id: int, method: str, exc: Exception) -> None:
        if not isinstance(exc, MediaBotError):
            logger.exception("media worker %d: %s failed", self.index, method, exc_info=exc)
        self.send(("error", request_id, RemoteError.of(exc)))

    async def _push_states(self) -> None:
        """Each session's live snapshot and totals, when they changed, every PUSH_INTERVAL_S (sooner when poked)."""
        sent: dict[str, tuple[Any, ...]] = {}
        sent_delay: tuple[Any, ...] = ()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUSH_INTERVAL_S):
                    await self._poke.wait()
            self._poke.clear()
            current = {s.id: (s.call_id, s.live(), s.totals()) for s in self.engine.sessions() if not s.closed}
            changed = {sid: state for sid, state in current.items() if sent.get(sid) != state}
            delay = (tuple(FRAME_DELAY.counts), FRAME_DELAY.total)
            if changed or delay != sent_delay:
                self.send(("state", changed, delay))
            sent, sent_delay = current, delay

    # -- the engine's listeners --------------------------------------------------------------------------------------

    def on_speech(self, event: SpeechEvent) -> None:
        """Nothing: the speech sink's message carries the segment once, and the service tells its listener too."""

    def on_tone(self, event: ToneEvent) -> None:
        """Tell the service."""
        self.send(("tone", event))

    def on_media_error(self, call_id: str, message: str) -> None:
        """Tell the service."""
        self.send(("media_error", call_id, message))

    def on_media_lost(self, call_id: str, reason: str) -> None:
        """Tell the service, whose call plane hangs the call up."""
        self.send(("media_lost", call_id, reason))

    def _speech(self, session: MediaSession, event: SpeechEvent) -> None:
        self.send(("speech", session.id, session.call_id, event))

    def _closed(self, session: MediaSession) -> None:
        self.send(("closed", session.id, session.live(), session.totals()))

    # -- requests ----------------------------------------------------------------------------------------------------

    def open(
        self,
        session_id: str,
        token: str,
        call_id: str | None,
        gated: bool,
        standalone: bool,
        unused_timeout_s: float,
    ) -> None:
        """Open a session under the id and bearer the service chose (it answered its caller already)."""
        engine = self.engine
        if standalone:
            engine.open_standalone(unused_timeout_s=unused_timeout_s, session_id=session_id, token=token)
        else:
            engine.open_session(call_id, gated=gated, session_id=session_id, token=token)
        self._poke.set()

    def bind(self, session_id: str, call_id: str) -> None:
        """An outgoing call got its id."""
        session = self.engine.session(session_id)
        if session is not None:
            self.engine.bind(app_hosted_media_config(self.engine.blob_for(session)), call_id)
            self._poke.set()

    def roster_changed(self, call_id: str, entries: list[RosterEntry]) -> None:
        """The call's roster changed."""
        self.engine.roster_changed(call_id, entries)
        self._poke.set()

    def recording_decided(self, call_id: str, allowed: bool) -> None:
        """The call's compliance gate was decided."""
        self.engine.recording_decided(call_id, allowed)
        self._poke.set()

    def call_event(self, call_id: str, kind: str, data: dict[str, Any]) -> None:
        """A line for the call's events."""
        self.engine.call_event(call_id, kind, **data)

    async def whip_offer(
        self, session_id: str, authorization: str | None, source: str | None, body: bytes
    ) -> tuple[str, str]:
        """Answer a WHIP offer here, so the peer connection (and its RTP) is this process's."""
        return await self.engine.whip_offer(session_id, authorization, source, body)

    async def whip_delete(self, session_id: str, resource_id: str, authorization: str | None) -> None:
        """End one WHIP resource."""
        await self.engine.whip_delete(session_id, resource_id, authorization)

    async def discard(self, session_id: str) -> None:
        """Creating the call failed: close the session opened for it."""
        session = self.engine.session(session_id)
        if session is not None:
            await self.engine.discard(app_hosted_media_config(self.engine.blob_for(session)))
