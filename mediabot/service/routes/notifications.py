"""Change notifications (webhooks): Graph's validation handshake, clientState checks, callRecords fetched after."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from mediabot._errors import GraphError, NotificationError
from mediabot.calls import Bot
from mediabot.graph import GraphClient
from mediabot.graph.models import CallRecord
from mediabot.graph.notifications import ChangeNotification, is_graph_id, parse_change_notification_collection
from mediabot.service._body import read_limited
from mediabot.service.deps import BotDep, CallRecordsDep, GraphDep, KeeperDep, SettingsDep

__all__ = ["router"]

logger = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
_background: set[asyncio.Task[None]] = set()


async def _read(request: Request, limit: int) -> PlainTextResponse | list[ChangeNotification]:
    """Graph's validation handshake (``validationToken`` and no body: the token echoed as plain text), or the
    notifications of the body (a body is notifications, whatever the query says)."""
    body = await read_limited(request, limit)
    token = request.query_params.get("validationToken")
    if token is not None and not body:
        return PlainTextResponse(token, status_code=200, headers={"X-Content-Type-Options": "nosniff"})
    try:
        return list(parse_change_notification_collection(body).value)
    except NotificationError as exc:
        raise HTTPException(400, f"not a change-notification collection: {exc}") from exc


# A change-notification collection (Graph's webhook body); the validation handshake sends none. Only what is checked
# is typed: the other fields of Graph's changeNotification are read leniently (a number where text is expected).
CHANGE_NOTIFICATIONS: dict[str, Any] = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["value"],
                "properties": {
                    "value": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["subscriptionId"],
                            "properties": {"subscriptionId": {"type": "string", "minLength": 1}},
                            "description": "A changeNotification: clientState, changeType, resource, lifecycleEvent...",
                        },
                    },
                },
            }
        }
    },
}
WEBHOOK: dict[str, Any] = {
    "status_code": 202,
    "response_class": Response,
    "responses": {
        200: {
            "description": "The validation handshake: the validationToken, echoed.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        202: {"description": "Accepted (notifications of unknown subscriptions are ignored)."},
        400: {"description": "Not a change-notification collection."},
        413: {"description": "The body is larger than MEDIABOT_MAX_CALLBACK_BYTES."},
    },
    "openapi_extra": {
        "requestBody": CHANGE_NOTIFICATIONS,
        "parameters": [
            {
                "name": "validationToken",
                "in": "query",
                "required": False,
                "description": "Graph's URL validation (with no body): answered 200 with the token as text/plain.",
                "schema": {"type": "string"},
            }
        ],
    },
}


@router.post("/api/notifications", **WEBHOOK)
async def notifications(
    request: Request,
    settings: SettingsDep,
    keeper: KeeperDep,
    graph: GraphDep,
    bot: BotDep,
    records: CallRecordsDep,
) -> Response:
    """Echo the validationToken, or accept notifications of our subscriptions (others are ignored and logged)."""
    items = await _read(request, settings.max_callback_bytes)
    if isinstance(items, Response):
        return items
    for item in items:
        if keeper is None or not keeper.accepts(item.subscription_id, item.client_state):
            logger.warning("ignored a change notification with an unknown subscription or clientState")
            continue
        resource = (item.resource or "").rstrip("/")
        if "callrecords/" in resource.lower():
            record_id = resource.rpartition("/")[2]
            if not is_graph_id(record_id):
                logger.warning("ignored a call record notification with a malformed id")
                continue
            task = asyncio.create_task(_fetch_record(graph, bot, records, record_id))
            _background.add(task)
            task.add_done_callback(_background.discard)
            logger.info("call record %s published; fetching it", record_id)
    return Response(status_code=202)


@router.post("/api/notifications/lifecycle", **WEBHOOK)
async def lifecycle(request: Request, settings: SettingsDep, keeper: KeeperDep) -> Response:
    """Lifecycle notifications: reauthorize or recreate our subscriptions."""
    items = await _read(request, settings.max_callback_bytes)
    if isinstance(items, Response):
        return items
    for item in items:
        if keeper is None or not keeper.accepts(item.subscription_id, item.client_state):
            logger.warning("ignored a lifecycle notification with an unknown subscription or clientState")
            continue
        if item.lifecycle_event and item.subscription_id:
            task = asyncio.create_task(keeper.handle_lifecycle(item.subscription_id, item.lifecycle_event))
            _background.add(task)
            task.add_done_callback(_background.discard)
    return Response(status_code=202)


async def _fetch_record(graph: GraphClient, bot: Bot, records: deque[CallRecord], record_id: str) -> None:
    try:
        record = await graph.get_call_record(record_id)
    except GraphError as exc:
        logger.error("cannot fetch call record %s: %s", record_id, exc)
        return
    records.append(record)
    try:
        await bot.on_call_record(record)
    except Exception:
        logger.exception("Bot.on_call_record failed for %s", record_id)
