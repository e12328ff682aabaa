"""Dependencies of the routers, as ``Annotated`` aliases over what the lifespan put on ``app.state``."""

from __future__ import annotations

import hmac
from collections import deque
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mediabot.calls import Bot, CallManager
from mediabot.config import Settings
from mediabot.graph import GraphClient
from mediabot.graph.callback_auth import CallbackAuthenticator
from mediabot.graph.models import CallRecord
from mediabot.graph.subscriptions import SubscriptionKeeper

__all__ = [
    "AuthenticatorDep",
    "BotDep",
    "CallRecordsDep",
    "GraphDep",
    "KeeperDep",
    "ManagerDep",
    "SettingsDep",
    "require_api_key",
]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _manager(request: Request) -> CallManager:
    manager: CallManager = request.app.state.manager
    return manager


def _graph(request: Request) -> GraphClient:
    graph: GraphClient = request.app.state.graph
    return graph


def _bot(request: Request) -> Bot:
    bot: Bot = request.app.state.bot
    return bot


def _authenticator(request: Request) -> CallbackAuthenticator:
    authenticator: CallbackAuthenticator = request.app.state.authenticator
    return authenticator


def _keeper(request: Request) -> SubscriptionKeeper | None:
    keeper: SubscriptionKeeper | None = request.app.state.keeper
    return keeper


def _call_records(request: Request) -> deque[CallRecord]:
    records: deque[CallRecord] = request.app.state.call_records
    return records


SettingsDep = Annotated[Settings, Depends(_settings)]
ManagerDep = Annotated[CallManager, Depends(_manager)]
GraphDep = Annotated[GraphClient, Depends(_graph)]
BotDep = Annotated[Bot, Depends(_bot)]
AuthenticatorDep = Annotated[CallbackAuthenticator, Depends(_authenticator)]
KeeperDep = Annotated[SubscriptionKeeper | None, Depends(_keeper)]
CallRecordsDep = Annotated[deque[CallRecord], Depends(_call_records)]

_bearer = HTTPBearer(auto_error=False)


async def require_api_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 unless the request carries ``Authorization: Bearer <MEDIABOT_API_KEY>`` (compared in constant time)."""
    expected = settings.api_key.get_secret_value() if settings.api_key else None
    given = credentials.credentials if credentials else None
    if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})
