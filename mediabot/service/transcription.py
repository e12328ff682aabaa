"""Live transcription and the recordings index, wired to the media engine and the call manager of one service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from mediabot._errors import ConfigError
from mediabot.calls import CallManager
from mediabot.config import Settings
from mediabot.logs import log_context
from mediabot.media.plane import MediaPlane, SessionView
from mediabot.media.session import SpeechEvent
from mediabot.store.index import INDEX_FILE, RecordingsIndex
from mediabot.store.timeline import render_timeline
from mediabot.transcribe.base import TranscriberUnavailable, TranscriptEntry
from mediabot.transcribe.factory import transcriber_from_settings
from mediabot.transcribe.live import LiveTranscription, PendingSegment

__all__ = ["INDEX_FILE", "Recordings"]

logger = logging.getLogger(__name__)


class Recordings:
    """What happens to a call's speech after the media plane: transcription (live, never lost) and the index."""

    def __init__(self, settings: Settings, engine: MediaPlane[Any], manager: CallManager) -> None:
        self._settings = settings
        self._engine = engine
        self._manager = manager
        self._output = Path(settings.output_dir)
        self.index: RecordingsIndex | None = None
        self.live: LiveTranscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._transcript_listeners: list[Callable[[TranscriptEntry], None]] = []

    def add_transcript_listener(self, listener: Callable[[TranscriptEntry], None]) -> None:
        """Also give every transcribed segment to ``listener`` (the live view), on the event loop."""
        self._transcript_listeners.append(listener)

    async def start(self) -> None:
        """Open the index, start transcription (resuming what a previous process left), hook into the engine."""
        self.index = await asyncio.to_thread(self._open_index)
        if self._settings.transcriber != "none":
            try:
                transcriber = transcriber_from_settings(self._settings)
            except (TranscriberUnavailable, ValueError) as exc:
                raise ConfigError(f"transcription cannot start: {exc}") from exc
            if transcriber is not None:
                self.live = LiveTranscription(
                    transcriber,
                    workers=self._settings.transcriber_workers,
                    max_in_memory=self._settings.transcription_max_in_memory,
                    on_entry=self._transcribed,
                )
                self.live.start()
                await self.live.resume(self._output)
        self._engine.add_speech_sink(self._speech)
        self._engine.add_closed_listener(self._closed)
        # The calls a killed process left were repaired as the engine started: index them (and draw their timeline)
        # before the service takes requests, so that its recordings API lists them from the start.
        for folder in self._engine.repaired:
            await self._index_call(folder)

    async def stop(self) -> None:
        """Park what is still waiting (transcribed after the next start), close the index."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.live is not None:
            await self.live.aclose()
        if self.index is not None:
            self.index.close()

    def _open_index(self) -> RecordingsIndex:
        self._output.mkdir(parents=True, exist_ok=True)
        return RecordingsIndex(self._output / INDEX_FILE)

    def _speech(self, session: SessionView, event: SpeechEvent) -> None:
        if self.live is None:
            return
        segment = event.segment
        self.live.submit(
            PendingSegment(
                call_id=session.key,
                folder=Path(session.folder),
                participant_id=event.participant_id,
                display_name=event.display_name,
                source_id=event.source_id,
                start=segment.start_s,
                end=segment.end_s,
                audio=segment.audio,
            )
        )

    def _closed(self, session: SessionView) -> None:
        if self.live is not None:
            self.live.call_ended(session.key)
        folder = Path(session.folder)
        with log_context(call_id=session.call_id, participant_id=None, session_id=session.id):
            self._spawn(self._index_call(folder))

    async def _index_call(self, folder: Path) -> None:
        if not await asyncio.to_thread((folder / "call.json").is_file):
            return  # a refused compliance gate (or a standalone session nobody joined) leaves no folder
        try:
            await asyncio.to_thread(render_timeline, folder)
        except Exception:
            logger.exception("drawing the timeline of %s failed", folder.name)
        index = self.index
        if index is None:
            return
        try:
            await asyncio.to_thread(index.index_call, folder)
        except Exception:
            logger.exception("indexing %s failed (mediabot recordings reindex rebuilds it)", folder.name)

    async def _transcribed(self, entry: TranscriptEntry) -> None:
        with log_context(call_id=entry.call_id, participant_id=entry.participant_id):
            if self.index is not None:
                try:
                    await asyncio.to_thread(self.index.add_transcript_entry, entry)
                except Exception:
                    logger.exception("indexing a transcript line of %s failed", entry.call_id)
            self._manager.on_transcript(entry)
            for listener in self._transcript_listeners:
                listener(entry)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
