"""``MediaPlane``: what the service and the call plane use of app-hosted media, wherever the media runs.

Two implementations: :class:`~mediabot.media.engine.MediaEngine` runs every session on the service's own event loop;
:class:`~mediabot.media.workers.MediaWorkers` runs them in worker processes (one per core) and hands the service
:class:`~mediabot.media.workers.RemoteSession` handles. :class:`SessionView` is what the service reads of a session
(the console's live view, ``/v1/sessions``, transcription and indexing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from mediabot.calls.media import MediaProvider
from mediabot.media.blob import MediaConfigBlob
from mediabot.media.session import MediaListener, MediaOptions, SpeechEvent, StreamTotals

__all__ = ["MediaPlane", "SessionView"]


class SessionView(Protocol):
    """What the service reads of one media session."""

    @property
    def id(self) -> str:
        """The session id (the last segment of its WHIP endpoint)."""
        ...

    @property
    def token(self) -> str:
        """The bearer token its WHIP publishers present."""
        ...

    @property
    def call_id(self) -> str | None:
        """The call it belongs to (None: standalone, or a call being placed)."""
        ...

    @property
    def standalone(self) -> bool:
        """Whether it is a recorded session with no call."""
        ...

    @property
    def key(self) -> str:
        """The folder name of its outputs: the call id, or the session id."""
        ...

    @property
    def closed(self) -> bool:
        """Whether it ended."""
        ...

    @property
    def folder(self) -> Any:
        """The folder its outputs go to."""
        ...

    def live(self) -> dict[str, Any]:
        """What is happening now (sources, who speaks, levels, counts), JSON-ready."""
        ...

    def totals(self) -> StreamTotals:
        """Frame and packet counters of its streams."""
        ...


S = TypeVar("S", bound=SessionView)


class MediaPlane(MediaProvider, Protocol[S]):
    """The media plane as the service drives it: sessions, WHIP, listeners, and the call plane's ``MediaProvider``."""

    @property
    def options(self) -> MediaOptions:
        """The media settings."""
        ...

    async def start(self) -> None:
        """Be ready to take sessions (after repairing the calls a killed process left: see :attr:`repaired`)."""
        ...

    @property
    def repaired(self) -> Sequence[Path]:
        """The folders of the interrupted calls the last :meth:`start` repaired (to be indexed again)."""
        ...

    async def stop(self) -> None:
        """Close every session (finishing its files) and stop."""
        ...

    def set_listener(self, listener: MediaListener) -> None:
        """Who hears about speech, tones and media errors of calls (the CallManager)."""
        ...

    def add_speech_sink(self, sink: Callable[[S, SpeechEvent], None]) -> None:
        """Also give every closed speech segment of every session to ``sink``."""
        ...

    def add_closed_listener(self, listener: Callable[[S], None]) -> None:
        """Call ``listener`` once a session closed and its files are finished."""
        ...

    def sessions(self) -> Sequence[S]:
        """Every open session."""
        ...

    def session(self, session_id: str) -> S | None:
        """The open session with that id."""
        ...

    def for_call(self, call_id: str) -> S | None:
        """The open session of a call."""
        ...

    def stream_totals(self) -> StreamTotals:
        """Frame and packet counters of every stream so far (for ``/metrics``)."""
        ...

    def open_standalone(self, *, unused_timeout_s: float = ...) -> S:
        """A recorded session with no call."""
        ...

    def blob_for(self, session: S) -> MediaConfigBlob:
        """The media config blob naming the session's WHIP endpoint and bearer."""
        ...

    async def close_session(self, session_id: str) -> dict[str, Any] | None:
        """End a session and finish its files; None if there is none."""
        ...

    def authorize(self, session_id: str, authorization: str | None) -> S:
        """The session if ``authorization`` carries its bearer; else ``WhipNotFound`` / ``WhipUnauthorized``."""
        ...

    async def whip_offer(
        self, session_id: str, authorization: str | None, source: str | None, body: bytes
    ) -> tuple[str, str]:
        """Answer a WHIP offer: ``(answer SDP, resource id)``; raises a ``WhipError``."""
        ...

    async def whip_delete(self, session_id: str, resource_id: str, authorization: str | None) -> None:
        """End one WHIP resource."""
        ...
