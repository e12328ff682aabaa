"""``MediaEngine``: the process's media plane — sessions by id and by call, WHIP, prompts, the recorder thread.

It is the call plane's :class:`~mediabot.calls.media.MediaProvider` for app-hosted media: before a call is answered
or created it opens a :class:`~mediabot.media.session.MediaSession` and returns the ``appHostedMediaConfig`` whose blob
names the session's WHIP endpoint and bearer; it binds an outgoing call's session once Graph gave the call its id;
it takes roster, gate and state news and plays prompts; it finishes the files when the call is released.

When a session's publishers all vanished and none came back (see :mod:`mediabot.media.session`), a call's session
tells the listener (the CallManager hangs the call up, which releases it here) if it hears such news
(:class:`~mediabot.media.session.MediaLossListener`), and is closed otherwise; a standalone session is closed.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import httpx

from mediabot.logs import log_context
from mediabot.media.blob import MediaConfigBlob, app_hosted_media_config
from mediabot.media.ice import allow_loopback_candidates, guard_datagrams
from mediabot.media.pipeline import StreamPipeline
from mediabot.media.prompt import Prompt, PromptError, load_prompt
from mediabot.media.recorder import RecorderIO
from mediabot.media.rtpguard import guard_receiver
from mediabot.media.session import (
    MAIN_SOURCE,
    EndReason,
    MediaListener,
    MediaLossListener,
    MediaOptions,
    MediaSession,
    RosterEntry,
    SourceConnection,
    SpeechEvent,
    StreamTotals,
)
from mediabot.media.whip import WhipBadOffer, WhipNotFound, WhipUnauthorized, answer_offer, check_offer
from mediabot.store.recovery import log_repairs, repair_recordings

__all__ = ["MediaEngine"]

logger = logging.getLogger(__name__)

MAX_PROMPT_BYTES = 64 * 1024 * 1024
STANDALONE_UNUSED_S = 120.0
SOURCE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class MediaEngine:
    """All media sessions of this process; the app-hosted :class:`MediaProvider` and the WHIP endpoint's logic."""

    def __init__(
        self, options: MediaOptions, *, now: Callable[[], float] = time.monotonic, repair_on_start: bool = True
    ) -> None:
        self.options = options
        self._repair_on_start = repair_on_start
        self._now = now
        self._io = RecorderIO()
        self._sessions: dict[str, MediaSession] = {}
        self._by_call: dict[str, MediaSession] = {}
        self._listener: MediaListener | None = None
        self._speech_sinks: list[Callable[[MediaSession, SpeechEvent], None]] = []
        self._closed_listeners: list[Callable[[MediaSession], None]] = []
        self._started = False
        self._retired = StreamTotals()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._repaired: list[Path] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    @property
    def repaired(self) -> Sequence[Path]:
        """The folders of the interrupted calls the last :meth:`start` repaired (to be indexed again)."""
        return tuple(self._repaired)

    async def start(self) -> None:
        """Start the recorder thread; guard aioice against killer datagrams; allow loopback ICE candidates if the
        settings ask for it (see :mod:`mediabot.media.ice`)."""
        if self._started:
            return
        guard_datagrams()
        if self.options.ice_loopback:
            allow_loopback_candidates()
        self._io.start()
        self._started = True
        if not self._repair_on_start:
            return  # a media worker: the service repaired the folder before any worker started
        # Calls a killed process left half-written: fix their headers, equalise lengths, rebuild the mix tail.
        output = Path(self.options.output_dir)
        # Media file work runs on the engine's own IO thread, never on the loop's shared default executor.
        reports = await self._io.run(functools.partial(repair_recordings, output, interrupted_only=True))
        self._repaired = log_repairs(reports)

    async def stop(self) -> None:
        """Close every session (finishing their files) and stop the recorder thread."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for session in list(self._sessions.values()):
            try:
                await self._close(session)
            except Exception:  # one session's failure must not leave the others' files unfinished
                logger.exception("media %s: closing it failed; the other sessions are closed all the same", session.key)
        if self._started:
            await asyncio.to_thread(self._io.close)
            self._started = False

    def set_listener(self, listener: MediaListener) -> None:
        """Who hears about speech, tones and media errors (the CallManager)."""
        self._listener = listener
        for session in self._sessions.values():
            session.listener = listener

    def add_speech_sink(self, sink: Callable[[MediaSession, SpeechEvent], None]) -> None:
        """Also give every closed speech segment of every session to ``sink`` (transcription)."""
        self._speech_sinks.append(sink)

    def add_closed_listener(self, listener: Callable[[MediaSession], None]) -> None:
        """Call ``listener`` once a session closed and its files are finished (indexing, final transcripts)."""
        self._closed_listeners.append(listener)

    def _speech(self, session: MediaSession, event: SpeechEvent) -> None:
        for sink in self._speech_sinks:
            try:
                sink(session, event)
            except Exception:
                logger.exception("media %s: a speech sink failed", session.key)

    # -- sessions ----------------------------------------------------------------------------------------------------

    def open_session(
        self,
        call_id: str | None = None,
        *,
        gated: bool = False,
        session_id: str | None = None,
        token: str | None = None,
    ) -> MediaSession:
        """A new media session for a call (gated: nothing is persisted until the recording gate opens).

        ``session_id`` and ``token`` are made up unless given (a media worker gets them from the service).
        """
        session = MediaSession(
            self.options,
            self._io,
            call_id=call_id,
            gated=gated,
            listener=self._listener,
            speech_sink=self._speech,
            session_id=session_id,
            token=token,
        )
        self._sessions[session.id] = session
        session.on_media_lost = self._media_lost
        if call_id is not None:
            self._by_call[call_id] = session
        owner = f"call {call_id}" if call_id else "a call being placed"
        logger.info("media session %s opened for %s", session.id, owner)
        return session

    def open_standalone(
        self,
        *,
        unused_timeout_s: float = STANDALONE_UNUSED_S,
        session_id: str | None = None,
        token: str | None = None,
    ) -> MediaSession:
        """A recorded session with no call: it ends when its last publisher leaves, or if none came in time."""
        session = MediaSession(
            self.options, self._io, standalone=True, speech_sink=self._speech, session_id=session_id, token=token
        )
        self._sessions[session.id] = session
        session.on_empty = self._standalone_empty
        session.on_media_lost = self._media_lost
        self._spawn(session, self._expire_unused(session, unused_timeout_s))
        logger.info("media session %s opened (standalone)", session.id)
        return session

    def _standalone_empty(self, session: MediaSession) -> None:
        self._spawn(session, self._close(session))

    def _media_lost(self, session: MediaSession, reason: EndReason) -> None:
        """A session's publishers vanished for good: the call plane ends the call, or the session is closed here."""
        listener = self._listener
        if session.call_id is not None and isinstance(listener, MediaLossListener):
            try:
                listener.on_media_lost(session.call_id, str(reason))
            except Exception:
                logger.exception("media %s: the media-lost listener failed", session.key)
            else:
                return
        logger.info("media session %s closed: its publishers vanished (%s) and none came back", session.id, reason)
        self._spawn(session, self._close(session))

    def _spawn(self, session: MediaSession, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` for ``session`` as a task the engine keeps (cancelled at stop), logging with its ids."""
        task = asyncio.get_running_loop().create_task(work, context=session.log_context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire_unused(self, session: MediaSession, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if not session.closed and not session.connections() and session.retired.frames_received == 0:
            logger.info("media session %s closed: no publisher came within %.0f s", session.id, timeout_s)
            await self._close(session)

    def blob_for(self, session: MediaSession) -> MediaConfigBlob:
        """The media config blob that points at the session's WHIP endpoint."""
        return MediaConfigBlob.for_session(self.options.public_url, session.id, session.token, self.options.receive)

    def sessions(self) -> list[MediaSession]:
        """Every open session."""
        return list(self._sessions.values())

    def session(self, session_id: str) -> MediaSession | None:
        """The session with that id."""
        return self._sessions.get(session_id)

    def for_call(self, call_id: str) -> MediaSession | None:
        """The session of a call."""
        return self._by_call.get(call_id)

    def stream_totals(self) -> StreamTotals:
        """Frame and packet counters of every stream this engine has had (for ``/metrics``)."""
        totals = StreamTotals()
        totals.merge(self._retired)
        for session in self._sessions.values():
            totals.merge(session.totals())
        return totals

    async def close_session(self, session_id: str) -> dict[str, Any] | None:
        """End a session (a standalone one: its publisher is done) and finish its files; None if there is none."""
        session = self._sessions.get(session_id)
        return await self._close(session) if session is not None else None

    async def _close(self, session: MediaSession) -> dict[str, Any]:
        with log_context(call_id=session.call_id, session_id=session.id):
            return await self._finish(session)

    async def _finish(self, session: MediaSession) -> dict[str, Any]:
        if self._sessions.pop(session.id, None) is None:
            return await session.close()  # closed, or being closed by another caller
        if session.call_id is not None and self._by_call.get(session.call_id) is session:
            del self._by_call[session.call_id]
        summary = await session.close()
        self._retired.merge(session.totals())
        for listener in self._closed_listeners:
            try:
                listener(session)
            except Exception:
                logger.exception("media %s: a close listener failed", session.key)
        logger.info("media session %s closed (call %s): %s", session.id, session.call_id, summary)
        return summary

    # -- MediaProvider -----------------------------------------------------------------------------------------------

    async def media_config(self, call_id: str | None, *, gated: bool = False) -> dict[str, Any]:
        """Open a session for the call and give its ``appHostedMediaConfig``."""
        session = self.open_session(call_id, gated=gated)
        return app_hosted_media_config(self.blob_for(session))

    def bind(self, media_config: dict[str, Any], call_id: str) -> None:
        """An outgoing call got its id: the session opened for ``media_config`` now belongs to it."""
        session = self._session_of(media_config)
        if session is None or session.call_id == call_id:
            return
        session.call_id = call_id
        self._by_call[call_id] = session

    async def discard(self, media_config: dict[str, Any]) -> None:
        """Creating the call failed: close the session opened for it."""
        session = self._session_of(media_config)
        if session is not None and session.call_id is None:
            await self._close(session)

    def _session_of(self, media_config: dict[str, Any]) -> MediaSession | None:
        """The session whose WHIP endpoint the config's blob names (its last path segment is the session id)."""
        blob = MediaConfigBlob.from_media_config(media_config)
        return self._sessions.get(blob.endpoint.rstrip("/").rpartition("/")[2]) if blob else None

    def roster_changed(self, call_id: str, entries: list[RosterEntry]) -> None:
        """The call's roster changed (full roster)."""
        if (session := self._by_call.get(call_id)) is not None:
            session.roster_changed(entries)

    def recording_decided(self, call_id: str, allowed: bool) -> None:
        """The call's compliance gate was decided."""
        if (session := self._by_call.get(call_id)) is not None:
            session.recording_decided(allowed)

    def call_event(self, call_id: str, kind: str, **data: Any) -> None:
        """Something happened to the call (a state change) worth a line in its events."""
        if (session := self._by_call.get(call_id)) is not None:
            session.event(kind, **data)

    def hosts(self, call_id: str) -> bool:
        """Whether this engine hosts the call's media (so prompts play here, not through Graph)."""
        return call_id in self._by_call

    async def play_prompt(self, call_id: str, uri: str) -> float:
        """Play the WAV at ``uri`` into the call; returns its duration once sent. :class:`PromptError` if it can't."""
        session = self._by_call.get(call_id)
        if session is None:
            raise PromptError(f"no media session for call {call_id}")
        prompt = await self.load_prompt(uri)
        return await session.play(prompt)

    async def release(self, call_id: str) -> None:
        """The call ended: close its session and finish its files."""
        session = self._by_call.get(call_id)
        if session is not None:
            await self._close(session)

    # -- prompts -----------------------------------------------------------------------------------------------------

    async def load_prompt(self, uri: str) -> Prompt:
        """Fetch (https) or read (a file under the prompt folder) a WAV prompt and decode it off the event loop."""
        parsed = urlparse(uri)
        if parsed.scheme in ("https", "http"):
            verify: str | bool = str(self.options.ca_bundle) if self.options.ca_bundle else True
            data = bytearray()
            async with (
                httpx.AsyncClient(verify=verify, timeout=30.0, follow_redirects=True) as client,
                client.stream("GET", uri) as response,
            ):
                if response.status_code != 200:
                    raise PromptError(f"prompt {uri}: HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_PROMPT_BYTES:
                        raise PromptError(f"prompt {uri} is larger than {MAX_PROMPT_BYTES} bytes")
            return await self._io.run(load_prompt, bytes(data), uri)
        path = self._prompt_path(unquote(parsed.path) if parsed.scheme == "file" else uri)
        return await self._io.run(load_prompt, path, uri)

    def _prompt_path(self, name: str) -> Path:
        base = Path(self.options.prompt_dir or ".").resolve()
        path = (base / name).resolve()
        if not path.is_relative_to(base):
            raise PromptError(f"prompt {name}: only files under the prompt folder {base} are played")
        if not path.is_file():
            raise PromptError(f"prompt {name}: no such file under {base}")
        return path

    # -- WHIP --------------------------------------------------------------------------------------------------------

    def authorize(self, session_id: str, authorization: str | None) -> MediaSession:
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
        """Answer a WHIP offer: ``(answer SDP, resource id)``. Raises a :class:`~mediabot.media.whip.WhipError`."""
        session = self.authorize(session_id, authorization)
        with log_context(call_id=session.call_id, session_id=session.id):
            return await self._answer(session, source, body)

    async def _answer(self, session: MediaSession, source: str | None, body: bytes) -> tuple[str, str]:
        source_id = source or MAIN_SOURCE
        if not source_id or len(source_id) > 128 or not set(source_id) <= SOURCE_ID_CHARS:
            raise WhipBadOffer("'source' must be a roster sourceId or 'main' (letters, digits, '-', '_', '.')")
        offer, info = check_offer(body, self.options.max_sdp_bytes)
        send = session.prompt_track if source_id == MAIN_SOURCE else None
        pc, transceiver, answer = await answer_offer(offer, send_track=send)
        guard = guard_receiver(transceiver.receiver, info.ssrcs)
        codec = next((c for c in info.audio_codecs if c.lower() in ("audio/opus", "audio/pcmu")), "")
        connection = SourceConnection(
            resource_id=secrets.token_urlsafe(9),
            source_id=source_id,
            pc=pc,
            transceiver=transceiver,
            pipeline=StreamPipeline(session.clock),
            codec=codec,
            answer_sdp=answer,
            guard=guard,
        )
        session.add_connection(connection)
        logger.info("media %s: source %s connected (%s)", session.key, source_id, codec)
        return answer, connection.resource_id

    async def whip_delete(self, session_id: str, resource_id: str, authorization: str | None) -> None:
        """End one WHIP resource."""
        session = self.authorize(session_id, authorization)
        if not await session.remove_connection(resource_id, EndReason.DELETED):
            raise WhipNotFound(f"no WHIP resource {resource_id!r} in session {session_id!r}")
