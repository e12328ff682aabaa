"""pocketsphinx in worker processes, on real human speech (LibriVox, see tests/fixtures/speech/README.md)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import wave
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from mediabot.transcribe.base import Transcriber, TranscriptionError
from mediabot.transcribe.sphinx import PocketSphinxTranscriber

SPEECH = Path(__file__).resolve().parents[1] / "fixtures" / "speech"

# Reference texts and pocketsphinx's forced alignment of them (fixtures README), seconds.
REFERENCE = {
    "austen_0880": "he was not an ill disposed young man",
    "austen_0930": "he might even have been made amiable himself",
}
ALIGNED_0930 = {
    "he": (0.21, 0.38),
    "might": (0.38, 0.64),
    "even": (0.64, 0.92),
    "have": (0.92, 1.07),
    "been": (1.07, 1.33),
    "made": (1.33, 1.70),
    "amiable": (1.70, 2.27),
    "himself": (2.27, 3.02),
}


def load(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SPEECH / f"{name}.wav"), "rb") as reader:
        assert (reader.getframerate(), reader.getnchannels(), reader.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(reader.readframes(reader.getnframes()), "<i2").astype(np.int16)


def recall(reference: str, hypothesis: str) -> float:
    """Share of the reference's words found in the hypothesis (bag of words, each found at most as often)."""
    wanted = Counter(reference.lower().split())
    found = Counter(hypothesis.lower().split())
    return sum((wanted & found).values()) / sum(wanted.values())


def test_recall_counts_words_once() -> None:
    assert recall("a b b c", "b c c d") == 0.5
    assert recall("he was", "") == 0.0


@pytest.fixture(scope="module")
def sphinx() -> Iterator[PocketSphinxTranscriber]:
    transcriber = PocketSphinxTranscriber(workers=1)
    yield transcriber
    asyncio.run(transcriber.aclose())


async def test_recognises_real_speech(sphinx: PocketSphinxTranscriber) -> None:
    assert isinstance(sphinx, Transcriber)
    assert sphinx.name == "pocketsphinx"
    result = await sphinx.transcribe(load("austen_0880"), 16000)
    assert result.backend == "pocketsphinx"
    assert recall(REFERENCE["austen_0880"], result.text) >= 0.5, result.text
    # No sentence marks, silences, noises or pronunciation variants: the text is the words.
    assert result.text == " ".join(word.text for word in result.words)
    for word in result.words:
        assert not word.text.startswith(("<", "[", "+")) and "(" not in word.text, word


async def test_resamples_and_times_words_in_seconds(sphinx: PocketSphinxTranscriber) -> None:
    audio = load("austen_0930")
    at_48k = np.clip(np.rint(soxr.resample(audio.astype(np.float32), 16000, 48000)), -32768, 32767).astype(np.int16)
    result = await sphinx.transcribe(at_48k, 48000)
    assert recall(REFERENCE["austen_0930"], result.text) >= 0.5, result.text
    starts = [word.start for word in result.words]
    assert starts == sorted(starts)
    assert all(0 <= word.start < word.end <= audio.size / 16000 + 0.02 for word in result.words)
    # Words it got right sit where the forced alignment puts them (seconds of the input, whatever its rate).
    matched = [word for word in result.words if word.text in ALIGNED_0930]
    assert len(matched) >= 4, result.words
    for word in matched:
        start, end = ALIGNED_0930[word.text]
        assert abs(word.start - start) <= 0.15 and abs(word.end - end) <= 0.15, (word, start, end)


async def test_event_loop_keeps_running_while_it_decodes(sphinx: PocketSphinxTranscriber) -> None:
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await sphinx.transcribe(load("austen_0880")[:16000], 16000)
    stop = True
    await task
    assert ticks > 100  # decoding in the loop's thread would have left it a handful of turns at most


async def test_same_audio_same_words_whatever_came_before(sphinx: PocketSphinxTranscriber) -> None:
    first, other = load("austen_0880")[:16000], load("austen_0930")[:16000]
    before = await sphinx.transcribe(first, 16000)
    await sphinx.transcribe(other, 16000)
    after = await sphinx.transcribe(first, 16000)
    assert before.words and after == before  # word timings included: no state carried from segment to segment


async def test_empty_audio_is_empty_text(sphinx: PocketSphinxTranscriber) -> None:
    result = await sphinx.transcribe(np.zeros(0, np.int16), 16000)
    assert result.text == "" and result.words == ()


async def test_a_dead_worker_fails_the_segment_and_the_next_gets_new_workers() -> None:
    before = set(multiprocessing.active_children())
    sphinx = PocketSphinxTranscriber()
    try:
        speech = load("austen_0930")[:16000]
        silence = await sphinx.transcribe(np.zeros(800, np.int16), 16000)  # the worker starts
        assert silence.text == "" and silence.words == ()
        workers = [p for p in multiprocessing.active_children() if p not in before]
        assert len(workers) == 1
        assert workers[0].pid is not None
        os.kill(workers[0].pid, signal.SIGKILL)
        await asyncio.to_thread(workers[0].join)
        with pytest.raises(TranscriptionError, match="worker process died"):
            await sphinx.transcribe(speech, 16000)
        result = await sphinx.transcribe(speech, 16000)  # "he might even": new workers, same answers
        assert result.words and recall(REFERENCE["austen_0930"], result.text) > 0
    finally:
        await sphinx.aclose()
    assert not [p for p in multiprocessing.active_children() if p not in before]


async def test_a_model_that_does_not_load_is_a_transcription_error(tmp_path: Path) -> None:
    sphinx = PocketSphinxTranscriber(hmm=tmp_path)  # a folder, but no acoustic model in it
    try:
        with pytest.raises(TranscriptionError, match="cannot load the pocketsphinx model"):
            await sphinx.transcribe(np.zeros(1600, np.int16), 16000)
    finally:
        await sphinx.aclose()


def test_missing_model_files_are_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="acoustic model folder"):
        PocketSphinxTranscriber(hmm=tmp_path / "nope")
    with pytest.raises(ValueError, match="language model"):
        PocketSphinxTranscriber(lm=tmp_path / "nope.lm.bin")
    with pytest.raises(ValueError, match="pronunciation dictionary"):
        PocketSphinxTranscriber(dictionary=tmp_path / "nope.dict")
    with pytest.raises(ValueError, match="worker"):
        PocketSphinxTranscriber(workers=0)


async def test_closed_transcriber_refuses_work() -> None:
    sphinx = PocketSphinxTranscriber()
    await sphinx.aclose()
    with pytest.raises(TranscriptionError, match="closed"):
        await sphinx.transcribe(np.ones(1600, np.int16), 16000)
