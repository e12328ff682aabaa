"""create_transcriber: each backend takes its own options from the settings-shaped keyword set."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from mediabot.transcribe.base import Transcriber, TranscriberUnavailable
from mediabot.transcribe.factory import create_transcriber
from mediabot.transcribe.openai_http import OpenAITranscriber
from mediabot.transcribe.sphinx import PocketSphinxTranscriber

# What the service and the CLI pass, whichever backend is configured.
SETTINGS: dict[str, object] = {
    "workers": 2,
    "hmm": None,
    "lm": None,
    "dictionary": None,
    "base_url": None,
    "api_key": None,
    "model": "whisper-1",
    "language": None,
}


def test_none_is_no_transcriber() -> None:
    assert create_transcriber("none", **SETTINGS) is None


async def test_pocketsphinx_takes_its_options_and_ignores_the_others() -> None:
    model = Path(importlib.import_module("pocketsphinx").get_model_path())
    options = {**SETTINGS, "hmm": str(model / "en-us" / "en-us"), "dictionary": model / "en-us" / "cmudict-en-us.dict"}
    transcriber = create_transcriber("pocketsphinx", **{**options, "base_url": "http://ignored"})
    try:
        assert isinstance(transcriber, PocketSphinxTranscriber) and isinstance(transcriber, Transcriber)
        assert transcriber.name == "pocketsphinx" and transcriber.workers == 2
    finally:
        assert transcriber is not None
        await transcriber.aclose()
    with pytest.raises(ValueError, match="language model"):
        create_transcriber("pocketsphinx", lm="/nowhere/en.lm.bin")


def test_pocketsphinx_missing_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import pocketsphinx now raises ImportError
    with pytest.raises(TranscriberUnavailable, match="pip install pocketsphinx") as caught:
        create_transcriber("pocketsphinx", **SETTINGS)
    assert isinstance(caught.value, ImportError)


async def test_openai_needs_a_base_url_and_takes_its_options() -> None:
    with pytest.raises(ValueError, match="base_url"):
        create_transcriber("openai", **SETTINGS)
    options = {**SETTINGS, "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x", "model": None, "language": "de"}
    transcriber = create_transcriber("openai", **options)
    try:
        assert isinstance(transcriber, OpenAITranscriber)
        assert transcriber.name == "openai:whisper-1"  # model None: the default
        assert transcriber.url == "http://127.0.0.1:9/v1/audio/transcriptions" and transcriber.language == "de"
    finally:
        assert transcriber is not None
        await transcriber.aclose()


def test_unknown_options_and_backends_are_refused() -> None:
    with pytest.raises(TypeError, match="colour"):
        create_transcriber("none", colour="blue")
    with pytest.raises(ValueError, match="unknown transcription backend"):
        create_transcriber("vosk", **SETTINGS)  # type: ignore[arg-type]
