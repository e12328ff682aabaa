"""``CallNotifier``: delivery of commsNotifications to bots' callbackUris, signed, in order per call, with retries.

One notifier per app instance. ``send`` never waits: it queues ``(callback_uri, body, app_id)`` and returns, so API
responses are not slowed by bots (or by callback hosts that do not resolve). A dispatcher task hands each delivery
to its call's lane, a task draining that call's own queue, so one call's notifications arrive in order while a slow
bot holds up only its own calls. A failing delivery is retried a bounded number of times (``_ATTEMPTS``, backoff
from ``_FIRST_BACKOFF``); ``cancel_pending`` stops every queued and in-flight delivery at once (a test harness
resetting the sandbox between tests). Every outcome (delivered, failed, skipped, cancelled) lands in a bounded
delivery log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from ._callback_signing import CallbackSigner
from ._config import SandboxConfig
from ._notifications import envelope, summary

__all__ = ["CallNotifier"]

logger = logging.getLogger(__name__)

_LOG_LIMIT = 5000
_ATTEMPTS = 4
_FIRST_BACKOFF = 0.2
_TIMEOUT = 10.0
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclasses.dataclass(frozen=True)
class _Delivery:
    call_id: str
    callback_uri: str
    body: dict[str, Any]
    app_id: str


def _deliverable(uri: str) -> bool:
    parts = urlsplit(uri)
    if not parts.netloc:
        return False
    # Graph only calls https callbacks; plain http is allowed on loopback because bots under test serve it locally.
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS)


class CallNotifier:
    """Queues commsNotifications and POSTs them to callbackUris with a signed bearer token."""

    def __init__(
        self, config: SandboxConfig, signer: CallbackSigner, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._signer = signer
        self._transport = transport
        self._queue: asyncio.Queue[_Delivery] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._lanes: dict[str, asyncio.Queue[_Delivery]] = {}
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[str, _Delivery] = {}
        self._client: httpx.AsyncClient | None = None
        self._log: list[dict[str, Any]] = []
        self._sequence = itertools.count(1)

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the dispatcher on the running loop (idempotent; ``send`` calls it on first use)."""
        if self._dispatcher is not None:
            return
        self._queue = asyncio.Queue()
        self._client = httpx.AsyncClient(
            verify=self.ssl_context(), trust_env=False, timeout=_TIMEOUT, transport=self._transport
        )
        self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="sandbox-notifier")

    async def aclose(self) -> None:
        """Stop delivering (pending notifications are dropped) and close the HTTP client."""
        tasks = [*self._lane_tasks, *([self._dispatcher] if self._dispatcher is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dispatcher, self._queue = None, None
        self._lanes.clear()
        self._lane_tasks.clear()
        self._in_flight.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def cancel_pending(self) -> int:
        """Drop every queued delivery and stop the ones in flight (logged ``cancelled``); how many were stopped.

        Deliveries queued afterwards go out as usual.
        """
        stopped = list(self._in_flight.values())
        if self._queue is not None:
            while not self._queue.empty():
                stopped.append(self._queue.get_nowait())
        for lane in self._lanes.values():
            while not lane.empty():
                stopped.append(lane.get_nowait())
        # All detached before the first await, so a delivery queued meanwhile opens a fresh lane.
        self._lanes.clear()
        self._in_flight.clear()
        tasks = list(self._lane_tasks)
        for task in tasks:
            task.cancel()
        for delivery in stopped:
            self._record(delivery, "cancelled", None, 0, None)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return len(stopped)

    def ssl_context(self) -> ssl.SSLContext:
        """What outgoing HTTPS to bots trusts: public CAs, the sandbox's certificate, the configured extra CA."""
        # Public CAs (a tunnel in front of a bot) plus the sandbox's own certificate plus the configured extra CA.
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=str(self._config.cert_path))
        if self._config.notification_ca_path is not None:
            context.load_verify_locations(cafile=str(self._config.notification_ca_path))
        return context

    # -- sending ------------------------------------------------------------------------------------------------
    def send(self, call_id: str, callback_uri: str, app_id: str, notifications: list[dict[str, Any]]) -> None:
        """Queue one commsNotifications body for ``callback_uri`` (never waits; skips unusable URIs)."""
        body = envelope(notifications)
        if not _deliverable(callback_uri):
            self._record(_Delivery(call_id, callback_uri, body, app_id), "skipped", None, 0, "unusable callbackUri")
            return
        self.start()
        assert self._queue is not None
        self._queue.put_nowait(_Delivery(call_id, callback_uri, body, app_id))

    def send_change(
        self, subscription_id: str, notification_url: str, app_id: str, items: list[dict[str, Any]]
    ) -> None:
        """Queue a change-notification collection for a subscription's ``notificationUrl`` (never waits)."""
        lane = f"subscription:{subscription_id}"
        delivery = _Delivery(lane, notification_url, {"value": items}, app_id)
        if not _deliverable(notification_url):
            self._record(delivery, "skipped", None, 0, "unusable notificationUrl")
            return
        self.start()
        assert self._queue is not None
        self._queue.put_nowait(delivery)

    async def _dispatch(self) -> None:
        assert self._queue is not None
        while True:
            delivery = await self._queue.get()
            lane = self._lanes.get(delivery.call_id)
            if lane is None:
                lane = self._lanes[delivery.call_id] = asyncio.Queue()
                task = asyncio.get_running_loop().create_task(self._drain(delivery.call_id, lane))
                self._lane_tasks.add(task)
                task.add_done_callback(self._lane_tasks.discard)
            lane.put_nowait(delivery)

    async def _drain(self, call_id: str, lane: asyncio.Queue[_Delivery]) -> None:
        while True:
            try:
                delivery = lane.get_nowait()
            except asyncio.QueueEmpty:
                # Nothing can be queued between this check and the removal: both run without awaiting.
                del self._lanes[call_id]
                return
            self._in_flight[call_id] = delivery
            await self._deliver(delivery)
            # Not reached when cancel_pending stopped this lane: the call's entry may by then be a new lane's.
            del self._in_flight[call_id]

    async def _deliver(self, delivery: _Delivery) -> None:
        assert self._client is not None
        status: int | None = None
        error: str | None = None
        attempt = 0
        for attempt in range(1, _ATTEMPTS + 1):
            headers = {"Authorization": f"Bearer {self._signer.token(delivery.app_id)}"}
            try:
                response = await self._client.post(delivery.callback_uri, json=delivery.body, headers=headers)
            except httpx.HTTPError as exc:
                status, error = None, type(exc).__name__
            else:
                status, error = response.status_code, None
                if status < 500:
                    break
            if attempt < _ATTEMPTS:
                await asyncio.sleep(_FIRST_BACKOFF * 2 ** (attempt - 1))
        ok = status is not None and 200 <= status < 300
        self._record(delivery, "delivered" if ok else "failed", status, attempt, error)
        if not ok:
            logger.info("notification to %s failed (%s)", delivery.callback_uri, error or status)

    # -- log ----------------------------------------------------------------------------------------------------
    def _record(self, delivery: _Delivery, outcome: str, status: int | None, attempts: int, error: str | None) -> None:
        self._log.append(
            {
                "id": next(self._sequence),
                "time": time.time(),
                "call_id": delivery.call_id,
                "callback_uri": delivery.callback_uri,
                "app_id": delivery.app_id,
                "outcome": outcome,
                "status": status,
                "attempts": attempts,
                "error": error,
                "notifications": summary(delivery.body),
                "body": delivery.body,
            }
        )
        del self._log[:-_LOG_LIMIT]

    def deliveries(self) -> list[dict[str, Any]]:
        """The delivery log, oldest first."""
        return list(self._log)

    def clear(self) -> None:
        """Empty the delivery log."""
        self._log.clear()
