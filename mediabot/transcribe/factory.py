"""``create_transcriber``: the configured backend, built from settings-shaped options.

Callers pass every transcription setting they have (``workers``, ``hmm``, ``lm``, ``dictionary``, ``base_url``,
``api_key``, ``model``, ``language``, ``timeout``, ``verify``, ``client``); each backend takes the ones that are its
own and ignores the others' (``None`` means "the default"). An option no backend knows is a :class:`TypeError`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Literal

from mediabot.config import Settings
from mediabot.transcribe.base import Transcriber, TranscriberUnavailable

__all__ = ["SPHINX_INSTALL_HINT", "Backend", "create_transcriber", "transcriber_from_settings"]

Backend = Literal["pocketsphinx", "openai", "none"]

SPHINX_INSTALL_HINT = "pip install pocketsphinx"

_SPHINX_OPTIONS = frozenset({"hmm", "lm", "dictionary", "workers"})
_OPENAI_OPTIONS = frozenset({"base_url", "api_key", "model", "language", "timeout", "verify", "client"})


def create_transcriber(backend: Backend, **options: Any) -> Transcriber | None:
    """A new transcriber for ``backend`` (``None`` for ``"none"``); the caller owns it and must ``aclose()`` it.

    :class:`TranscriberUnavailable` if the backend's package is missing, :class:`ValueError` for a missing or bad
    option (the openai backend needs ``base_url``), :class:`TypeError` for an option no backend knows.
    """
    unknown = set(options) - _SPHINX_OPTIONS - _OPENAI_OPTIONS
    if unknown:
        raise TypeError(f"unknown transcriber option(s): {', '.join(sorted(unknown))}")
    if backend == "none":
        return None
    if backend == "pocketsphinx":
        try:
            importlib.import_module("pocketsphinx")  # cheap (its C library), and what the workers will do
        except ImportError as exc:
            raise TranscriberUnavailable(
                f"the pocketsphinx backend needs its package ({exc}): {SPHINX_INSTALL_HINT}"
            ) from exc
        from mediabot.transcribe.sphinx import PocketSphinxTranscriber

        chosen = _given(options, _SPHINX_OPTIONS)
        for key in ("hmm", "lm", "dictionary"):
            if key in chosen:
                chosen[key] = Path(chosen[key])
        return PocketSphinxTranscriber(**chosen)
    if backend == "openai":
        chosen = _given(options, _OPENAI_OPTIONS)
        base_url = chosen.pop("base_url", None)
        if not base_url:
            raise ValueError("the openai transcription backend needs base_url (MEDIABOT_OPENAI_BASE_URL)")
        from mediabot.transcribe.openai_http import OpenAITranscriber

        return OpenAITranscriber(str(base_url), **chosen)
    raise ValueError(f"unknown transcription backend {backend!r} (pocketsphinx, openai or none)")


def _given(options: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key in names and value is not None}


def transcriber_from_settings(settings: Settings, backend: Backend | None = None) -> Transcriber | None:
    """The transcriber the settings configure (``backend`` overrides ``MEDIABOT_TRANSCRIBER``)."""
    return create_transcriber(
        backend or settings.transcriber,
        workers=settings.transcriber_workers,
        hmm=settings.sphinx_hmm,
        lm=settings.sphinx_lm,
        dictionary=settings.sphinx_dict,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        model=settings.openai_model,
        language=settings.transcription_language,
    )
