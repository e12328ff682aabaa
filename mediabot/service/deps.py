"""Dependencies of the routers, as ``Annotated`` aliases over what the lifespan put on ``app.state``."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mediabot.calls import Bot, CallManager
from mediabot.config import Settings
from mediabot.graph import GraphClient
from mediabot.graph.callback_auth import CallbackAuthenticator
from mediabot.graph.models import CallRecord
from mediabot.graph.subscriptions import SubscriptionKeeper
from mediabot.media.plane import MediaPlane
from mediabot.service.auth import CONSOLE_COOKIE, is_console_session, key_matches, same_origin

__all__ = [
    "API_KEY_ERRORS",
    "AuthenticatorDep",
    "BotDep",
    "CallRecordsDep",
    "GraphDep",
    "KeeperDep",
    "ManagerDep",
    "MediaDep",
    "SettingsDep",
    "require_api_key",
]


def _from_state(name: str) -> Callable[[Request], Coroutine[Any, Any, Any]]:
    """A dependency returning what the lifespan stored on ``app.state`` under ``name``.

    ``async`` so that FastAPI calls it on the event loop: a plain function would cost a thread-pool hop per request
    (measured: 15 % of a callback notification's dependency resolution).
    """

    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return get


SettingsDep = Annotated[Settings, Depends(_from_state("settings"))]
ManagerDep = Annotated[CallManager, Depends(_from_state("manager"))]
GraphDep = Annotated[GraphClient, Depends(_from_state("graph"))]
BotDep = Annotated[Bot, Depends(_from_state("bot"))]
AuthenticatorDep = Annotated[CallbackAuthenticator, Depends(_from_state("authenticator"))]
KeeperDep = Annotated[SubscriptionKeeper | None, Depends(_from_state("keeper"))]
MediaDep = Annotated[MediaPlane[Any] | None, Depends(_from_state("media"))]
CallRecordsDep = Annotated[deque[CallRecord], Depends(_from_state("call_records"))]

_bearer = HTTPBearer(auto_error=False)

# What every route behind :func:`require_api_key` may answer before its own work (for the OpenAPI spec).
API_KEY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid API key (or console session)."},
    403: {"description": "A console-cookie request that changes state came from another origin."},
}


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries ``Authorization: Bearer <MEDIABOT_API_KEY>`` or a console session cookie.

    A state-changing request made with the cookie must also come from this origin (403 otherwise).
    """
    expected = settings.api_key.get_secret_value() if settings.api_key else None
    if key_matches(credentials.credentials if credentials else None, expected):
        return
    if is_console_session(request.cookies.get(CONSOLE_COOKIE), expected):
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request, settings.public_url):
            raise HTTPException(403, "a console request must come from the console's own origin")
        return
    raise HTTPException(401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})
