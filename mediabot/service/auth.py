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
import time
from urllib.parse import urlsplit

from fastapi import Request

__all__ = [
    "CONSOLE_COOKIE",
    "CONSOLE_SESSION_S",
    "console_cookie",
    "is_console_session",
    "key_matches",
    "same_origin",
]

CONSOLE_COOKIE = "mediabot_console"
CONSOLE_SESSION_S = 12 * 3600


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
