"""``LiveView``: what is happening now — calls with state and roster, their media, live transcript lines.

The console's live page and ``mediabot demo``'s progress display read one JSON snapshot of it (``GET /v1/live``, or
the ``/v1/live/events`` stream). It joins the call plane (state, roster) with the media plane (who speaks, levels,
segments) and keeps the last transcript lines of each call or standalone session.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from mediabot.calls import CallManager
from mediabot.media.plane import MediaPlane
from mediabot.transcribe.base import TranscriptEntry

__all__ = ["TRANSCRIPT_LINES", "LiveView"]

TRANSCRIPT_LINES = 50
ENDED_KEPT = 20


class LiveView:
    """Snapshots of live calls and standalone media sessions, with each one's latest transcript lines."""

    def __init__(self, manager: CallManager | None, engine: MediaPlane[Any] | None) -> None:
        self._manager = manager
        self._engine = engine
        self._transcripts: dict[str, deque[dict[str, Any]]] = {}

    def on_transcript(self, entry: TranscriptEntry) -> None:
        """A segment was transcribed: keep it among its call's (or session's) latest lines."""
        lines = self._transcripts.get(entry.call_id)
        if lines is None:
            live = self._live_keys()
            ended = [key for key in self._transcripts if key not in live]  # oldest first
            for key in ended[: max(len(ended) - ENDED_KEPT + 1, 0)]:
                del self._transcripts[key]
            lines = self._transcripts[entry.call_id] = deque(maxlen=TRANSCRIPT_LINES)
        lines.append(
            {
                "participant_id": entry.participant_id,
                "display_name": entry.display_name,
                "start": round(entry.start, 2),
                "end": round(entry.end, 2),
                "text": entry.text,
            }
        )

    def _live_keys(self) -> set[str]:
        keys = {session.key for session in self._engine.sessions()} if self._engine is not None else set()
        if self._manager is not None:
            keys |= {call.id for call in self._manager.calls() if not call.ended_or_ending}
        return keys

    def transcript(self, key: str) -> list[dict[str, Any]]:
        """The latest transcript lines of a call or session (oldest first)."""
        return list(self._transcripts.get(key, ()))

    def snapshot(self) -> dict[str, Any]:
        """Every call the manager tracks (newest first) and every standalone session, as JSON-ready dicts."""
        engine = self._engine
        calls = []
        if self._manager is not None:
            for call in sorted(self._manager.calls(), key=lambda c: c.created, reverse=True):
                session = engine.for_call(call.id) if engine is not None else None
                names = call.display_names()
                calls.append(
                    {
                        "id": call.id,
                        "direction": call.direction,
                        "state": str(call.state),
                        "subject": call.subject,
                        "created": call.created.isoformat(),
                        "established": call.established.isoformat() if call.established else None,
                        "ended": call.ended.isoformat() if call.ended else None,
                        "roster": [
                            {"id": pid, "display_name": names.get(pid), "is_muted": participant.is_muted}
                            for pid, participant in call.roster.items()
                            if pid != call.my_participant_id
                        ],
                        "tones": "".join(tone.tone for tone in call.tones),
                        "media": session.live() if session is not None else None,
                        "transcript": self.transcript(call.id),
                    }
                )
        sessions = []
        if engine is not None:
            for session in engine.sessions():
                if session.standalone:
                    sessions.append({**session.live(), "transcript": self.transcript(session.key)})
        return {"calls": calls, "sessions": sessions}
