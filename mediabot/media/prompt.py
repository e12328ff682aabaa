"""The prompt player: WAV audio the bot speaks into a call on its ``main`` WHIP session, paced in real time.

:func:`load_prompt` reads a WAV of any rate and channel count into 48 kHz mono int16 once (soxr); a
:class:`PromptTrack` is the aiortc audio track of the ``main`` session. Between prompts it sends nothing (``recv``
waits), so an idle bot costs no encoding; each frame's ``pts`` follows the wall clock, so the receiver sees the pause
between prompts as a timestamp gap. :meth:`PromptTrack.play` resolves when the prompt's last frame was handed to the
sender (or fails when the track stops first).
"""

from __future__ import annotations

import asyncio
import fractions
import io
import time
import wave
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from mediabot._errors import MediaError
from mediabot.audio.kernels import downmix

__all__ = ["PROMPT_RATE", "Prompt", "PromptError", "PromptTrack", "load_prompt"]

PROMPT_RATE = 48_000
FRAME = PROMPT_RATE // 50
TIME_BASE = fractions.Fraction(1, PROMPT_RATE)
MAX_PROMPT_S = 600


class PromptError(MediaError):
    """A prompt that cannot be played: not a PCM WAV, too long, or the call's media ended first."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """Prompt audio ready to send: 48 kHz mono int16, padded to whole 20 ms frames."""

    samples: npt.NDArray[np.int16]
    source: str

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.samples.size / PROMPT_RATE


def load_prompt(data: bytes | Path, source: str = "") -> Prompt:
    """Decode a PCM16 WAV (any rate, any channels) into a :class:`Prompt`."""
    try:
        with wave.open(io.BytesIO(data) if isinstance(data, bytes) else str(data), "rb") as reader:
            if reader.getsampwidth() != 2:
                raise PromptError(f"prompt {source or data!s}: only 16-bit PCM WAV is played")
            rate, channels, count = reader.getframerate(), reader.getnchannels(), reader.getnframes()
            if count > rate * MAX_PROMPT_S:
                raise PromptError(f"prompt {source or data!s} is longer than {MAX_PROMPT_S} s")
            raw = np.frombuffer(reader.readframes(count), dtype="<i2").astype(np.int16)
    except (wave.Error, EOFError) as exc:
        raise PromptError(f"prompt {source or data!s} is not a WAV file: {exc}") from exc
    mono = downmix(raw, channels) if channels > 1 else raw
    if rate != PROMPT_RATE:
        mono = soxr.resample(mono, rate, PROMPT_RATE, quality="HQ")
    padded = np.zeros(-(-mono.size // FRAME) * FRAME, np.int16)
    padded[: mono.size] = mono
    return Prompt(samples=padded, source=source or str(data))


class PromptTrack(MediaStreamTrack):
    """The bot's outgoing audio: queued prompts, one 20 ms frame per ``recv``, paced by the wall clock."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[Prompt, asyncio.Future[float]]] = deque()
        self._wake = asyncio.Event()
        self._current: tuple[Prompt, asyncio.Future[float]] | None = None
        self._offset = 0
        self._start: float | None = None
        self._next_due = 0.0
        self._pts = 0

    def play(self, prompt: Prompt) -> asyncio.Future[float]:
        """Queue a prompt; the future gives the seconds it played for, once its last frame is sent."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.append((prompt, future))
        self._wake.set()
        return future

    def cancel_all(self, reason: str = "cancelled") -> None:
        """Stop the current prompt and drop the queued ones; their futures fail with :class:`PromptError`."""
        pending = ([self._current] if self._current is not None else []) + list(self._queue)
        self._current = None
        self._queue.clear()
        for _, future in pending:
            if not future.done():
                future.set_exception(PromptError(reason))

    def stop(self) -> None:
        """End the track: pending prompts fail."""
        self.cancel_all("the call's media ended before the prompt finished")
        self._wake.set()
        super().stop()

    async def recv(self) -> AudioFrame:
        """The next frame of the current prompt, at its due time; waits while there is nothing to play."""
        while self._current is None:
            if self.readyState != "live":
                raise MediaStreamError
            if self._queue:
                self._current = self._queue.popleft()
                self._offset = 0
                now = time.monotonic()
                if self._start is None:
                    self._start = now
                if now > self._next_due:
                    # After a pause the timestamps jump by the pause (whole frames), as the wall clock did.
                    self._next_due = now
                    self._pts = max(self._pts, round((now - self._start) * PROMPT_RATE) // FRAME * FRAME)
                break
            self._wake.clear()
            await self._wake.wait()
        delay = self._next_due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._current is None or self.readyState != "live":
            return await self.recv()
        prompt, future = self._current
        chunk = prompt.samples[self._offset : self._offset + FRAME]
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(chunk.tobytes())
        frame.sample_rate = PROMPT_RATE
        frame.time_base = TIME_BASE
        frame.pts = self._pts
        self._pts += FRAME
        self._offset += FRAME
        self._next_due += FRAME / PROMPT_RATE
        if self._offset >= prompt.samples.size:
            self._current = None
            if not future.done():
                future.set_result(prompt.duration_s)
        return frame
