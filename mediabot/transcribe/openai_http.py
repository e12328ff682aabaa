"""``OpenAITranscriber``: any server that speaks OpenAI's ``POST /v1/audio/transcriptions``.

That is OpenAI itself and the self-hosted ones (faster-whisper servers, whisper.cpp's server, LocalAI, vLLM...).
Each segment goes up as a WAV made in memory, asking for ``verbose_json`` with word timestamps; an answer that only
has ``text`` (plain ``json``, or a server without word timings) is fine too. A model that refuses ``verbose_json``
(OpenAI's gpt-4o transcription models) is asked again for plain ``json``, and from then on only that.

The API key is only ever put in the ``Authorization`` header: never logged, never in an error message.
"""

from __future__ import annotations

import io
import logging
import os
import ssl
import wave
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from mediabot.transcribe.base import Transcription, TranscriptionError, Word

__all__ = ["OpenAITranscriber"]

logger = logging.getLogger(__name__)

_ERROR_TEXT_LIMIT = 500
# Words in an error that say the server refused the verbose_json/word-timestamp request (not the audio or the key).
_FORMAT_REFUSED = ("response_format", "verbose_json", "timestamp_granularities")


def transcriptions_url(base_url: str) -> str:
    """``{base}/v1/audio/transcriptions``, without doubling a ``/v1`` the base already ends with."""
    base = base_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the transcription server's base URL must be http(s)://..., got {base_url!r}")
    if not base.endswith("/v1"):
        base += "/v1"
    return base + "/audio/transcriptions"


def wav_bytes(audio: npt.NDArray[np.int16], sample_rate: int) -> bytes:
    """A mono PCM16 WAV file of ``audio``, in memory."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(audio, dtype="<i2").tobytes())
    return buffer.getvalue()


class OpenAITranscriber:
    """Transcribes through an OpenAI-compatible ``/v1/audio/transcriptions`` endpoint at ``base_url``."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "whisper-1",
        api_key: str | None = None,
        timeout: float = 60,
        language: str | None = None,
        client: httpx.AsyncClient | None = None,
        verify: ssl.SSLContext | str | os.PathLike[str] | bool = True,
    ) -> None:
        if not model:
            raise ValueError("the transcription model name is empty")
        self.url = transcriptions_url(base_url)
        self.model = model
        self.language = language or None
        self.name = f"openai:{model}"
        self._api_key = api_key or None
        self._timeout = timeout
        self._owns_client = client is None
        if isinstance(verify, str | os.PathLike):
            verify = ssl.create_default_context(cafile=os.fspath(verify))  # a CA bundle file
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout, verify=verify)
        self._verbose = True

    def __repr__(self) -> str:
        return f"OpenAITranscriber(url={self.url!r}, model={self.model!r})"

    async def transcribe(self, audio: npt.NDArray[np.int16], sample_rate: int) -> Transcription:
        """Send the segment as a WAV; the text, with word timings when the server gives them."""
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        payload = wav_bytes(audio, sample_rate)
        response = await self._post(payload)
        if response.status_code == 400 and self._verbose and _refuses_format(response):
            logger.info("%s refuses verbose_json for %s; asking for plain json from now on", self.url, self.model)
            self._verbose = False
            response = await self._post(payload)
        if not response.is_success:
            raise TranscriptionError(
                f"the transcription server answered {response.status_code} {response.reason_phrase}: "
                f"{self._scrub(_error_message(response))}"
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise TranscriptionError(f"the transcription server's answer is not JSON: {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise TranscriptionError("the transcription server's answer has no text")
        return Transcription(text=body["text"].strip(), backend=self.name, words=_words(body))

    async def aclose(self) -> None:
        """Close the HTTP client (unless it was given: then its owner closes it)."""
        if self._owns_client:
            await self._client.aclose()

    async def _post(self, payload: bytes) -> httpx.Response:
        data: dict[str, str] = {"model": self.model}
        if self._verbose:
            data["response_format"] = "verbose_json"
            data["timestamp_granularities[]"] = "word"
        else:
            data["response_format"] = "json"
        if self.language:
            data["language"] = self.language
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            return await self._client.post(
                self.url,
                data=data,
                files={"file": ("segment.wav", payload, "audio/wav")},
                headers=headers,
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise TranscriptionError(
                f"cannot reach the transcription server {self.url}: {self._scrub(str(exc)) or type(exc).__name__}"
            ) from exc

    def _scrub(self, text: str) -> str:
        # A server (or a proxy) may echo the request's headers in its error: the key never leaves through us.
        return text.replace(self._api_key, "***") if self._api_key else text


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:_ERROR_TEXT_LIMIT] or "(no message)"
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:_ERROR_TEXT_LIMIT]
    return str(body)[:_ERROR_TEXT_LIMIT]


def _refuses_format(response: httpx.Response) -> bool:
    message = _error_message(response).lower()
    return any(word in message for word in _FORMAT_REFUSED)


def _words(body: dict[str, Any]) -> tuple[Word, ...]:
    """Word timings: top-level ``words`` (OpenAI), else the ``words`` of each segment (some self-hosted servers)."""
    raw = body.get("words")
    if not isinstance(raw, list):
        raw = []
        for segment in body.get("segments") or []:
            if isinstance(segment, dict) and isinstance(segment.get("words"), list):
                raw.extend(segment["words"])
    words: list[Word] = []
    for item in raw:
        if not isinstance(item, dict):
            continue
        text = item.get("word", item.get("text"))
        try:
            start, end = float(item["start"]), float(item["end"])
        except (KeyError, TypeError, ValueError):
            continue
        if isinstance(text, str) and text.strip():
            words.append(Word(text.strip(), start, end))
    return tuple(words)
