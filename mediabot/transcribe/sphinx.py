"""``PocketSphinxTranscriber``: offline speech recognition with pocketsphinx, in worker processes.

pocketsphinx decodes at about twice real time on one core and holds the GIL while it does, so it never runs in the
bot's process: a :class:`~concurrent.futures.ProcessPoolExecutor` (``spawn`` context, so no worker inherits the
parent's threads or sockets) owns the decoders. Each worker builds its ``pocketsphinx.Decoder`` once, in the pool's
initializer, and reuses it for every segment. The event loop only ships int16 bytes to a worker and awaits the answer.

The default model is the en-US one the pocketsphinx wheel ships (``pocketsphinx.get_model_path()``). Workers start
with the first segment. As with any ``spawn`` pool, a script that uses it at its top level needs the
``if __name__ == "__main__":`` guard (workers import the main module).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mediabot.audio import SAMPLE_RATE
from mediabot.transcribe.base import Transcription, TranscriptionError, Word

__all__ = ["PocketSphinxTranscriber"]

logger = logging.getLogger(__name__)

# pocketsphinx's words that are not words: sentence marks (<s>, </s>), silence (<sil>) and noise ([NOISE], ++UH++).
_FILLER_PREFIXES = ("<", "[", "+")
_VARIANT = re.compile(r"\(\d+\)$")

# The worker process's decoder, built once by _init_worker (or why it could not be).
_decoder: Any = None
_decoder_error: str | None = None


def _init_worker(options: dict[str, str]) -> None:
    """Pool initializer: build this worker's decoder once (a failure is kept and reported by every decode)."""
    global _decoder, _decoder_error
    try:
        # Imported by name: pocketsphinx ships no type information.
        pocketsphinx = importlib.import_module("pocketsphinx")
        _decoder = pocketsphinx.Decoder(loglevel="FATAL", **options)
    except Exception as exc:  # pocketsphinx says RuntimeError/ValueError; any failure must reach the caller
        _decoder_error = f"cannot load the pocketsphinx model ({options or 'default en-US'}): {exc}"


def _decode(data: bytes, sample_rate: int) -> tuple[str, list[tuple[str, float, float]]]:
    """In a worker: decode mono int16 ``data`` at ``sample_rate``; the text and (word, start, end) in seconds."""
    if _decoder is None:
        raise RuntimeError(_decoder_error or "the pocketsphinx worker has no decoder")
    audio = np.frombuffer(data, np.int16)
    if sample_rate != SAMPLE_RATE and audio.size:
        import soxr

        audio = np.clip(np.rint(soxr.resample(audio.astype(np.float32), sample_rate, SAMPLE_RATE)), -32768, 32767)
        audio = audio.astype(np.int16)
    frame_rate = float(_decoder.config["frate"])
    # Feature extraction keeps state (noise and cepstral-mean estimates) from one utterance to the next; segments
    # come from different speakers in any order, so each starts afresh: same audio, same words, whichever worker.
    _decoder.reinit_feat()
    _decoder.start_utt()
    try:
        _decoder.process_raw(audio.tobytes(), no_search=False, full_utt=True)
    finally:
        _decoder.end_utt()
    words: list[tuple[str, float, float]] = []
    for segment in _decoder.seg() or ():  # None when it heard nothing at all
        text = segment.word
        if not text or text.startswith(_FILLER_PREFIXES):
            continue
        # end_frame is inclusive: a word on frames 20..36 ends where frame 37 starts.
        words.append((_VARIANT.sub("", text), segment.start_frame / frame_rate, (segment.end_frame + 1) / frame_rate))
    return " ".join(word for word, _, _ in words), words


class PocketSphinxTranscriber:
    """Transcribes with pocketsphinx in ``workers`` processes; ``hmm``/``lm``/``dictionary`` default to en-US."""

    name = "pocketsphinx"

    def __init__(
        self,
        *,
        hmm: Path | None = None,
        lm: Path | None = None,
        dictionary: Path | None = None,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError(f"pocketsphinx needs at least one worker, got {workers}")
        options: dict[str, str] = {}
        given = (
            ("hmm", hmm, "acoustic model folder"),
            ("lm", lm, "language model"),
            ("dict", dictionary, "pronunciation dictionary"),
        )
        for key, value, kind in given:
            if value is None:
                continue
            path = Path(value)
            if not (path.is_dir() if key == "hmm" else path.is_file()):
                raise ValueError(f"the pocketsphinx {kind} {path} does not exist")
            options[key] = str(path)
        self.workers = workers
        self._options = options
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def _executor(self) -> ProcessPoolExecutor:
        if self._closed:
            raise TranscriptionError("the pocketsphinx transcriber is closed")
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self._options,),
            )
        return self._pool

    async def transcribe(self, audio: npt.NDArray[np.int16], sample_rate: int) -> Transcription:
        """Decode one segment (mono int16 at ``sample_rate``, resampled to 16 kHz in the worker if it differs)."""
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        samples = np.ascontiguousarray(audio, dtype=np.int16).reshape(-1)
        if samples.size == 0:
            return Transcription(text="", backend=self.name)
        pool = self._executor()
        loop = asyncio.get_running_loop()
        try:
            text, words = await loop.run_in_executor(pool, _decode, samples.tobytes(), sample_rate)
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory, a crash in the C library): the next segment gets a new pool.
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            logger.error("a pocketsphinx worker process died; starting new workers for the next segment")
            raise TranscriptionError(f"a pocketsphinx worker process died: {exc}") from exc
        except Exception as exc:  # raised in the worker (a model that did not load, a decoder failure)
            raise TranscriptionError(f"pocketsphinx failed: {exc}") from exc
        return Transcription(text=text, backend=self.name, words=tuple(Word(w, start, end) for w, start, end in words))

    async def aclose(self) -> None:
        """Stop the worker processes (waiting for them to exit, off the event loop)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
