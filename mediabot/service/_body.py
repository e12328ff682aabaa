"""Reading request bodies: a hard size limit before anything parses them, and their text checked.

A route that reads its body itself does it with :func:`read_limited`; a router whose bodies FastAPI parses uses
:class:`CheckedBodyRoute`. Both answer 413 from a declared ``Content-Length`` before reading anything and stop
reading a streamed body as soon as it passes the limit, so no request body is ever buffered past its limit.

A JSON body must be UTF-8 text (RFC 8259) that decodes to valid Unicode: Python's ``json.loads`` takes bytes that
encode a UTF-16 surrogate (``b"\\xed\\xa0\\x80"``) and unpaired ``\\ud800`` escapes, and hands back a ``str`` that
no UTF-8 encoder downstream (httpx, logs, JSON responses) accepts; such bodies are refused with 400 up front.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message, Receive

__all__ = [
    "CheckedBodyRoute",
    "check_text",
    "parse_json",
    "read_limited",
]

# A \u escape of a UTF-16 surrogate (paired ones are fine: json.loads joins them into one character).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"body larger than {limit} bytes")


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, or 413 once it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _too_large(limit)
        except ValueError as exc:
            raise HTTPException(400, "invalid Content-Length") from exc
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise _too_large(limit)
    return bytes(chunks)


def check_text(body: bytes) -> None:
    """400 unless ``body`` is UTF-8 and, read as JSON, has no unpaired surrogate escape (JSON that does not parse is
    left to the parser's own refusal)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "the body is not UTF-8 text") from exc
    if _SURROGATE_ESCAPE.search(body) is None:
        return
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return
    _check_unicode(value)


def parse_json(body: bytes) -> Any:
    """A JSON body as Python values; 400 unless it is UTF-8 JSON of valid Unicode text, nested no deeper than the
    parser goes (a 10 000-deep array is a 400, not a RecursionError)."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise HTTPException(400, "the body is not UTF-8 JSON") from exc
    if _SURROGATE_ESCAPE.search(body) is not None:
        _check_unicode(value)
    return value


def _check_unicode(value: Any) -> None:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError) as exc:
        raise HTTPException(400, "the body has an unpaired UTF-16 surrogate escape") from exc


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` (already read) first, then whatever the connection says next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class CheckedBodyRoute(APIRoute):
    """A route whose body is read through :func:`read_limited` (413 past :attr:`max_body` bytes) and checked with
    :func:`check_text` (400) before FastAPI parses it. Subclass it with another ``max_body`` for another limit."""

    max_body = 64 * 1024

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given the body once it is read and checked."""
        handler = super().get_route_handler()
        limit = self.max_body

        async def checked(request: Request) -> Response:
            body = await read_limited(request, limit)
            if body:
                check_text(body)
            return await handler(Request(request.scope, _replay(body, request.receive)))

        return checked
