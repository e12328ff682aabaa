"""Who may use the operator surface: the API key as a bearer, or a console session cookie made with it.

Programs send ``Authorization: Bearer <MEDIABOT_API_KEY>``. A browser logs in once at ``/console/login`` with the
key and gets a cookie that proves it knew the key: ``<expiry>.<HMAC-SHA256(key, expiry)>``, HttpOnly and
SameSite=Strict (Secure over HTTPS). Changing the key ends every console session. A state-changing request made
with the cookie must also come from this origin (its ``Origin`` header), so another site cannot ride on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from http.cookies import CookieError, SimpleCookie
from urllib.parse import urlsplit

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_BODY_LIMIT",
    "CONSOLE_COOKIE",
    "CONSOLE_SESSION_S",
    "ApiGate",
    "console_cookie",
    "is_console_session",
    "key_matches",
    "same_origin",
]

CONSOLE_COOKIE = "mediabot_console"
CONSOLE_SESSION_S = 12 * 3600
API_BODY_LIMIT = 1024 * 1024  # the largest /v1 request body: its JSON requests are a few hundred bytes


def key_matches(given: str | None, expected: str | None) -> bool:
    """Whether ``given`` is the configured key (constant time; no key configured matches nothing)."""
    return bool(given and expected and hmac.compare_digest(given.encode(), expected.encode()))


def _signature(key: str, expires: int) -> str:
    mac = hmac.new(key.encode(), f"mediabot-console:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def console_cookie(key: str, *, now: float | None = None) -> str:
    """A console session cookie value for the API key ``key``, valid for :data:`CONSOLE_SESSION_S`."""
    expires = int((time.time() if now is None else now) + CONSOLE_SESSION_S)
    return f"{expires}.{_signature(key, expires)}"


def is_console_session(value: str | None, key: str | None, *, now: float | None = None) -> bool:
    """Whether ``value`` is an unexpired console cookie made with ``key``."""
    if not value or not key:
        return False
    expires_text, _, signature = value.partition(".")
    if not expires_text.isdigit() or not signature:
        return False
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature.encode(), _signature(key, expires).encode())


def same_origin(request: Request, public_url: str = "") -> bool:
    """Whether the request's ``Origin`` is this server's own (for cookie-authenticated state changes): the host it
    was addressed to, or the public URL's origin (behind a proxy that rewrites ``Host``)."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "")
    public = urlsplit(public_url)
    allowed = {f"https://{host}", f"http://{host}"}
    if public.scheme and public.netloc:
        allowed.add(f"{public.scheme}://{public.netloc}")
    return origin in allowed


class _TooLarge(Exception):
    """A request body went past the gate's limit while the app was reading it."""


class ApiGate:
    """ASGI middleware in front of ``/v1``: no key (or console cookie), no body read — 401 before FastAPI parses
    anything; and no body over :data:`API_BODY_LIMIT` (413). The routes' own dependency still checks the origin of a
    cookie-authenticated change; this gate only keeps unauthenticated or oversized bodies from costing memory."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, prefix: str = "/v1", limit: int = API_BODY_LIMIT) -> None:
        self._app = app
        self._key = api_key
        self._prefix = prefix
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse or pass one request."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == self._prefix or path.startswith(self._prefix + "/")):
            await self._app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if not self._authorized(headers):
            await _refuse(send, 401, "a valid API key is required", {"www-authenticate": "Bearer"})
            return
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._limit:
            await _refuse(send, 413, f"the request body is larger than {self._limit} bytes")
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._limit:
                    raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted, sending)
        except _TooLarge:
            if not started:
                await _refuse(send, 413, f"the request body is larger than {self._limit} bytes")

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key_matches(token.strip(), self._key):
            return True
        try:
            cookie = SimpleCookie(headers.get("cookie", ""))
        except CookieError:
            return False
        morsel = cookie.get(CONSOLE_COOKIE)
        return morsel is not None and is_console_session(morsel.value, self._key)


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
