"""The web console (``/console``), the browser join page (``/join``) and the console's login.

Plain HTML, CSS and JavaScript served from ``mediabot/service/console/`` (no build step). The pages are public;
everything they show comes from the ``/v1`` API, which needs the API key: ``POST /console/login`` with the key sets
the console session cookie (see :mod:`mediabot.service.auth`), ``POST /console/logout`` clears it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from mediabot.service._body import parse_json, read_limited
from mediabot.service.auth import CONSOLE_COOKIE, CONSOLE_SESSION_S, console_cookie, key_matches
from mediabot.service.deps import SettingsDep

__all__ = ["CONSOLE_DIR", "router"]

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
MAX_LOGIN_BODY = 4096
_LOGIN_FORMAT = 'send the API key as JSON {"api_key": ...} or as a form field'
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
# The pages load only their own scripts and styles; media and API calls go to this origin (WHIP too).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["console"])


def _page(name: str) -> FileResponse:
    path = CONSOLE_DIR / name
    if not path.is_file():
        raise HTTPException(404, f"no console file {name}")
    return FileResponse(path, media_type=CONTENT_TYPES.get(path.suffix), headers=SECURITY_HEADERS)


@router.get("/console", include_in_schema=False)
async def console() -> FileResponse:
    """The console's single page (live calls, finished calls, search)."""
    return _page("index.html")


@router.get("/join", include_in_schema=False)
async def join() -> FileResponse:
    """The browser join page: publish the microphone to the bot as a standalone recorded session."""
    return _page("join.html")


@router.get("/console/login", include_in_schema=False)
async def login_page() -> FileResponse:
    """The login form."""
    return _page("login.html")


@router.get("/console/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    """The console's scripts and styles (one flat folder; names only, no paths)."""
    if "/" in name or "\\" in name or name.startswith(".") or Path(name).suffix not in CONTENT_TYPES:
        raise HTTPException(404, f"no console file {name}")
    return _page(name)


def _next_path(value: Any) -> str:
    """Where to go after logging in: a path on this site only (no open redirect)."""
    text = value if isinstance(value, str) else ""
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/console"


@router.post("/console/login", include_in_schema=False)
async def login(request: Request, settings: SettingsDep) -> Response:
    """Check the API key (JSON ``{"api_key", "next"}`` or a form) and set the console cookie."""
    body = await read_limited(request, MAX_LOGIN_BODY)
    form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
    try:
        if form:
            data: Any = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        else:
            data = parse_json(body) if body else {}
    except (UnicodeDecodeError, HTTPException) as exc:
        raise HTTPException(400, _LOGIN_FORMAT) from exc
    if not isinstance(data, dict):
        raise HTTPException(400, _LOGIN_FORMAT)
    expected = settings.api_key.get_secret_value() if settings.api_key else None
    if expected is None:
        raise HTTPException(409, "this instance has no API key (MEDIABOT_API_KEY), so the console is off")
    given = data.get("api_key")
    if not key_matches(given if isinstance(given, str) else None, expected):
        if form:
            return RedirectResponse("/console/login?failed=1", status_code=303)
        raise HTTPException(401, "that is not this instance's API key")
    target = _next_path(data.get("next"))
    response: Response = RedirectResponse(target, status_code=303) if form else JSONResponse({"next": target})
    response.set_cookie(
        CONSOLE_COOKIE,
        console_cookie(expected),
        max_age=CONSOLE_SESSION_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/console/logout", include_in_schema=False)
async def logout() -> Response:
    """Clear the console cookie."""
    response = JSONResponse({"next": "/console/login"})
    response.delete_cookie(CONSOLE_COOKIE, path="/")
    return response
