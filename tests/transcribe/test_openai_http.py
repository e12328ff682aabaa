"""The OpenAI-compatible backend against a real local HTTP server that implements /v1/audio/transcriptions."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import threading
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn

from mediabot.transcribe.base import Transcriber, TranscriptionError, Word
from mediabot.transcribe.openai_http import OpenAITranscriber, transcriptions_url, wav_bytes

KEY = "sk-test-0123456789abcdef"


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    fields: dict[str, str]
    file_name: str | None
    file_type: str | None
    audio: np.ndarray[Any, Any] | None
    sample_rate: int | None


@dataclass
class Server:
    """What the fake server answers (``reply`` builds status and JSON/text from the request) and what it got."""

    url: str
    requests: list[Received] = field(default_factory=list)
    reply: Callable[[Received], tuple[int, Any]] = lambda got: (200, {"text": "hello"})


def parse_multipart(content_type: str, body: bytes) -> list[Message]:
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert message.is_multipart()
    return list(message.iter_parts())


def make_app(state: Server) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        fields: dict[str, str] = {}
        file_name = file_type = None
        audio = rate = None
        for part in parse_multipart(headers["content-type"], body):
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            if part.get_filename():
                file_name, file_type = part.get_filename(), part.get_content_type()
                with wave.open(io.BytesIO(payload), "rb") as reader:
                    assert (reader.getnchannels(), reader.getsampwidth()) == (1, 2)
                    rate = reader.getframerate()
                    audio = np.frombuffer(reader.readframes(reader.getnframes()), "<i2")
            else:
                fields[str(name)] = payload.decode()
        got = Received(scope["method"], scope["path"], headers, fields, file_name, file_type, audio, rate)
        state.requests.append(got)
        status, answer = state.reply(got)
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        kind = b"text/plain" if isinstance(answer, bytes) else b"application/json"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", kind)]})
        await send({"type": "http.response.body", "body": raw})

    return app


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    # A socket already listening: the client may connect before uvicorn's loop gets to accept.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    state = Server(url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(make_app(state), lifespan="off", log_level="warning", access_log=False)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield state
    uv.should_exit = True
    await asyncio.to_thread(thread.join)
    sock.close()


def verbose(got: Received) -> tuple[int, Any]:
    assert got.audio is not None and got.sample_rate is not None
    seconds = got.audio.size / got.sample_rate
    return 200, {
        "task": "transcribe",
        "language": "english",
        "duration": seconds,
        "text": f" {got.audio.size} samples ",
        "words": [{"word": "one", "start": 0.1, "end": 0.4}, {"word": "two", "start": 0.5, "end": seconds}],
    }


SEGMENT = (np.sin(np.arange(8000) / 7.0) * 9000).astype(np.int16)


async def test_posts_the_segment_as_multipart_and_reads_words(server: Server) -> None:
    server.reply = verbose
    openai = OpenAITranscriber(server.url, api_key=KEY, language="en")
    try:
        assert isinstance(openai, Transcriber)
        assert openai.name == "openai:whisper-1"
        result = await openai.transcribe(SEGMENT, 16000)
    finally:
        await openai.aclose()
    assert result.text == "8000 samples" and result.backend == "openai:whisper-1"
    assert result.words == (Word("one", 0.1, 0.4), Word("two", 0.5, 0.5))
    (got,) = server.requests
    assert (got.method, got.path) == ("POST", "/v1/audio/transcriptions")
    assert got.headers["authorization"] == f"Bearer {KEY}"
    assert got.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert got.fields == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "timestamp_granularities[]": "word",
        "language": "en",
    }
    assert got.file_type == "audio/wav" and got.file_name and got.file_name.endswith(".wav")
    assert got.sample_rate == 16000
    assert got.audio is not None and np.array_equal(got.audio, SEGMENT)  # the WAV decodes to the segment


async def test_base_ending_in_v1_is_not_doubled_and_no_key_means_no_header(server: Server) -> None:
    openai = OpenAITranscriber(server.url + "/v1/", model="Systran/faster-whisper-small")
    try:
        result = await openai.transcribe(SEGMENT[:4000], 8000)
    finally:
        await openai.aclose()
    assert result.text == "hello" and result.words == ()  # a plain json answer: text only
    (got,) = server.requests
    assert got.path == "/v1/audio/transcriptions"
    assert "authorization" not in got.headers
    assert "language" not in got.fields and got.fields["model"] == "Systran/faster-whisper-small"
    assert got.sample_rate == 8000 and got.audio is not None and np.array_equal(got.audio, SEGMENT[:4000])
    assert openai.name == "openai:Systran/faster-whisper-small"


async def test_words_inside_segments_are_read_too(server: Server) -> None:
    segments = [
        {"id": 0, "text": " a", "words": [{"word": " a", "start": 0, "end": 0.2}]},
        {"id": 1, "text": " b", "words": [{"word": "b", "start": 0.3, "end": 0.6}]},
    ]
    server.reply = lambda got: (200, {"text": "a b", "segments": segments})
    openai = OpenAITranscriber(server.url)
    try:
        result = await openai.transcribe(SEGMENT, 16000)
    finally:
        await openai.aclose()
    assert result.words == (Word("a", 0.0, 0.2), Word("b", 0.3, 0.6))


async def test_error_status_carries_the_message_but_never_the_key(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.reply = lambda got: (401, {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "auth"}})
    openai = OpenAITranscriber(server.url, api_key=KEY)
    try:
        with pytest.raises(TranscriptionError) as caught:
            await openai.transcribe(SEGMENT, 16000)
        server.reply = lambda got: (500, b"model crashed\n")
        with pytest.raises(TranscriptionError, match=r"500 Internal Server Error: model crashed"):
            await openai.transcribe(SEGMENT, 16000)
    finally:
        await openai.aclose()
    message = str(caught.value)
    assert "401" in message and "Incorrect API key provided" in message
    assert KEY not in message and "***" in message
    assert KEY not in caplog.text and KEY not in repr(openai)


async def test_a_model_refusing_verbose_json_is_asked_for_json_from_then_on(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def reply(got: Received) -> tuple[int, Any]:
        if got.fields["response_format"] == "verbose_json":
            message = "response_format 'verbose_json' is not compatible with model 'gpt-4o-transcribe'"
            return 400, {"error": {"message": message, "param": "response_format"}}
        return 200, {"text": "plain"}

    server.reply = reply
    openai = OpenAITranscriber(server.url, model="gpt-4o-transcribe", api_key=KEY)
    try:
        first = await openai.transcribe(SEGMENT, 16000)
        second = await openai.transcribe(SEGMENT, 16000)
    finally:
        await openai.aclose()
    assert first.text == second.text == "plain"
    formats = [got.fields["response_format"] for got in server.requests]
    assert formats == ["verbose_json", "json", "json"]
    assert "timestamp_granularities[]" not in server.requests[-1].fields
    assert KEY not in caplog.text


async def test_other_bad_requests_are_not_retried(server: Server) -> None:
    server.reply = lambda got: (400, {"error": {"message": "audio file is too short"}})
    openai = OpenAITranscriber(server.url)
    try:
        with pytest.raises(TranscriptionError, match="400 Bad Request: audio file is too short"):
            await openai.transcribe(SEGMENT, 16000)
    finally:
        await openai.aclose()
    assert len(server.requests) == 1


async def test_answers_without_text_are_errors(server: Server) -> None:
    server.reply = lambda got: (200, b"not json at all")
    openai = OpenAITranscriber(server.url)
    try:
        with pytest.raises(TranscriptionError, match="not JSON"):
            await openai.transcribe(SEGMENT, 16000)
        server.reply = lambda got: (200, {"result": "no text field"})
        with pytest.raises(TranscriptionError, match="no text"):
            await openai.transcribe(SEGMENT, 16000)
    finally:
        await openai.aclose()


async def test_unreachable_server_is_a_transcription_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    openai = OpenAITranscriber(f"http://127.0.0.1:{port}", api_key=KEY)
    try:
        with pytest.raises(TranscriptionError, match="cannot reach the transcription server") as caught:
            await openai.transcribe(SEGMENT, 16000)
    finally:
        await openai.aclose()
    assert KEY not in str(caught.value)


async def test_a_given_client_is_used_and_left_open(server: Server) -> None:
    async with httpx.AsyncClient() as client:
        openai = OpenAITranscriber(server.url, client=client, api_key=KEY)
        await openai.transcribe(SEGMENT, 16000)
        await openai.aclose()
        assert not client.is_closed
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_transcriptions_url() -> None:
    assert transcriptions_url("https://api.openai.com") == "https://api.openai.com/v1/audio/transcriptions"
    assert transcriptions_url("https://api.openai.com/v1") == "https://api.openai.com/v1/audio/transcriptions"
    assert transcriptions_url("http://gpu:8000/v1/") == "http://gpu:8000/v1/audio/transcriptions"
    assert transcriptions_url("http://host/proxy/") == "http://host/proxy/v1/audio/transcriptions"
    with pytest.raises(ValueError, match="http"):
        transcriptions_url("api.openai.com")


def test_wav_bytes_round_trip() -> None:
    with wave.open(io.BytesIO(wav_bytes(SEGMENT, 24000)), "rb") as reader:
        assert reader.getframerate() == 24000 and reader.getnchannels() == 1
        assert np.array_equal(np.frombuffer(reader.readframes(reader.getnframes()), "<i2"), SEGMENT)
