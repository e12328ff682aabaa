"""What every transcription backend takes and gives, and the transcript entries the writers and the index keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mediabot._errors import MediaBotError

__all__ = ["Transcriber", "TranscriberUnavailable", "TranscriptEntry", "Transcription", "TranscriptionError", "Word"]


class TranscriptionError(MediaBotError):
    """A backend failed to transcribe a segment (the audio is kept; it can be transcribed again)."""


class TranscriberUnavailable(TranscriptionError, ImportError):
    """An optional backend whose package is missing; the message names the extra to install."""


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word with its start and end in seconds (relative to what was transcribed)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Transcription:
    """A backend's answer for one piece of audio: the text, and word timings where the backend gives them."""

    text: str
    backend: str
    words: tuple[Word, ...] = ()


@runtime_checkable
class Transcriber(Protocol):
    """Segment audio in (mono int16 at ``sample_rate``), text out. Never blocks the event loop."""

    name: str

    async def transcribe(self, audio: npt.NDArray[np.int16], sample_rate: int) -> Transcription:
        """Transcribe one segment; :class:`TranscriptionError` if the backend fails."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources (worker processes, HTTP connections)."""
        ...


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One transcribed speech segment of a call: who, when on the call timeline (seconds), what was said."""

    call_id: str
    participant_id: str | None
    display_name: str | None
    source_id: str | None
    start: float
    end: float
    text: str
    backend: str
    words: tuple[Word, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The entry as ``transcript.json`` stores it (word times on the call timeline)."""
        return {
            "participant_id": self.participant_id,
            "display_name": self.display_name,
            "source_id": self.source_id,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "backend": self.backend,
            "words": [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in self.words],
        }

    @classmethod
    def from_json(cls, call_id: str, data: dict[str, Any]) -> TranscriptEntry:
        """Read an entry back from ``transcript.json``."""
        return cls(
            call_id=call_id,
            participant_id=data.get("participant_id"),
            display_name=data.get("display_name"),
            source_id=data.get("source_id"),
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data.get("text", "")),
            backend=str(data.get("backend", "")),
            words=tuple(Word(str(w["text"]), float(w["start"]), float(w["end"])) for w in data.get("words", [])),
        )
