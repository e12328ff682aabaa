"""``MediaWorkers``: the media plane spread over worker processes (one per core, past the GIL), each call owned by one.

The service keeps its HTTP routes, the call plane, transcription and the index; each worker process runs a real
:class:`~mediabot.media.engine.MediaEngine` on its own event loop (:mod:`mediabot.media.worker_process`). A new
session (a call's or a standalone one) goes to the worker with the fewest open sessions, then streams; everything
about it goes to that worker. A WHIP offer is answered by the owning worker, so its peer connection and RTP live
there; the service only relays the SDP. The service holds a :class:`RemoteSession` handle per session, kept up to
date by the worker's snapshots (a few a second, never per frame) and its events: speech segments, tones, media
errors, closed sessions.

The start-up repair of interrupted recordings runs here, once, before any worker starts. A worker that dies is
restarted; its sessions' folders are repaired (:func:`~mediabot.store.recovery.repair_folders`) and the sessions are
reported closed with an error (the call plane hears ``on_media_error``). :meth:`MediaWorkers.stop` asks every worker
to close its sessions and finish their files, waits ``stop_timeout_s``, then kills what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import hmac
import itertools
import logging
import multiprocessing
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from mediabot._errors import MediaError
from mediabot._loop import running_loop_name
from mediabot.logs import JsonFormatter, LogFormat, log_context
from mediabot.media import worker_process
from mediabot.media.blob import MediaConfigBlob, app_hosted_media_config
from mediabot.media.engine import STANDALONE_UNUSED_S
from mediabot.media.prompt import PromptError
from mediabot.media.session import (
    MediaListener,
    MediaLossListener,
    MediaOptions,
    RosterEntry,
    SpeechEvent,
    StreamTotals,
    ToneEvent,
)
from mediabot.media.whip import WhipNotFound, WhipUnauthorized
from mediabot.media.worker_wire import RemoteError, WorkerLost, read_message, write_message
from mediabot.metrics import FRAME_DELAY
from mediabot.store.layout import CallPaths
from mediabot.store.recovery import log_repairs, repair_folders, repair_recordings

__all__ = ["MediaWorkers", "RemoteSession", "WorkerLost", "media_worker_count"]

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
EXIT_WAIT_S = 5.0
QUICK_DEATH_S = 10.0
MAX_RESTART_DELAY_S = 30.0


def media_worker_count(setting: int) -> int:
    """The number of media workers a ``media_workers`` setting asks for: -1 is one per core, 0 none (in-process)."""
    return (os.cpu_count() or 1) if setting < 0 else setting


class RemoteSession:
    """A media session that a worker process hosts, as the service sees it: ids, owner, its latest snapshot.

    The id and bearer are chosen here, so the session's WHIP endpoint and folder are known before the worker has
    opened it; requests sent later reach the worker after the open.
    """

    def __init__(
        self,
        options: MediaOptions,
        worker: int,
        *,
        call_id: str | None = None,
        standalone: bool = False,
        gated: bool = False,
    ) -> None:
        self.id = secrets.token_urlsafe(12)
        self.token = secrets.token_urlsafe(32)
        self.call_id = call_id
        self.standalone = standalone
        self.worker = worker
        self.created = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
        self.errors: list[str] = []
        self.opened: asyncio.Future[Any] | None = None
        self._options = options
        self._closed = False
        self._totals = StreamTotals()
        self._live: dict[str, Any] = {
            "session_id": self.id,
            "call_id": call_id,
            "standalone": standalone,
            "key": self.key,
            "created": self.created,
            "recording": "pending" if gated else "on",
            "position_s": 0.0,
            "segments": 0,
            "tones": "",
            "sources": [],
        }
        self._updated = asyncio.Event()

    @property
    def key(self) -> str:
        """The folder name of this session's outputs: the call id, or the session id for a standalone session."""
        return self.call_id or self.id

    @property
    def closed(self) -> bool:
        """Whether the session ended (closed by its worker, or lost with it)."""
        return self._closed

    @property
    def folder(self) -> Path:
        """The folder this session's outputs go to."""
        return CallPaths(Path(self._options.output_dir), self.key).dir

    def live(self) -> dict[str, Any]:
        """The worker's latest snapshot of what is happening (as :meth:`MediaSession.live` gives it)."""
        return {**self._live, "call_id": self.call_id, "key": self.key}

    def totals(self) -> StreamTotals:
        """The worker's latest frame and packet counters of this session's streams."""
        return dataclasses.replace(self._totals)

    async def next_update(self) -> None:
        """Wait for the next snapshot from the worker (or the end of the session)."""
        if not self._closed:
            await self._updated.wait()

    def _update(self, live: dict[str, Any], totals: StreamTotals) -> None:
        self._live = live
        self._totals = totals
        updated, self._updated = self._updated, asyncio.Event()
        updated.set()

    def _close(self, live: dict[str, Any] | None, totals: StreamTotals | None) -> None:
        self._closed = True
        self._update(live if live is not None else self._live, totals if totals is not None else self._totals)


class _Worker:
    """One worker process slot: the process, its socket, the requests waiting for replies."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: BaseProcess | None = None
        self.pid: int | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reader: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[int] | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.started_at = 0.0
        self.quick_deaths = 0
        self.frame_delay: tuple[tuple[int, ...], float] = ((), 0.0)
        self._ids = itertools.count(1)

    @property
    def alive(self) -> bool:
        """Whether requests can be sent to it (its process started and was not lost)."""
        return self.writer is not None and not self.writer.is_closing()

    def request(self, method: str, *args: Any) -> asyncio.Future[Any]:
        """Send a request; the future gets the reply, or the worker's error (:class:`WorkerLost` if it dies)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.writer is None or self.writer.is_closing():
            future.set_exception(WorkerLost(f"media worker {self.index} is not running"))
            return future
        request_id = next(self._ids)
        self.pending[request_id] = future
        future.add_done_callback(lambda _: self.pending.pop(request_id, None))
        write_message(self.writer, ("call", request_id, method, args))
        return future

    async def call(self, method: str, *args: Any) -> Any:
        """Send a request and wait for its reply."""
        return await self.request(method, *args)

    def tell(self, method: str, *args: Any) -> None:
        """Send a request nobody waits for (dropped if the worker is gone: its sessions are being closed)."""
        if self.writer is not None and not self.writer.is_closing():
            write_message(self.writer, ("tell", method, args))

    def fail_pending(self, error: Exception) -> None:
        """The worker is gone: every waiting request fails with ``error``."""
        for future in list(self.pending.values()):
            if not future.done():
                future.set_exception(error)
        self.pending.clear()
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(error)


class MediaWorkers:
    """The app-hosted media plane in ``count`` worker processes; the same surface as :class:`MediaEngine`."""

    def __init__(
        self,
        options: MediaOptions,
        count: int,
        *,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        if count < 1:
            raise ValueError("MediaWorkers needs at least one worker (0 workers: use MediaEngine)")
        self.options = options
        self._start_timeout_s = start_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(index) for index in range(count)]
        self._sessions: dict[str, RemoteSession] = {}
        self._by_call: dict[str, RemoteSession] = {}
        self._listener: MediaListener | None = None
        self._speech_sinks: list[Callable[[RemoteSession, SpeechEvent], None]] = []
        self._closed_listeners: list[Callable[[RemoteSession], None]] = []
        self._retired = StreamTotals()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._running = False
        self._stopping = False
        self._repaired: list[Path] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    @property
    def repaired(self) -> Sequence[Path]:
        """The folders of the interrupted calls the last :meth:`start` repaired (to be indexed again)."""
        return tuple(self._repaired)

    async def start(self) -> None:
        """Repair what a killed process left (once, before any worker takes sessions), then start the workers."""
        if self._running:
            return
        reports = await asyncio.to_thread(repair_recordings, Path(self.options.output_dir), interrupted_only=True)
        self._repaired = log_repairs(reports)
        self._stopping = False
        try:
            for worker in self._workers:
                await self._launch(worker)
            async with asyncio.timeout(self._start_timeout_s):
                pids = await asyncio.gather(*(w.ready for w in self._workers if w.ready is not None))
        except (Exception, asyncio.CancelledError) as exc:
            await self._stop_workers()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise MediaError(f"the media workers did not start: {exc or type(exc).__name__}") from exc
        self._running = True
        logger.info("media: %d worker process(es) ready (pids %s)", len(pids), ", ".join(map(str, pids)))

    async def stop(self) -> None:
        """Every worker closes its sessions and finishes their files (``stop_timeout_s``, then it is killed)."""
        if not self._running and not any(w.process is not None for w in self._workers):
            return
        self._running = False
        await self._stop_workers()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_workers(self) -> None:
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_timeout_s
        asked = [w.request("stop") for w in self._workers if w.alive]
        if asked:
            await asyncio.wait(asked, timeout=self._stop_timeout_s)
            for request in asked:
                if request.done() and not request.cancelled():
                    request.exception()  # retrieved: a worker lost meanwhile is reported by its reader
        readers = [w.reader for w in self._workers if w.reader is not None]
        if readers:
            _, late = await asyncio.wait(readers, timeout=max(deadline - loop.time(), 1.0))
            for worker in self._workers:
                if worker.reader in late and worker.process is not None:
                    logger.warning("media worker %d did not stop in time; killed", worker.index)
                    worker.process.kill()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _launch(self, worker: _Worker) -> None:
        """Start ``worker``'s process with one end of a new socket pair; read what it sends."""
        ours, theirs = socket.socketpair()
        level, fmt = _service_logging()
        process = self._context.Process(
            target=worker_process.run,
            args=(worker.index, self.options, theirs, level, fmt, running_loop_name()),
            name=f"mediabot-media-{worker.index}",
            daemon=True,  # an abandoned worker gets SIGTERM at exit, and finishes its files
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the child's copy is the only one left: its death ends our socket
        reader, writer = await asyncio.open_connection(sock=ours)
        worker.process = process
        worker.pid = process.pid
        worker.writer = writer
        worker.started_at = time.monotonic()
        worker.frame_delay = ((), 0.0)
        worker.ready = asyncio.get_running_loop().create_future()
        worker.ready.add_done_callback(_retrieved)  # only start() awaits it; a restarted worker's may just fail
        worker.reader = asyncio.get_running_loop().create_task(
            self._read(worker, reader), name=f"media worker {worker.index}"
        )
        logger.info("media worker %d starting (pid %s)", worker.index, process.pid)

    def worker_pids(self) -> list[int | None]:
        """The process id of each worker (None while one is being restarted)."""
        return [w.pid if w.alive else None for w in self._workers]

    # -- what the workers say ----------------------------------------------------------------------------------------

    async def _read(self, worker: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                message = await read_message(reader)
                try:
                    self._dispatch(worker, message)
                except Exception:
                    logger.exception("media worker %d: handling its %r message failed", worker.index, message[0])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            logger.exception("media worker %d: its messages cannot be read; it is killed", worker.index)
            if worker.process is not None:
                worker.process.kill()
        await self._lost(worker)

    def _dispatch(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "reply":
            future = worker.pending.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])
        elif kind == "error":
            future = worker.pending.pop(message[1], None)
            error: RemoteError = message[2]
            if future is not None and not future.done():
                future.set_exception(error.exception())
        elif kind == "state":
            for session_id, (_call_id, live, totals) in message[1].items():
                session = self._sessions.get(session_id)
                if session is not None and session.worker == worker.index:
                    session._update(live, totals)
            self._frame_delay(worker, *message[2])
        elif kind == "speech":
            self._speech(*message[1:])
        elif kind == "tone":
            self._tone(message[1])
        elif kind == "media_error":
            if self._listener is not None:
                self._listener.on_media_error(message[1], message[2])
        elif kind == "media_lost":
            if isinstance(self._listener, MediaLossListener):
                self._listener.on_media_lost(message[1], message[2])
        elif kind == "closed":
            _, session_id, live, totals = message
            session = self._sessions.get(session_id)
            if session is not None and session.worker == worker.index:
                self._finished(session, live, totals)
        elif kind == "ready":
            if worker.ready is not None and not worker.ready.done():
                worker.ready.set_result(message[1])
        else:
            logger.warning("media worker %d sent an unknown message %r", worker.index, kind)

    def _speech(self, session_id: str, call_id: str | None, event: SpeechEvent) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            for sink in self._speech_sinks:
                try:
                    sink(session, event)
                except Exception:
                    logger.exception("media %s: a speech sink failed", session.key)
        # As a session does: the call plane hears the speech of calls only.
        if call_id is not None and self._listener is not None:
            self._listener.on_speech(event)

    def _tone(self, event: ToneEvent) -> None:
        if self._listener is not None:
            self._listener.on_tone(event)

    def _frame_delay(self, worker: _Worker, counts: tuple[int, ...], total: float) -> None:
        """Add what the worker's frame-delay histogram gained to this process's (which ``/metrics`` reads)."""
        before, before_total = worker.frame_delay
        if len(counts) != len(FRAME_DELAY.counts):
            return
        for i, count in enumerate(counts):
            FRAME_DELAY.counts[i] += count - (before[i] if before else 0)
        FRAME_DELAY.total += total - before_total
        worker.frame_delay = (counts, total)

    def _finished(
        self,
        session: RemoteSession,
        live: dict[str, Any] | None = None,
        totals: StreamTotals | None = None,
    ) -> None:
        """The session ended (its files are finished, or its worker is gone): forget it, tell the listeners."""
        if session.closed:
            return
        self._sessions.pop(session.id, None)
        if session.call_id is not None and self._by_call.get(session.call_id) is session:
            del self._by_call[session.call_id]
        session._close(live, totals)
        self._retired.merge(session.totals())
        with log_context(call_id=session.call_id, session_id=session.id):
            for listener in self._closed_listeners:
                try:
                    listener(session)
                except Exception:
                    logger.exception("media %s: a close listener failed", session.key)
        logger.info("media session %s closed (call %s, worker %d)", session.id, session.call_id, session.worker)

    async def _lost(self, worker: _Worker) -> None:
        """The worker's socket ended: reap the process; restart it (unless stopping); close its sessions."""
        if worker.writer is not None:
            worker.writer.close()
        worker.fail_pending(WorkerLost(f"media worker {worker.index} stopped"))
        process, worker.process, worker.pid = worker.process, None, None
        code: int | None = None
        if process is not None:
            await asyncio.to_thread(process.join, EXIT_WAIT_S)
            if process.exitcode is None:
                process.kill()
                await asyncio.to_thread(process.join)
            code = process.exitcode
            process.close()
        orphans = [s for s in self._sessions.values() if s.worker == worker.index]
        if self._running and not self._stopping:
            logger.error(
                "media worker %d exited (code %s) with %d open sessions; restarting it",
                worker.index,
                code,
                len(orphans),
            )
            lived = time.monotonic() - worker.started_at
            worker.quick_deaths = worker.quick_deaths + 1 if lived < QUICK_DEATH_S else 0
            delay = 0.0 if worker.quick_deaths <= 1 else min(2.0 ** (worker.quick_deaths - 1), MAX_RESTART_DELAY_S)
            if delay == 0.0:
                await self._restart(worker, 0.0)
            else:
                self._spawn(self._restart(worker, delay))
        if not orphans:
            return
        # Fix the headers and lengths the dead process left before anyone (the index, a transcript) reads them.
        reports = await asyncio.to_thread(repair_folders, [s.folder for s in orphans])
        for report in reports:
            if report.changed or report.problems:
                logger.warning("repaired the recording %s its worker left: %s", report.call_dir.name, report)
        message = f"the media worker hosting this session stopped (exit code {code}); the recording ends here"
        for session in orphans:
            session.errors.append(message)
            if session.call_id is not None and self._listener is not None and not session.closed:
                try:
                    self._listener.on_media_error(session.call_id, message)
                except Exception:
                    logger.exception("media %s: the media error listener failed", session.key)
            self._finished(session)

    async def _restart(self, worker: _Worker, delay: float) -> None:
        if delay:
            logger.warning("media worker %d keeps dying; restarting it in %.0f s", worker.index, delay)
            await asyncio.sleep(delay)
        if self._stopping or not self._running:
            return
        try:
            await self._launch(worker)
        except Exception:
            logger.exception("media worker %d could not be restarted", worker.index)
            self._spawn(self._restart(worker, MAX_RESTART_DELAY_S))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- listeners ---------------------------------------------------------------------------------------------------

    def set_listener(self, listener: MediaListener) -> None:
        """Who hears about speech, tones and media errors of calls (the CallManager)."""
        self._listener = listener

    def add_speech_sink(self, sink: Callable[[RemoteSession, SpeechEvent], None]) -> None:
        """Also give every closed speech segment of every session (its audio included) to ``sink``."""
        self._speech_sinks.append(sink)

    def add_closed_listener(self, listener: Callable[[RemoteSession], None]) -> None:
        """Call ``listener`` once a session closed and its files are finished (or its worker was lost)."""
        self._closed_listeners.append(listener)

    # -- sessions ----------------------------------------------------------------------------------------------------

    def _open(
        self,
        call_id: str | None,
        *,
        gated: bool = False,
        standalone: bool = False,
        unused_timeout_s: float = STANDALONE_UNUSED_S,
    ) -> RemoteSession:
        worker = self._least_loaded()
        session = RemoteSession(self.options, worker.index, call_id=call_id, standalone=standalone, gated=gated)
        self._sessions[session.id] = session
        if call_id is not None:
            self._by_call[call_id] = session
        opened = worker.request("open", session.id, session.token, call_id, gated, standalone, unused_timeout_s)
        opened.add_done_callback(lambda future: self._open_done(session, future))
        session.opened = opened
        owner = f"call {call_id}" if call_id else ("no call (standalone)" if standalone else "a call being placed")
        logger.info("media session %s opened for %s on worker %d", session.id, owner, worker.index)
        return session

    def _open_done(self, session: RemoteSession, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or (error := future.exception()) is None:
            return
        if not isinstance(error, WorkerLost):  # a lost worker's sessions are closed by _lost
            logger.error("media session %s could not be opened: %s", session.id, error)
            self._finished(session)

    def _least_loaded(self) -> _Worker:
        if not self._running:
            raise MediaError("the media workers are not running")
        load = {w.index: [0, 0] for w in self._workers if w.alive}
        if not load:
            raise MediaError("no media worker is running (one is being restarted)")
        for session in self._sessions.values():
            if session.worker in load:
                load[session.worker][0] += 1
                load[session.worker][1] += session._totals.streams
        index = min(load, key=lambda i: (load[i][0], load[i][1], i))
        return self._workers[index]

    def open_standalone(self, *, unused_timeout_s: float = STANDALONE_UNUSED_S) -> RemoteSession:
        """A recorded session with no call: it ends when its last publisher leaves, or if none came in time."""
        return self._open(None, standalone=True, unused_timeout_s=unused_timeout_s)

    def blob_for(self, session: RemoteSession) -> MediaConfigBlob:
        """The media config blob that points at the session's WHIP endpoint (served by this process)."""
        return MediaConfigBlob.for_session(self.options.public_url, session.id, session.token, self.options.receive)

    def sessions(self) -> list[RemoteSession]:
        """Every open session."""
        return list(self._sessions.values())

    def session(self, session_id: str) -> RemoteSession | None:
        """The session with that id."""
        return self._sessions.get(session_id)

    def for_call(self, call_id: str) -> RemoteSession | None:
        """The session of a call."""
        return self._by_call.get(call_id)

    def stream_totals(self) -> StreamTotals:
        """Frame and packet counters of every stream the workers have had (as of their latest snapshots)."""
        totals = StreamTotals()
        totals.merge(self._retired)
        for session in self._sessions.values():
            totals.merge(session.totals())
        return totals

    async def close_session(self, session_id: str) -> dict[str, Any] | None:
        """End a session and finish its files (in its worker); None if there is none."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        try:
            summary: dict[str, Any] | None = await self._owner(session).call("close_session", session_id)
        except WorkerLost as exc:
            return {"errors": [*session.errors, str(exc)]}
        return summary

    def _owner(self, session: RemoteSession) -> _Worker:
        return self._workers[session.worker]

    # -- MediaProvider -----------------------------------------------------------------------------------------------

    async def media_config(self, call_id: str | None, *, gated: bool = False) -> dict[str, Any]:
        """Open a session for the call on the least loaded worker and give its ``appHostedMediaConfig``."""
        session = self._open(call_id, gated=gated)
        if session.opened is not None:
            await session.opened
        return app_hosted_media_config(self.blob_for(session))

    def bind(self, media_config: dict[str, Any], call_id: str) -> None:
        """An outgoing call got its id: the session opened for ``media_config`` now belongs to it."""
        session = self._session_of(media_config)
        if session is None or session.call_id == call_id:
            return
        session.call_id = call_id
        self._by_call[call_id] = session
        self._owner(session).tell("bind", session.id, call_id)

    async def discard(self, media_config: dict[str, Any]) -> None:
        """Creating the call failed: close the session opened for it."""
        session = self._session_of(media_config)
        if session is not None and session.call_id is None:
            with contextlib.suppress(WorkerLost):
                await self._owner(session).call("discard", session.id)

    def _session_of(self, media_config: dict[str, Any]) -> RemoteSession | None:
        blob = MediaConfigBlob.from_media_config(media_config)
        return self._sessions.get(blob.endpoint.rstrip("/").rpartition("/")[2]) if blob else None

    def roster_changed(self, call_id: str, entries: list[RosterEntry]) -> None:
        """The call's roster changed (full roster)."""
        if (session := self._by_call.get(call_id)) is not None:
            self._owner(session).tell("roster_changed", call_id, entries)

    def recording_decided(self, call_id: str, allowed: bool) -> None:
        """The call's compliance gate was decided."""
        if (session := self._by_call.get(call_id)) is not None:
            self._owner(session).tell("recording_decided", call_id, allowed)

    def call_event(self, call_id: str, kind: str, **data: Any) -> None:
        """Something happened to the call (a state change) worth a line in its events."""
        if (session := self._by_call.get(call_id)) is not None:
            self._owner(session).tell("call_event", call_id, kind, data)

    def hosts(self, call_id: str) -> bool:
        """Whether a worker hosts the call's media (so prompts play there, not through Graph)."""
        return call_id in self._by_call

    async def play_prompt(self, call_id: str, uri: str) -> float:
        """Play the WAV at ``uri`` into the call, from its worker; :class:`PromptError` if it can't."""
        session = self._by_call.get(call_id)
        if session is None:
            raise PromptError(f"no media session for call {call_id}")
        try:
            played: float = await self._owner(session).call("play_prompt", call_id, uri)
        except WorkerLost as exc:
            raise PromptError(f"the call's media ended while playing {uri}: {exc}") from exc
        return played

    async def release(self, call_id: str) -> None:
        """The call ended: its worker closes its session and finishes its files."""
        session = self._by_call.get(call_id)
        if session is not None:
            with contextlib.suppress(WorkerLost):
                await self._owner(session).call("release", call_id)

    # -- WHIP --------------------------------------------------------------------------------------------------------

    def authorize(self, session_id: str, authorization: str | None) -> RemoteSession:
        """The session if ``authorization`` carries its bearer token; else WhipNotFound / WhipUnauthorized."""
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            raise WhipNotFound(f"no media session {session_id!r}")
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), session.token.encode()):
            raise WhipUnauthorized("the bearer token is missing or is not this session's")
        return session

    async def whip_offer(
        self, session_id: str, authorization: str | None, source: str | None, body: bytes
    ) -> tuple[str, str]:
        """Have the owning worker answer a WHIP offer: ``(answer SDP, resource id)``; its ``WhipError`` re-raised."""
        session = self.authorize(session_id, authorization)
        try:
            answer, resource_id = await self._owner(session).call("whip_offer", session_id, authorization, source, body)
        except WorkerLost as exc:
            raise WhipNotFound(f"media session {session_id!r} ended: {exc}") from exc
        return str(answer), str(resource_id)

    async def whip_delete(self, session_id: str, resource_id: str, authorization: str | None) -> None:
        """End one WHIP resource (in the owning worker)."""
        session = self.authorize(session_id, authorization)
        try:
            await self._owner(session).call("whip_delete", session_id, resource_id, authorization)
        except WorkerLost as exc:
            raise WhipNotFound(f"media session {session_id!r} ended: {exc}") from exc


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _service_logging() -> tuple[int, LogFormat]:
    """This process's log level and format, for the workers to log the same way."""
    root = logging.getLogger()
    fmt: LogFormat = "json" if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) else "text"
    return root.getEffectiveLevel(), fmt
