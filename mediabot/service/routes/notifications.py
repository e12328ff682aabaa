"""Change notifications (webhooks): Graph's validation handshake, clientState checks, callRecords fetched after."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse

from mediabot._errors import GraphError, NotificationError
from mediabot.calls import Bot
from mediabot.graph import GraphClient
from mediabot.graph.models import CallRecord
from mediabot.graph.notifications import ChangeNotification, parse_change_notification_collection
from mediabot.service._body import read_limited
from mediabot.service.deps import BotDep, CallRecordsDep, GraphDep, KeeperDep, SettingsDep

__all__ = ["router"]

logger = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])
_background: set[asyncio.Task[None]] = set()


def _validation(request: Request) -> PlainTextResponse | None:
    token = request.query_params.get("validationToken")
    return PlainTextResponse(token, status_code=200) if token is not None else None


async def _notifications(request: Request, limit: int) -> list[ChangeNotification]:
    body = await read_limited(request, limit)
    try:
        return list(parse_change_notification_collection(body).value)
    except NotificationError as exc:
        raise HTTPException(400, f"not a change-notification collection: {exc}") from exc


@router.post("/api/notifications", status_code=202)
async def notifications(
    request: Request,
    settings: SettingsDep,
    keeper: KeeperDep,
    graph: GraphDep,
    bot: BotDep,
    records: CallRecordsDep,
) -> Response:
    """Echo the validationToken, or accept notifications of our subscriptions (others are ignored and logged)."""
    if (echo := _validation(request)) is not None:
        return echo
    for item in await _notifications(request, settings.max_callback_bytes):
        if keeper is None or not keeper.accepts(item.subscription_id, item.client_state):
            logger.warning("ignored a change notification with an unknown subscription or clientState")
            continue
        resource = (item.resource or "").rstrip("/")
        if "callrecords/" in resource.lower():
            record_id = resource.rpartition("/")[2]
            task = asyncio.create_task(_fetch_record(graph, bot, records, record_id))
            _background.add(task)
            task.add_done_callback(_background.discard)
            logger.info("call record %s published; fetching it", record_id)
    return Response(status_code=202)


@router.post("/api/notifications/lifecycle", status_code=202)
async def lifecycle(request: Request, settings: SettingsDep, keeper: KeeperDep) -> Response:
    """Lifecycle notifications: reauthorize or recreate our subscriptions."""
    if (echo := _validation(request)) is not None:
        return echo
    for item in await _notifications(request, settings.max_callback_bytes):
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
